"""Token shard files and the loader of a prepared data directory.

A shard is one file: a fixed 32-byte little-endian header, then the tokens as uint16.

    offset  size  field
    0       8     magic b"LRSTOKv\\0"
    8       4     format version (uint32, FORMAT_VERSION)
    12      4     vocabulary size of the tokenizer that made the tokens (uint32; all ids are below it)
    16      8     number of tokens (uint64)
    24      4     the largest token id in the shard (uint32; 0 when empty), since version 2
    28      4     reserved, zero
    32      2*n   tokens (uint16)

The header makes a truncated or foreign file an error at load time instead of silent garbage in
training, and its largest id lets `load` refuse a shard with ids beyond the vocabulary when the data
opens (not an IndexError in the embedding at some step). Version-1 shards (bytes 24-32 zero) stay
readable: their writer checked every id against the header's vocabulary size, which bounds them; their
tokens are scanned only when that bound is not below the vocabulary. A prepared directory (written
by `python -m data.prepare data=NAME`) holds shards listed in `meta.json`; `load` is the `_target_`
of the prepared-data configs (configs/data/slimpajama_6b.yaml):

    data = load(dir="/data/slimpajama_6b", vocab_size=50304, name="slimpajama_6b")
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from data.tokens import ShardedTokens, TokenData

MAGIC = b"LRSTOKv\0"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no largest id recorded
HEADER = struct.Struct("<8sIIQI4x")  # magic, version, vocab size, token count, largest id, padding
assert HEADER.size == 32  # keeps the uint16 payload aligned for np.memmap
META_FILE = "meta.json"  # written last by data.prepare: the directory is complete when it exists
PROGRESS_FILE = "progress.json"  # data.prepare's resume state while it runs
TOKENIZER_FILE = "tokenizer.json"


def prepare_command(name: str, directory: str | os.PathLike) -> str:
    """The exact command that (re)creates a prepared data directory."""
    return f"python -m data.prepare data={name} data.dir={directory}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary sibling of `path` to write to; renamed onto `path` only when the block succeeds,
    so a reader (or a resumed data.prepare) never sees a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_shard(path: str | os.PathLike, tokens: np.ndarray, vocab_size: int) -> None:
    """Write `tokens` (1-D, ids < vocab_size <= 65536) atomically: to a temp file, then rename."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"write_shard expects 1-D tokens, got shape {tokens.shape}")
    if not 0 < vocab_size <= 1 << 16:
        raise ValueError(f"vocab_size={vocab_size} does not fit uint16 shards: use a tokenizer "
                         "with at most 65536 tokens")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"token ids span [{int(tokens.min())}, {int(tokens.max())}], outside "
                         f"[0, vocab_size={vocab_size}): pass the tokenizer's vocabulary size")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(HEADER.pack(MAGIC, FORMAT_VERSION, vocab_size, tokens.size, int(tokens.max()) if tokens.size else 0))
        f.write(tokens.astype("<u2", copy=False).tobytes())
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename publishes it (a crash then leaves no torn shard)


def read_header(path: str | os.PathLike, remedy: str) -> tuple[int, int]:
    """Validate a shard's header and size; return (vocab_size, num_tokens)."""
    return _header(path, remedy)[1:3]


def _header(path: str | os.PathLike, remedy: str) -> tuple[int, int, int, int]:
    """(version, vocab_size, num_tokens, largest id) of a shard whose header and size are valid."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"token shard {path} does not exist: {remedy}")
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise ValueError(f"token shard {path} is truncated ({len(raw)} bytes, shorter than the "
                         f"{HEADER.size}-byte header): {remedy}")
    magic, version, vocab_size, count, max_id = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ValueError(f"{path} is not a token shard (magic {magic!r}, expected {MAGIC!r}): {remedy}")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"token shard {path} has format version {version}, this code reads "
                         f"versions {READABLE_VERSIONS}: {remedy}")
    if version >= 2 and count and max_id >= vocab_size:
        raise ValueError(f"token shard {path} has a corrupt header: largest id {max_id} >= its "
                         f"vocab_size {vocab_size}: {remedy}")
    expected, actual = HEADER.size + 2 * count, path.stat().st_size
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(f"token shard {path} is {what}: {actual} bytes, the header's {count} "
                         f"tokens need {expected}: {remedy}")
    return version, vocab_size, count, max_id


def max_token_id(path: str | os.PathLike, vocab_size: int, remedy: str) -> int:
    """The largest token id of a shard, from its header (version 2). For a version-1 shard, the
    vocabulary size in its header bounds the ids; only if that bound is not below `vocab_size` are
    the tokens scanned (in chunks of a memmap) for the exact largest id."""
    version, shard_vocab, count, max_id = _header(path, remedy)
    if version >= 2 or count == 0:
        return max_id
    if shard_vocab <= vocab_size:   # version 1's write_shard checked every id against shard_vocab
        return shard_vocab - 1
    tokens = read_shard(path, remedy)
    return max(int(tokens[lo:lo + (1 << 24)].max()) for lo in range(0, count, 1 << 24))


def read_shard(path: str | os.PathLike, remedy: str | None = None) -> np.ndarray:
    """Memory-map a shard's tokens (read-only uint16) after validating its header and size.

    `remedy` ends the error message of a bad file; by default it names the prepare command.
    """
    remedy = remedy or ("re-create it with `python -m data.prepare data=NAME` (NAME: the data "
                        "config that wrote it; an embedded-corpus cache rebuilds when deleted)")
    _, count = read_header(path, remedy)
    if count == 0:  # np.memmap cannot map zero bytes
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER.size, shape=(count,))


def read_tokens(paths: list[Path], remedy: str) -> np.ndarray | ShardedTokens:
    """One split from its shards: the memmap itself for one shard, a ShardedTokens for several."""
    parts = [read_shard(p, remedy) for p in paths]
    return parts[0] if len(parts) == 1 else ShardedTokens(parts)


def max_token_ids(paths: list[Path], vocab_size: int, remedy: str) -> dict[str, int]:
    """{shard path: its largest token id} (see max_token_id), for TokenData.check_vocab."""
    return {str(p): max_token_id(p, vocab_size, remedy) for p in paths}


def load(dir: str, vocab_size: int, name: str, prepare: dict | None = None) -> TokenData:
    """TokenData of a directory prepared by `python -m data.prepare data=NAME`.

    `prepare` is the config's block of preparation settings; it is only read by data.prepare and
    accepted here because `hydra.utils.instantiate(cfg.data)` passes every key.
    """
    directory = Path(dir)
    command = prepare_command(name, directory)
    if not directory.is_dir():
        raise ValueError(f"data directory {directory} (data.dir) does not exist: prepare it with "
                         f"`{command}`, or point data.dir at a prepared copy")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        state = ("its preparation was interrupted" if (directory / PROGRESS_FILE).exists()
                 else "it holds no prepared shards")
        raise ValueError(f"data directory {directory} is not ready ({state}, no {META_FILE}): "
                         f"run `{command}` (it resumes where it stopped)")
    meta = json.loads(meta_path.read_text())
    if meta["tokenizer_vocab_size"] > vocab_size:
        raise ValueError(f"data.vocab_size={vocab_size} is smaller than the tokenizer's "
                         f"{meta['tokenizer_vocab_size']} tokens of {directory}: set data.vocab_size "
                         f"to at least that (the paper pads GPT-2's 50257 to 50304)")
    remedy = f"re-run `{command}`: it keeps the valid shards and re-creates the rest"
    tokenizer = directory / TOKENIZER_FILE
    shards = {split: [directory / f for f in meta[split]] for split in ("train", "val")}
    data = TokenData(
        train=read_tokens(shards["train"], remedy),
        val=read_tokens(shards["val"], remedy),
        vocab_size=vocab_size,
        name=name,
        tokenizer_path=str(tokenizer) if tokenizer.is_file() else None,
        max_token_ids=max_token_ids(shards["train"] + shards["val"], vocab_size, remedy),
    )
    data.check_vocab(vocab_size, "data.vocab_size", f"delete the shard and re-run `{command}` with this "
                     "data config's tokenizer (a shard of another tokenizer was mixed in)")
    return data
