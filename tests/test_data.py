"""Tests of the data package: shard format, batch loader, embedded corpus, HF preparation (offline).

    python -m pytest tests/test_data.py -q

References are independent of the code under test: token ids equal to their positions (so a batch
shows where it came from), closed-form entropies, per-document encodings made directly with the
tokenizer, and `datasets.train_test_split` called by the test itself. No network: the preparation
tests read tests/data/tiny_corpus.jsonl through the "json" builder with a locally built tokenizer.
"""
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tokenizers import Tokenizer

from data import embedded
from data.loader import BatchLoader, eval_batches
from data.prepare import PrepareSettings, compose, is_validation_text, main, prepare, prepare_from_config
from data.shards import HEADER, load, read_header, read_shard, write_shard
from data.tokens import ShardedTokens, unigram_entropy

REPO = Path(__file__).resolve().parents[1]
TINY_CORPUS = REPO / "tests" / "data" / "tiny_corpus.jsonl"


# ---- shard format ----------------------------------------------------------------------------
def test_shard_round_trip(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 50257, size=1001).astype(np.uint16)
    write_shard(tmp_path / "a.bin", tokens, vocab_size=50257)
    back = read_shard(tmp_path / "a.bin")
    assert isinstance(back, np.memmap) and back.dtype == np.uint16
    np.testing.assert_array_equal(back, tokens)
    assert read_header(tmp_path / "a.bin", "") == (50257, 1001)
    assert (tmp_path / "a.bin").stat().st_size == HEADER.size + 2 * 1001
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]  # no temp file left behind
    write_shard(tmp_path / "empty.bin", np.zeros(0, np.uint16), vocab_size=10)
    assert read_shard(tmp_path / "empty.bin").size == 0


def test_write_shard_rejects_ids_outside_vocab(tmp_path):
    with pytest.raises(ValueError, match="vocab_size=10"):
        write_shard(tmp_path / "a.bin", np.array([3, 10]), vocab_size=10)
    with pytest.raises(ValueError, match="uint16"):
        write_shard(tmp_path / "a.bin", np.array([3]), vocab_size=70000)


def _corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "magic":
        raw = b"NOTTOKEN" + raw[8:]
    elif how == "version":
        raw = raw[:8] + struct.pack("<I", 99) + raw[12:]
    elif how == "truncated":
        raw = raw[:-3]
    elif how == "header_only_part":
        raw = raw[:10]
    path.write_bytes(raw)


@pytest.mark.parametrize("how, message", [("magic", "not a token shard"),
                                          ("version", "format version 99"),
                                          ("truncated", "truncated"),
                                          ("header_only_part", "truncated")])
def test_bad_shard_header_names_file_and_fix(tmp_path, how, message):
    path = tmp_path / "train_00000.bin"
    write_shard(path, np.arange(100, dtype=np.uint16), vocab_size=100)
    _corrupt(path, how)
    with pytest.raises(ValueError, match=message) as error:
        read_shard(path)
    assert str(path) in str(error.value) and "python -m data.prepare data=" in str(error.value)


def test_sharded_tokens_match_concatenation():
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 999, size=n).astype(np.uint16) for n in (5, 1, 17, 8)]
    whole, sharded = np.concatenate(parts), ShardedTokens(parts)
    assert len(sharded) == len(whole) == 31
    for start, stop in [(0, 31), (3, 7), (5, 6), (4, 24), (30, 31), (10, 10), (-5, None)]:
        np.testing.assert_array_equal(sharded[start:stop], whole[start:stop])
    assert [int(sharded[i]) for i in range(-31, 31)] == [int(v) for v in np.concatenate([whole, whole])]


# ---- batch loader ----------------------------------------------------------------------------
def _positions(n: int) -> np.ndarray:
    """Tokens equal to their index, so each window shows where it starts."""
    return np.arange(n, dtype=np.uint16)


def _window_starts(loader: BatchLoader, batches: int) -> list[int]:
    starts = []
    for _ in range(batches):
        x, y = loader.next_batch()
        starts += x[:, 0].tolist()
    return starts


def test_batches_are_windows_shifted_by_one():
    seq_len, tokens = 8, _positions(8 * 23 + 5)
    x, y = BatchLoader(tokens, batch_size=6, seq_len=seq_len, seed=3).next_batch()
    assert x.shape == y.shape == (6, seq_len) and x.dtype == y.dtype == torch.int64
    for row_x, row_y in zip(x, y):
        start = int(row_x[0])
        assert start % seq_len == 0 and start + seq_len + 1 <= len(tokens)
        assert row_x.tolist() == list(range(start, start + seq_len))
        assert row_y.tolist() == list(range(start + 1, start + seq_len + 1))


def test_every_window_once_per_epoch_with_fresh_order():
    seq_len, windows = 4, 23  # 23 windows, batches of 5: batches straddle epoch ends
    tokens = _positions(seq_len * windows + 1)
    starts = _window_starts(BatchLoader(tokens, batch_size=5, seq_len=seq_len, seed=0), 14)  # 70
    epochs = [starts[i * windows:(i + 1) * windows] for i in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == [i * seq_len for i in range(windows)]
    assert epochs[0] != epochs[1] != epochs[2]


def test_loader_is_deterministic_and_seeded():
    tokens = _positions(5000)
    a = _window_starts(BatchLoader(tokens, 4, 16, seed=7), 5)
    assert a == _window_starts(BatchLoader(tokens, 4, 16, seed=7), 5)
    assert a != _window_starts(BatchLoader(tokens, 4, 16, seed=8), 5)


def test_resume_is_exact_even_with_another_batch_size():
    tokens, seq_len = _positions(7 * 50 + 1), 7  # 50 windows
    reference = BatchLoader(tokens, batch_size=6, seq_len=seq_len, seed=11)
    full = [reference.next_batch() for _ in range(20)]  # crosses two epoch boundaries
    first = BatchLoader(tokens, batch_size=6, seq_len=seq_len, seed=11)
    for k in range(8):
        x, y = first.next_batch()
        assert torch.equal(x, full[k][0]) and torch.equal(y, full[k][1])
    state = json.loads(json.dumps(first.state_dict()))  # checkpoints may store it as JSON
    resumed = BatchLoader(tokens, batch_size=6, seq_len=seq_len, seed=999)  # the state's seed wins
    resumed.load_state_dict(state)
    for k in range(8, 20):
        x, y = resumed.next_batch()
        assert torch.equal(x, full[k][0]) and torch.equal(y, full[k][1])
    # the same window stream continues when the batch size changes at resume (48 = 4 * 12 windows)
    reference_starts = torch.cat([x[:, 0] for x, _ in full]).tolist()
    regrouped = BatchLoader(tokens, batch_size=4, seq_len=seq_len)
    regrouped.load_state_dict(state)
    assert reference_starts[48:96] == _window_starts(regrouped, 12)


def test_load_state_dict_rejects_other_data():
    state = BatchLoader(_positions(1000), 2, 10).state_dict()
    with pytest.raises(ValueError, match="same data and seq_len"):
        BatchLoader(_positions(2000), 2, 10).load_state_dict(state)
    with pytest.raises(ValueError, match="seq_len=10"):
        BatchLoader(_positions(1000), 2, 11).load_state_dict(state)


def test_ranks_split_the_global_stream():
    tokens, seq_len, batch = _positions(5 * 37 + 1), 5, 3  # 37 windows; 6 per step
    single = BatchLoader(tokens, 2 * batch, seq_len, seed=4)
    ranks = [BatchLoader(tokens, batch, seq_len, seed=4, rank=r, world_size=2) for r in range(2)]
    for _ in range(15):  # crosses epochs
        expected = single.next_batch()[0]
        got = torch.cat([loader.next_batch()[0] for loader in ranks])
        assert torch.equal(got, expected)
    assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()
    # a 2-GPU checkpoint resumes on 1 GPU exactly
    one_gpu = BatchLoader(tokens, 2 * batch, seq_len)
    one_gpu.load_state_dict(ranks[0].state_dict())
    assert torch.equal(one_gpu.next_batch()[0], single.next_batch()[0])


def test_loader_reads_sharded_tokens_like_one_array():
    whole = np.random.default_rng(2).integers(0, 4096, size=3001).astype(np.uint16)
    sharded = ShardedTokens([whole[:1000], whole[1000:1001], whole[1001:]])
    a, b = BatchLoader(whole, 8, 32, seed=5), BatchLoader(sharded, 8, 32, seed=5)
    for _ in range(30):
        assert all(torch.equal(u, v) for u, v in zip(a.next_batch(), b.next_batch()))


def test_too_short_split_is_a_clear_error():
    with pytest.raises(ValueError, match="lower seq_len"):
        BatchLoader(_positions(64), 2, seq_len=64)


def test_eval_batches_cover_the_split_once_and_repeat():
    seq_len, windows = 6, 29
    tokens = _positions(seq_len * windows + 3)
    batches = list(eval_batches(tokens, batch_size=4, seq_len=seq_len, max_batches=None))
    assert [len(x) for x, _ in batches] == [4] * 7 + [1]  # last partial batch kept
    starts = torch.cat([x[:, 0] for x, _ in batches]).tolist()
    assert starts == [i * seq_len for i in range(windows)]
    for (x, y), (x2, y2) in zip(batches, eval_batches(tokens, 4, seq_len, None)):
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert torch.equal(y[:, :-1], x[:, 1:])
    subset = list(eval_batches(tokens, batch_size=4, seq_len=seq_len, max_batches=3))
    sub_starts = torch.cat([x[:, 0] for x, _ in subset]).tolist()
    assert len(subset) == 3 and len(set(sub_starts)) == 12
    assert sub_starts[0] == 0 and sub_starts[-1] >= (windows - 3) * seq_len  # spread over the split
    assert len(list(eval_batches(tokens, 4, seq_len, max_batches=100))) == 8  # capped by the split


# ---- unigram entropy -------------------------------------------------------------------------
def test_unigram_entropy_closed_forms():
    vocab = 4096
    uniform = np.tile(np.arange(vocab, dtype=np.uint16), 3)
    assert unigram_entropy(uniform, vocab) == pytest.approx(math.log(vocab), abs=1e-12)
    skewed = np.array([0] * 3 + [7], dtype=np.uint16)  # p = (3/4, 1/4)
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert unigram_entropy(skewed, 10) == pytest.approx(expected, abs=1e-12)
    sharded = ShardedTokens([uniform[:5000], uniform[5000:]])
    assert unigram_entropy(sharded, vocab, chunk=777) == pytest.approx(math.log(vocab), abs=1e-12)
    with pytest.raises(ValueError, match="vocab_size=5"):
        unigram_entropy(skewed, 5)


# ---- embedded corpus -------------------------------------------------------------------------
def _write_sources(root: Path, count: int = 40) -> None:
    """A small, varied Python package, plus files the corpus must skip."""
    words = ["schedule", "warmup", "cooldown", "horizon", "bound", "loss", "token", "shard"]
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("pkg" if i % 3 else "") / ("sub" if i % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        body = []
        for j in range(12):
            a, b = rng.choice(words, 2)
            body.append(f"def {a}_{b}_{j}(x, y={j}):\n    \"\"\"Return the {a} of the {b}.\"\"\"\n"
                        f"    return x * {int(rng.integers(100))} + y  # {a} {b}\n")
        (folder / f"module_{i:02d}.py").write_text("\n".join(body))
    for skipped in ("test/test_x.py", "encodings/cp1.py", "site-packages/lib/a.py",
                    "_sysconfigdata_x.py", "config-3.11/b.py", "notes.txt"):
        (root / skipped).parent.mkdir(parents=True, exist_ok=True)
        (root / skipped).write_text("SKIPPED = True\n")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """A small embedded corpus built from generated sources (a few hundred ms)."""
    root = tmp_path_factory.mktemp("sources")
    _write_sources(root)
    cache = tmp_path_factory.mktemp("cache")
    data = embedded.load(str(cache), vocab_size=512, val_fraction=0.2, source_dir=str(root))
    return root, cache, data


def test_corpus_files_skip_tests_codecs_and_build_config(small_corpus):
    root, _, _ = small_corpus
    files = embedded.corpus_files(root)
    assert len(files) == 40 and files == sorted(files)
    assert not any(f.startswith(("test/", "encodings/", "site-packages/", "config-", "_sysconfig"))
                   for f in files)


def test_embedded_split_is_disjoint_and_matches_direct_encoding(small_corpus):
    root, _, data = small_corpus
    meta = json.loads((Path(data.tokenizer_path).parent / "meta.json").read_text())
    files = embedded.corpus_files(root)
    val_files = meta["val_files"]
    assert 0 < len(val_files) < len(files) and set(val_files) <= set(files)
    assert meta["files_train"] + meta["files_val"] == len(files)
    # independent reference: encode each file directly with the saved tokenizer, EOS after each
    tokenizer = Tokenizer.from_file(data.tokenizer_path)
    eos = tokenizer.token_to_id("<|endoftext|>")

    def encode(names):
        ids = []
        for name in names:
            ids += tokenizer.encode((root / name).read_text(), add_special_tokens=False).ids + [eos]
        return ids

    assert data.val.tolist() == encode(val_files)
    assert data.train.tolist() == encode([f for f in files if f not in val_files])
    assert data.vocab_size == 512 and int(data.train.max()) < 512


def test_embedded_build_is_deterministic_and_cached(small_corpus, tmp_path, monkeypatch):
    root, cache, first = small_corpus
    second = embedded.load(str(tmp_path), vocab_size=512, val_fraction=0.2, source_dir=str(root))
    assert Path(first.tokenizer_path).read_bytes() == Path(second.tokenizer_path).read_bytes()
    np.testing.assert_array_equal(first.train, second.train)
    np.testing.assert_array_equal(first.val, second.val)
    assert [p.name for p in tmp_path.iterdir()] == [Path(second.tokenizer_path).parent.name]
    monkeypatch.setattr(embedded, "build", lambda *a, **k: pytest.fail("rebuilt a cached corpus"))
    again = embedded.load(str(cache), vocab_size=512, val_fraction=0.2, source_dir=str(root))
    np.testing.assert_array_equal(again.train, first.train)


def test_embedded_cache_key_follows_the_sources(tmp_path):
    root = tmp_path / "src"
    _write_sources(root, count=12)
    kwargs = dict(vocab_size=300, val_fraction=0.3, source_dir=str(root))
    before = embedded.load(str(tmp_path / "cache"), **kwargs)
    with open(root / "pkg" / "module_01.py", "a") as f:
        f.write("\n# one more line changes the file size\n")
    after = embedded.load(str(tmp_path / "cache"), **kwargs)
    assert before.tokenizer_path != after.tokenizer_path
    assert len(after.train) + len(after.val) > len(before.train) + len(before.val)


def test_truncated_embedded_cache_says_to_delete_it(tmp_path):
    root = tmp_path / "src"
    _write_sources(root, count=12)
    kwargs = dict(vocab_size=300, val_fraction=0.3, source_dir=str(root))
    built = embedded.load(str(tmp_path / "cache"), **kwargs)
    shard = Path(built.tokenizer_path).parent / "train.bin"
    _corrupt(shard, "truncated")
    with pytest.raises(ValueError, match="truncated.*delete the cache directory"):
        embedded.load(str(tmp_path / "cache"), **kwargs)


def test_default_embedded_config_builds_the_stdlib_corpus(tmp_path):
    """The data `python train.py` uses by default, from configs/data/embedded.yaml (~6 s)."""
    cfg = OmegaConf.load(REPO / "configs" / "data" / "embedded.yaml")
    cfg.cache_dir = str(tmp_path)
    from hydra.utils import instantiate
    data = instantiate(cfg)
    assert data.name == "embedded" and data.vocab_size == 4096
    assert len(data.train) > 1_000_000 and len(data.val) > 20_000
    assert int(data.train.max()) < 4096
    entropy = unigram_entropy(data.val, data.vocab_size)
    assert 4.0 < entropy < math.log(4096)  # real text: far from uniform, far from constant
    assert Tokenizer.from_file(data.tokenizer_path).decode(data.val[:200].tolist()).strip()


# ---- Hugging Face preparation (offline) -----------------------------------------------------
def _settings(tokenizer_path: str, tmp_path: Path, **overrides) -> PrepareSettings:
    values = dict(dataset="json", data_files=str(TINY_CORPUS), tokenizer=tokenizer_path,
                  streaming=True, val_fraction=0.25, shard_tokens=300, batch_docs=4, num_proc=1,
                  cache_dir=str(tmp_path / "hf_cache"))
    values.update(overrides)
    return PrepareSettings(**values)


def _documents() -> list[str]:
    return [json.loads(line)["text"] for line in TINY_CORPUS.read_text().splitlines()]


def _shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.bin"))}


@pytest.fixture(scope="module")
def tokenizer_path(small_corpus):
    return small_corpus[2].tokenizer_path


def test_prepare_streaming_keeps_every_document_once(tokenizer_path, tmp_path):
    meta = prepare(str(tmp_path / "out"), "tiny", 512, _settings(tokenizer_path, tmp_path))
    assert len(meta["train"]) >= 3 and meta["documents"] == len(_documents())
    data = load(str(tmp_path / "out"), vocab_size=512, name="tiny")
    tokenizer = Tokenizer.from_file(tokenizer_path)
    eos = tokenizer.token_to_id("<|endoftext|>")
    encoded = {"train": [], "val": []}
    for text in _documents():  # reference: each document encoded alone, in file order, then EOS
        split = "val" if is_validation_text(text, 0.25) else "train"
        encoded[split] += tokenizer.encode(text, add_special_tokens=False).ids + [eos]
    assert encoded["val"] and encoded["train"]
    assert data.train[0:len(data.train)].tolist() == encoded["train"]
    assert data.val[0:len(data.val)].tolist() == encoded["val"]
    assert data.tokenizer_path == str(tmp_path / "out" / "tokenizer.json")
    # a pool of tokenizer processes writes the very same shards
    prepare(str(tmp_path / "pool"), "tiny", 512, _settings(tokenizer_path, tmp_path, num_proc=2))
    assert _shard_bytes(tmp_path / "pool") == _shard_bytes(tmp_path / "out")


def test_prepare_without_streaming_reproduces_train_test_split(tokenizer_path, tmp_path):
    import datasets

    settings = _settings(tokenizer_path, tmp_path, streaming=False, val_fraction=0.1, seed=2357)
    prepare(str(tmp_path / "out"), "tiny", 512, settings)
    data = load(str(tmp_path / "out"), vocab_size=512, name="tiny")
    full = datasets.load_dataset("json", data_files=str(TINY_CORPUS), split="train",
                                 cache_dir=str(tmp_path / "hf_cache"))
    split = full.train_test_split(test_size=0.1, seed=2357)
    tokenizer = Tokenizer.from_file(tokenizer_path)
    val = [t for text in split["test"]["text"]
           for t in tokenizer.encode(text, add_special_tokens=False).ids + [0]]
    train = [t for text in split["train"]["text"]
             for t in tokenizer.encode(text, add_special_tokens=False).ids + [0]]
    assert data.val[0:len(data.val)].tolist() == val
    assert data.train[0:len(data.train)].tolist() == train


def test_prepare_resumes_after_interruption_and_repairs_shards(tokenizer_path, tmp_path):
    reference = tmp_path / "reference"
    prepare(str(reference), "tiny", 512, _settings(tokenizer_path, tmp_path))
    out = tmp_path / "out"
    assert prepare(str(out), "tiny", 512, _settings(tokenizer_path, tmp_path, stop_after_shards=2)) is None
    assert len(list(out.glob("train_*.bin"))) == 2
    with pytest.raises(ValueError, match="interrupted.*python -m data.prepare data=tiny"):
        load(str(out), vocab_size=512, name="tiny")
    prepare(str(out), "tiny", 512, _settings(tokenizer_path, tmp_path, num_proc=2))  # resume
    assert _shard_bytes(out) == _shard_bytes(reference)
    # a truncated shard of a finished directory: the loader names it and the command that repairs it
    _corrupt(out / "train_00001.bin", "truncated")
    with pytest.raises(ValueError, match=r"train_00001\.bin is truncated.*python -m data.prepare"):
        load(str(out), vocab_size=512, name="tiny")
    prepare(str(out), "tiny", 512, _settings(tokenizer_path, tmp_path))
    assert _shard_bytes(out) == _shard_bytes(reference)
    # other settings on an existing directory are refused rather than mixed
    with pytest.raises(ValueError, match="val_fraction differ"):
        prepare(str(out), "tiny", 512, _settings(tokenizer_path, tmp_path, val_fraction=0.5))


def test_missing_data_dir_names_dir_and_command(tmp_path):
    cfg = OmegaConf.load(REPO / "configs" / "data" / "slimpajama_6b.yaml")
    cfg.dir = str(tmp_path / "nowhere")
    from hydra.utils import instantiate
    with pytest.raises(Exception) as error:  # hydra wraps the loader's ValueError, message kept
        instantiate(cfg)
    assert isinstance(error.value.__cause__ or error.value, ValueError)
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert "python -m data.prepare data=slimpajama_6b" in message


def test_prepare_command_composes_the_project_config(tokenizer_path, tmp_path):
    out = tmp_path / "slimpajama_small"
    overrides = [
        "data=slimpajama_6b", f"data.dir='{out}'", "data.prepare.dataset=json",
        f"data.prepare.data_files='{TINY_CORPUS}'", f"data.prepare.tokenizer='{tokenizer_path}'",
        "data.prepare.streaming=true", "data.prepare.val_fraction=0.25",
        "data.prepare.shard_tokens=500", "data.prepare.num_proc=1",
        f"data.prepare.cache_dir='{tmp_path / 'hf_cache'}'", "data.prepare.max_docs=40",
    ]
    assert main(overrides) == 0  # the command
    meta = prepare_from_config(compose(overrides).data)  # its summary: the finished preparation, not redone
    assert meta["documents"] == 40
    from hydra.utils import instantiate
    data = instantiate(compose(overrides).data)  # what the trainer does with the same config
    assert data.name == "slimpajama_6b" and data.vocab_size == 50304
    assert len(data.train) == meta["tokens_train"] and len(data.val) == meta["tokens_val"]
    x, y = BatchLoader(data.train, batch_size=2, seq_len=16).next_batch()
    assert x.shape == (2, 16) and torch.equal(x[:, 1:], y[:, :-1])
