"""What the trainer gets from a data config: `TokenData`, plus the token statistics used to read losses.

`hydra.utils.instantiate(cfg.data)` returns a `TokenData` whatever the source (embedded corpus or
prepared Hugging Face shards). A split is a 1-D uint16 token sequence: a `np.memmap` when it lives
in one shard file, or a `ShardedTokens` (read-only concatenation of several memmaps with `len` and
slicing) when it spans many, so that billions of tokens never have to be copied into one array.

    from data import TokenData, unigram_entropy
    H = unigram_entropy(data.val, data.vocab_size)   # nats; a model that learned nothing beats no better
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ShardedTokens:
    """Read-only 1-D view over several token arrays, in order, as if they were concatenated.

    Supports `len()`, integer indexing and contiguous slicing (a slice that crosses shard
    boundaries is copied into a new array); that is all the batch loader needs.
    """

    def __init__(self, parts: list[np.ndarray]):
        assert parts and all(p.ndim == 1 for p in parts)
        self.parts = parts
        # offsets[i] is the global index of parts[i][0]; offsets[-1] the total length.
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            assert step == 1, "ShardedTokens supports contiguous slices only"
            return self._read(start, max(start, stop))
        i = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"token index {index} out of range for {len(self)} tokens")
        part = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[part][i - self.offsets[part]]

    def _read(self, start: int, stop: int) -> np.ndarray:
        out, pos = [], start
        part = int(np.searchsorted(self.offsets, start, side="right")) - 1
        while pos < stop:
            lo = pos - self.offsets[part]
            hi = min(stop, self.offsets[part + 1]) - self.offsets[part]
            out.append(self.parts[part][lo:hi])
            pos = int(self.offsets[part] + hi)
            part += 1
        return np.concatenate(out) if out else np.zeros(0, dtype=self.dtype)


@dataclass
class TokenData:
    """Token streams of one data set, ready for `data.loader.BatchLoader` and `eval_batches`."""

    train: np.ndarray | ShardedTokens  # 1-D uint16 tokens of the training split
    val: np.ndarray | ShardedTokens  # 1-D uint16 tokens of the validation split
    vocab_size: int  # the model's vocabulary (padded, e.g. 50304), >= the tokenizer's
    name: str  # the data config's name, e.g. "embedded" or "slimpajama_6b"
    tokenizer_path: str | None  # a tokenizer.json for tokenizers.Tokenizer.from_file, if there is one
    # {shard path: its largest token id} (data.shards.max_token_id); empty for tokens made in memory
    max_token_ids: dict[str, int] = field(default_factory=dict)

    def check_vocab(self, vocab_size: int, what: str = "model.vocab_size", fix: str | None = None) -> None:
        """A ValueError naming the first shard whose largest token id has no row in an embedding of
        `vocab_size` rows (`what`), instead of an IndexError (or a CUDA assert) at some training step."""
        for shard, max_id in self.max_token_ids.items():
            if max_id >= vocab_size:
                fix = fix or f"set {what} to at least {max_id + 1}, or re-create the shard with the right tokenizer"
                raise ValueError(f"token shard {shard} holds token id {max_id}, but {what}={vocab_size} gives "
                                 f"ids 0..{vocab_size - 1} only: {fix}")


def token_parts(tokens) -> list[np.ndarray]:
    """The contiguous arrays that make up a token sequence (one for a plain array)."""
    return tokens.parts if isinstance(tokens, ShardedTokens) else [np.asarray(tokens)]


def unigram_entropy(tokens, vocab_size: int, chunk: int = 1 << 24) -> float:
    """Entropy in nats of the empirical token distribution: H = -sum_v p_v log p_v.

    It is the cross-entropy of the best context-free (unigram) predictor for these very tokens, so a
    language model whose validation loss is not clearly below it has learned nothing from context.
    Counts in chunks so that a memmap of billions of tokens is never materialized as int64.
    """
    counts = np.zeros(vocab_size, dtype=np.int64)
    for part in token_parts(tokens):
        for lo in range(0, len(part), chunk):
            piece = np.asarray(part[lo:lo + chunk])
            if piece.size and int(piece.max()) >= vocab_size:
                raise ValueError(f"token id {int(piece.max())} >= vocab_size={vocab_size}: "
                                 "pass the vocabulary size of the tokenizer that made these tokens")
            counts += np.bincount(piece, minlength=vocab_size)
    total = counts.sum()
    if total == 0:
        raise ValueError("unigram_entropy of an empty token sequence is undefined: pass some tokens")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())
