"""Prepare a Hugging Face text dataset as uint16 token shards, resumably. Its own command:

    python -m data.prepare data=slimpajama_6b
    python -m data.prepare data=fineweb_edu data.prepare.num_proc=16
    python -m data.prepare data=slimpajama_6b data.prepare.max_docs=1000 data.dir=/tmp/sp_small

It composes the same Hydra config as train.py (configs/config.yaml), so the data yaml is the one
source of truth: its `prepare:` block says what to read and how, `dir` where to write, and the
trainer later loads `dir` with the same config (data.shards.load). `data=embedded` has nothing to
download: the command builds its cache.

Pipeline: documents are read in a fixed order (`datasets.load_dataset`, streamed or downloaded),
tokenized in parallel by a pool of `num_proc` processes (batches of `batch_docs` documents, each
document followed by EOS, e.g. GPT-2's <|endoftext|> = 50256), and appended to a train and a val
buffer. When the train buffer reaches `shard_tokens`, both buffers are written as one chunk
(`train_NNNNN.bin`, plus `val_NNNNN.bin` when it holds validation documents) and progress.json
records the chunk and the number of documents consumed. A rerun validates the recorded chunks,
keeps the longest valid prefix, skips the documents it covers and goes on; same settings give the
same shards. meta.json, written last, marks the directory complete.

Validation split (the paper: 0.05% of SlimPajama's train split, seed 2357, nanoGPT-style):
- `streaming: false` downloads the split and reproduces it exactly:
  `train_test_split(test_size=val_fraction, seed=seed, shuffle=True)`; val documents come first.
- `streaming: true` cannot shuffle a stream, so a document goes to val when a hash of its text
  falls in the lowest `val_fraction` of the range: deterministic and the same expected size, but
  not the same documents as the paper's split (and exact duplicates always land on one side).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tokenizers import Tokenizer

from data.shards import (META_FILE, PROGRESS_FILE, TOKENIZER_FILE, atomic_path, load,
                         prepare_command, read_header, write_shard)
from training.config import compose, group_options  # the project config as train.py composes it (torch-free)

log = logging.getLogger(__name__)


@dataclass
class PrepareSettings:
    """The `prepare:` block of a data config. The first group fixes the output; the rest do not."""

    dataset: str  # load_dataset path: a hub repo ("DKYoon/SlimPajama-6B") or a builder ("json")
    subset: str | None = None  # load_dataset name, e.g. "sample-10BT"
    split: str = "train"  # the split to read; validation is carved out of it
    data_files: str | list[str] | None = None  # for builders like "json": local files to read
    text_field: str = "text"
    tokenizer: str = "gpt2"  # a tokenizer.json path, or a hub repo that has one
    eos_token: str = "<|endoftext|>"  # appended after every document
    streaming: bool = True
    val_fraction: float = 0.0005
    seed: int = 2357  # train_test_split seed when streaming is false
    shard_tokens: int = 100_000_000  # train tokens per shard (200 MB); shards end at batch ends
    max_docs: int | None = None  # read only the first max_docs documents (small runs, tests)
    # Settings below change speed or stopping only, never the tokens written.
    num_proc: int = 8  # tokenizer processes (<= 1: tokenize in this process)
    batch_docs: int = 1000  # documents per tokenization task
    stop_after_shards: int | None = None  # write at most this many new shards, then stop (resumable)
    cache_dir: str | None = None  # Hugging Face datasets cache (None: its default)

    def identity(self) -> dict:
        """Settings that determine the tokens: a resume must see the same ones."""
        keep = ("dataset", "subset", "split", "data_files", "text_field", "tokenizer", "eos_token",
                "streaming", "val_fraction", "seed", "shard_tokens", "max_docs")
        return json.loads(json.dumps({k: asdict(self)[k] for k in keep}))


def load_tokenizer(spec: str) -> Tokenizer:
    """A tokenizers.Tokenizer from a tokenizer.json path or a hub repo name (e.g. "gpt2")."""
    path = Path(spec).expanduser()
    if path.is_file():
        return Tokenizer.from_file(str(path))
    try:
        return Tokenizer.from_pretrained(spec)
    except Exception as error:  # hub errors come in many types; all mean the same to the user
        raise ValueError(f"data.prepare.tokenizer={spec!r} is neither a tokenizer.json file nor a "
                         f"reachable hub repo with one ({error}): pass a local tokenizer.json path "
                         "or check the network") from error


def encode_documents(tokenizer: Tokenizer, texts: list[str], eos_id: int) -> np.ndarray:
    """Concatenated uint16 ids of the documents, each followed by eos_id: the document layout of
    every split this package writes (encode_batch runs in parallel unless TOKENIZERS_PARALLELISM is off)."""
    ids = []
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(eos_id)
    return np.asarray(ids, dtype=np.uint16)


def is_validation_text(text: str, val_fraction: float) -> bool:
    """Streaming split: a document is validation when its text hashes below val_fraction."""
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < val_fraction * 2.0**64


# ---- tokenization, in worker processes -------------------------------------------------------
_worker: dict = {}


def _init_worker(tokenizer_json: str, eos_id: int, val_fraction: float, in_pool: bool) -> None:
    if in_pool:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the pool is the parallelism
    _worker.update(tokenizer=Tokenizer.from_str(tokenizer_json), eos=eos_id, val_fraction=val_fraction)


def _encode_task(task: tuple[list[str], str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(texts, "train" | "val" | "hash") -> (train tokens, val tokens, number of documents)."""
    texts, kind = task
    if kind == "hash":
        is_val = [is_validation_text(text, _worker["val_fraction"]) for text in texts]
        train_texts = [t for t, v in zip(texts, is_val) if not v]
        val_texts = [t for t, v in zip(texts, is_val) if v]
    else:
        train_texts, val_texts = (texts, []) if kind == "train" else ([], texts)
    tokenizer, eos = _worker["tokenizer"], _worker["eos"]
    return (encode_documents(tokenizer, train_texts, eos), encode_documents(tokenizer, val_texts, eos),
            len(texts))


def _tokenized(tasks: Iterator, num_proc: int, init_args: tuple) -> Iterator:
    """_encode_task over tasks, in order; at most 2 * num_proc tasks in flight (bounded memory)."""
    if num_proc <= 1:
        _init_worker(*init_args, in_pool=False)
        yield from map(_encode_task, tasks)
        return
    # spawn, not fork: the datasets reader runs threads, and forking a threaded process is unsafe.
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_proc, initializer=_init_worker, initargs=(*init_args, True)) as pool:
        pending = deque()
        for task in tasks:
            pending.append(pool.apply_async(_encode_task, (task,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ---- reading documents -------------------------------------------------------------------------
def _document_batches(s: PrepareSettings, docs_done: int) -> Iterator[tuple[list[str], str]]:
    """Batches of (texts, split kind) in a fixed order, from document number docs_done on."""
    import datasets  # heavy; only the main process needs it

    kwargs = dict(path=s.dataset, name=s.subset, split=s.split, data_files=s.data_files,
                  cache_dir=s.cache_dir)
    if s.streaming:
        stream = datasets.load_dataset(**kwargs, streaming=True)
        if s.max_docs is not None:
            stream = stream.take(s.max_docs)
        parts = [(stream, "hash")]
    else:
        full = datasets.load_dataset(**kwargs, num_proc=s.num_proc if s.num_proc > 1 else None)
        if s.max_docs is not None:
            full = full.select(range(min(s.max_docs, len(full))))
        split = full.train_test_split(test_size=s.val_fraction, seed=s.seed, shuffle=True)
        parts = [(split["test"], "val"), (split["train"], "train")]
    skip = docs_done
    for part, kind in parts:
        if kind != "hash" and skip >= len(part):
            skip -= len(part)
            continue
        if skip:  # resuming: for a stream this reads the skipped documents again, untokenized
            part, skip = part.skip(skip), 0
        for batch in part.select_columns([s.text_field]).iter(batch_size=s.batch_docs):
            yield batch[s.text_field], kind


# ---- progress and shards -----------------------------------------------------------------------
def _write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


def _resume_state(out: Path, identity: dict, command: str) -> dict:
    """progress.json cut back to its longest prefix of chunks whose shards are all valid."""
    path = out / PROGRESS_FILE
    if not path.is_file():
        return {"identity": identity, "chunks": [], "docs_done": 0, "finished": False}
    progress = json.loads(path.read_text())
    if progress["identity"] != identity:
        changed = sorted(k for k in identity if progress["identity"].get(k) != identity[k])
        raise ValueError(f"{out} was prepared with other settings ({', '.join(changed)} differ): "
                         f"delete it to start over, or restore those settings and re-run `{command}`")
    for index, chunk in enumerate(progress["chunks"]):
        try:
            for name in (chunk["train"], chunk["val"]):
                if name is not None:
                    read_header(out / name, "")
        except ValueError as error:
            log.warning("%s; redoing chunks %d and later", error, index)
            progress["chunks"] = progress["chunks"][:index]
            progress["docs_done"] = progress["chunks"][-1]["docs_end"] if index else 0
            progress["finished"] = False
            (out / META_FILE).unlink(missing_ok=True)
            break
    return progress


def _write_chunk(out: Path, progress: dict, train: list, val: list, docs_done: int,
                 vocab_size: int) -> None:
    index = len(progress["chunks"])
    chunk = {"train": None, "val": None, "docs_end": docs_done}
    for split, buffer in (("train", train), ("val", val)):
        tokens = np.concatenate(buffer) if buffer else np.zeros(0, np.uint16)
        if tokens.size:
            chunk[split], chunk[f"{split}_tokens"] = f"{split}_{index:05d}.bin", int(tokens.size)
            write_shard(out / chunk[split], tokens, vocab_size)
    progress["chunks"].append(chunk)
    progress["docs_done"] = docs_done
    _write_json(out / PROGRESS_FILE, progress)  # after the shards: a chunk listed here is on disk


def _tokenize_into_chunks(out: Path, progress: dict, settings: PrepareSettings,
                          tokenizer: Tokenizer, eos_id: int, command: str) -> bool:
    """Tokenize the documents progress has not covered yet; False when stopped early."""
    docs, start, new_shards, session_tokens = progress["docs_done"], time.perf_counter(), 0, 0
    log.info("preparing %s into %s from document %d (%d chunks done)", settings.dataset, out,
             docs, len(progress["chunks"]))
    train, val, train_len = [], [], 0
    init_args = (tokenizer.to_str(), eos_id, settings.val_fraction)
    batches = _tokenized(_document_batches(settings, docs), settings.num_proc, init_args)
    for train_ids, val_ids, n_docs in batches:
        train.append(train_ids)
        val.append(val_ids)
        train_len, docs = train_len + train_ids.size, docs + n_docs
        session_tokens += train_ids.size + val_ids.size
        if train_len >= settings.shard_tokens:
            _write_chunk(out, progress, train, val, docs, tokenizer.get_vocab_size())
            new_shards += 1
            log.info("chunk %d written: %d train tokens, %d documents so far, %.0f tokens/s",
                     len(progress["chunks"]) - 1, train_len, docs,
                     session_tokens / (time.perf_counter() - start))
            train, val, train_len = [], [], 0
            if settings.stop_after_shards is not None and new_shards >= settings.stop_after_shards:
                batches.close()  # ends the worker pool
                log.info("stopped after %d new shards; re-run `%s` to resume", new_shards, command)
                return False
    if any(b.size for b in train + val):  # the rest after the last full shard
        _write_chunk(out, progress, train, val, docs, tokenizer.get_vocab_size())
    progress["finished"] = True
    _write_json(out / PROGRESS_FILE, progress)
    return True


def _write_meta(out: Path, name: str, settings: PrepareSettings, progress: dict,
                tokenizer_vocab: int, eos_id: int) -> dict:
    """meta.json, written last: the list of shards the loader reads, and the totals."""
    chunks = progress["chunks"]
    meta = {
        "name": name, "dataset": settings.dataset, "subset": settings.subset,
        "tokenizer_vocab_size": tokenizer_vocab, "eos_id": eos_id,
        "documents": progress["docs_done"],
        "train": [c["train"] for c in chunks if c["train"]],
        "val": [c["val"] for c in chunks if c["val"]],
        "tokens_train": sum(c.get("train_tokens", 0) for c in chunks),
        "tokens_val": sum(c.get("val_tokens", 0) for c in chunks),
        "identity": progress["identity"],
    }
    for split in ("train", "val"):
        if not meta[split]:
            raise ValueError(f"no {split} documents among the {meta['documents']} read: raise "
                             "data.prepare.max_docs, or adjust data.prepare.val_fraction")
    _write_json(out / META_FILE, meta)
    log.info("prepared %s: %d train / %d val tokens in %d + %d shards", out, meta["tokens_train"],
             meta["tokens_val"], len(meta["train"]), len(meta["val"]))
    return meta


def prepare(dir: str, name: str, vocab_size: int, settings: PrepareSettings) -> dict | None:
    """Tokenize settings' dataset into dir. Returns meta.json's content, or None when stopped early."""
    out = Path(dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    command = prepare_command(name, out)
    tokenizer = load_tokenizer(settings.tokenizer)
    tokenizer_vocab = tokenizer.get_vocab_size()
    eos_id = tokenizer.token_to_id(settings.eos_token)
    if eos_id is None:
        raise ValueError(f"data.prepare.eos_token={settings.eos_token!r} is not a token of "
                         f"{settings.tokenizer}: name its end-of-text token")
    if tokenizer_vocab > min(vocab_size, 1 << 16):
        raise ValueError(f"the tokenizer {settings.tokenizer} has {tokenizer_vocab} tokens: "
                         f"data.vocab_size={vocab_size} must be at least that, and uint16 shards "
                         "hold at most 65536")
    progress = _resume_state(out, settings.identity(), command)
    if progress["finished"] and (out / META_FILE).is_file():
        log.info("%s is already prepared; nothing to do", out)
        return json.loads((out / META_FILE).read_text())
    with atomic_path(out / TOKENIZER_FILE) as tmp:  # the trainer decodes samples with it
        tokenizer.save(str(tmp))
    if not progress["finished"]:
        if not _tokenize_into_chunks(out, progress, settings, tokenizer, eos_id, command):
            return None
    return _write_meta(out, name, settings, progress, tokenizer_vocab, eos_id)


def prepare_from_config(data_cfg) -> dict | None:
    """Run the preparation a composed `cfg.data` describes (build the cache for data=embedded)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if "prepare" not in data_cfg:  # nothing to download: loading builds and caches it
        data = instantiate(data_cfg)
        log.info("%s ready: %d train / %d val tokens", data.name, len(data.train), len(data.val))
        return None
    settings = PrepareSettings(**OmegaConf.to_container(data_cfg.prepare, resolve=True))
    meta = prepare(data_cfg.dir, data_cfg.name, data_cfg.vocab_size, settings)
    if meta is not None:
        load(data_cfg.dir, data_cfg.vocab_size, data_cfg.name)  # validates every shard once
    return meta


def parse_args(argv: list[str]) -> list[str]:
    """The command line's Hydra overrides; `--help` prints this module's docstring and the data configs."""
    parser = argparse.ArgumentParser(prog="python -m data.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog="data configs: "
                                     + ", ".join(group_options("data")))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides, as for train.py")
    return parser.parse_args(argv).overrides


def main(argv: list[str] | None = None) -> int:
    """`python -m data.prepare` and the `lrsched-prepare` command: an exit status (scripts that want the
    summary call prepare_from_config)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prepare_from_config(compose(parse_args(sys.argv[1:] if argv is None else argv)).data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
