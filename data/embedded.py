"""The embedded default corpus: the Python standard library's own source files, tokenized offline.

Why this text: every machine that runs this project has it (no download, no hub), it is a few
megabytes of real, structured text (code plus English docstrings and comments, and pydoc_data's
copy of the language reference), and it is fixed for a given Python version.

What is in it: every `*.py` under `sysconfig.get_paths()["stdlib"]`, sorted by relative path,
except test suites (`test/`, `tests/`, `idle_test/`), installed packages (`site-packages/`),
`encodings/` (generated codec tables, not prose or code) and the machine-specific build
configuration (`_sysconfigdata_*.py`, `config-*/`). Each file is one document, followed by the
end-of-text token `<|endoftext|>` (id 0), as the prepared Hugging Face data separates documents.

Split: a file goes to validation when the hash of its relative path falls in the lowest
`val_fraction` of the hash range, so the split is deterministic, disjoint by file, and a file's side
does not depend on which other files exist. Tokenizer: byte-level BPE trained with `tokenizers` on
the training files only (deterministic: same files -> same tokenizer.json and ids).

The result (tokenizer.json, train.bin, val.bin in the data.shards format, meta.json with the build
statistics) is cached under `cache_dir/<fingerprint>`, where the fingerprint covers the Python
version, the file list and sizes, vocab_size, val_fraction and the format versions, so any change
rebuilds. A build goes to a temporary directory renamed into place, so concurrent processes or a
killed build never leave a half cache. Python 3.11.7: 610 files, 2.84M train / 90k val tokens
(18 files), built in 5-10 s on 2 cores.

    data = load(cache_dir="~/.cache/lrsched/embedded")      # configs/data/embedded.yaml
    python -m data.prepare data=embedded                      # builds the cache and logs its statistics
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
import sysconfig
import time
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data.prepare import encode_documents
from data.shards import FORMAT_VERSION, META_FILE, TOKENIZER_FILE, max_token_ids, read_shard, write_shard
from data.tokens import TokenData, unigram_entropy

log = logging.getLogger(__name__)

BUILDER_VERSION = 1  # bump when the file selection or document layout changes: caches then rebuild
EOS = "<|endoftext|>"
EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__", "site-packages",
                           "dist-packages", "encodings"})


def corpus_files(source_dir: str | os.PathLike | None = None) -> list[str]:
    """Relative POSIX paths of the corpus files under source_dir (default: the stdlib), sorted."""
    root = Path(source_dir if source_dir is not None else sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ValueError(f"embedded corpus source_dir={root} is not a directory: point "
                         "data.source_dir at a folder of .py files, or null for the standard library")
    files = []
    for folder, subfolders, names in os.walk(root):
        # prune excluded folders in place so that os.walk never descends into them
        subfolders[:] = [d for d in subfolders if d not in EXCLUDED_DIRS and not d.startswith("config-")]
        rel = Path(folder).relative_to(root)
        files += [(rel / n).as_posix() for n in names
                  if n.endswith(".py") and not n.startswith("_sysconfigdata")]
    return sorted(files)


def is_validation(rel_path: str, val_fraction: float) -> bool:
    """Hash-bucket split: deterministic per file, independent of the other files."""
    digest = hashlib.sha256(rel_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") < val_fraction * 2.0**64


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization) with EOS as special token id 0."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _fingerprint(root: Path, files: list[str], vocab_size: int, val_fraction: float) -> str:
    key = {
        "python": [platform.python_implementation(), platform.python_version()],
        "tokenizers": tokenizers.__version__,  # BPE tie-breaking could change between releases
        "builder": BUILDER_VERSION, "shard_format": FORMAT_VERSION,
        "vocab_size": vocab_size, "val_fraction": val_fraction,
        "files": [[f, (root / f).stat().st_size] for f in files],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _read_texts(root: Path, files: list[str]) -> list[str]:
    return [(root / f).read_text(encoding="utf-8", errors="replace") for f in files]


def build(root: Path, files: list[str], out_dir: Path, vocab_size: int, val_fraction: float) -> dict:
    """Train the tokenizer and write tokenizer.json, train.bin, val.bin, meta.json into out_dir."""
    start = time.perf_counter()
    val_files = [f for f in files if is_validation(f, val_fraction)]
    train_files = [f for f in files if not is_validation(f, val_fraction)]
    if not val_files or not train_files:
        raise ValueError(f"val_fraction={val_fraction} puts {len(val_files)} of {len(files)} corpus "
                         "files in validation: choose a val_fraction that leaves both splits non-empty")
    train_texts, val_texts = _read_texts(root, train_files), _read_texts(root, val_files)
    tokenizer = train_tokenizer(train_texts, vocab_size)
    tokenizer.save(str(out_dir / TOKENIZER_FILE))
    eos = tokenizer.token_to_id(EOS)
    train, val = encode_documents(tokenizer, train_texts, eos), encode_documents(tokenizer, val_texts, eos)
    tokenizer_vocab = tokenizer.get_vocab_size()
    write_shard(out_dir / "train.bin", train, tokenizer_vocab)
    write_shard(out_dir / "val.bin", val, tokenizer_vocab)
    meta = {
        "source_dir": str(root), "files_train": len(train_files), "files_val": len(val_files),
        "val_files": val_files, "tokens_train": int(train.size), "tokens_val": int(val.size),
        "tokenizer_vocab_size": tokenizer_vocab, "vocab_size": vocab_size,
        "val_unigram_entropy_nats": unigram_entropy(val, vocab_size),
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def load(cache_dir: str, vocab_size: int = 4096, val_fraction: float = 0.03,
         name: str = "embedded", source_dir: str | None = None,
         max_files: int | None = None) -> TokenData:
    """TokenData of the embedded corpus, built on first use and cached.

    source_dir: folder whose *.py files make the corpus (None: the standard library).
    max_files: use only the first max_files files in sorted order (small corpora for tests).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must lie strictly between 0 and 1 "
                         "(e.g. data.val_fraction=0.03)")
    if not 256 < vocab_size <= 1 << 16:
        raise ValueError(f"vocab_size={vocab_size} must exceed the 256 byte tokens and fit uint16 "
                         "(<= 65536); 4096 suits the embedded corpus")
    root = Path(source_dir if source_dir is not None else sysconfig.get_paths()["stdlib"])
    files = corpus_files(root)[:max_files]
    if not files:
        raise ValueError(f"no .py files found under {root}: point data.source_dir at a folder of "
                         "Python sources, or null for the standard library")
    cache = Path(cache_dir).expanduser()
    target = cache / _fingerprint(root, files, vocab_size, val_fraction)
    if not (target / META_FILE).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        if target.exists():  # published caches always hold meta.json: this one was tampered with
            shutil.rmtree(target)
        tmp = cache / f".build-{target.name}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        log.info("building the embedded corpus from %d files under %s into %s", len(files), root, target)
        try:
            meta = build(root, files, tmp, vocab_size, val_fraction)
            try:
                os.rename(tmp, target)  # atomic publish; fails if another process published first
            except OSError:
                assert (target / META_FILE).is_file(), f"{target} exists but is incomplete"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("embedded corpus built in %.1f s: %d train / %d val tokens, tokenizer vocab %d, "
                 "val unigram entropy %.3f nats", meta["build_seconds"], meta["tokens_train"],
                 meta["tokens_val"], meta["tokenizer_vocab_size"], meta["val_unigram_entropy_nats"])
    else:
        log.info("using the cached embedded corpus at %s", target)
    remedy = f"delete the cache directory {target} and it is rebuilt on the next run"
    shards = [target / "train.bin", target / "val.bin"]
    data = TokenData(train=read_shard(shards[0], remedy), val=read_shard(shards[1], remedy),
                     vocab_size=vocab_size, name=name, tokenizer_path=str(target / TOKENIZER_FILE),
                     max_token_ids=max_token_ids(shards, vocab_size, remedy))
    data.check_vocab(vocab_size, "data.vocab_size", remedy)
    return data
