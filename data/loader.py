"""Batches of (input, target) token windows: a resumable shuffled training stream and fixed eval batches.

A split of N tokens is cut into W = (N - 1) // seq_len windows of seq_len + 1 tokens; window i
starts at token i * seq_len, so consecutive windows share one token and the targets of one window
(its last seq_len tokens) never repeat. Training visits the windows in a fresh random permutation
every epoch (seeded by (seed, epoch)); the stream is the concatenation of those permutations, and a
batch that reaches the end of an epoch is filled from the next one, so every window is visited
exactly once per epoch and every batch is full.

The position in that stream is the whole state: (epoch, position in epoch). Resuming restores it
exactly, also with a different batch size. For data parallelism each rank passes rank/world_size:
a step consumes world_size * batch_size windows of the one global stream and rank r takes the r-th
slice, so all ranks hold the same state and resuming on another number of GPUs stays exact.
Ranks must call next_batch in lockstep with the same batch_size.

    loader = BatchLoader(data.train, batch_size=32, seq_len=128, seed=1337)
    x, y = loader.next_batch()          # int64 [32, 128] each; y[:, t] == x[:, t + 1]
    state = loader.state_dict()         # goes into the checkpoint
    for x, y in eval_batches(data.val, 32, 128, max_batches=8): ...
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


def num_windows(tokens, seq_len: int) -> int:
    """Number of seq_len + 1 token windows starting at multiples of seq_len."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len} must be a positive number of tokens")
    count = (len(tokens) - 1) // seq_len
    if count < 1:
        raise ValueError(f"a split of {len(tokens)} tokens holds no window of seq_len + 1 = "
                         f"{seq_len + 1} tokens: lower seq_len or use more data")
    return count


def _batch(tokens, window_ids: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather windows into x, y: int64 [len(window_ids), seq_len], y shifted by one token."""
    rows = np.empty((len(window_ids), seq_len + 1), dtype=np.int64)
    for row, window in enumerate(window_ids):
        start = int(window) * seq_len
        rows[row] = tokens[start:start + seq_len + 1]  # a slice works on memmaps and ShardedTokens
    rows = torch.from_numpy(rows)
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


class BatchLoader:
    """Endless shuffled stream of training batches with an exact, small resume state."""

    def __init__(self, tokens, batch_size: int, seq_len: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1 sequence")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in [0, world_size={world_size})")
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.num_windows = num_windows(tokens, seq_len)
        self.epoch, self.position = 0, 0
        self._permutations: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:  # a batch spans at most a few epochs; keep memory flat
                self._permutations.pop(min(self._permutations))
            rng = np.random.default_rng([self.seed, epoch])
            self._permutations[epoch] = rng.permutation(self.num_windows)
        return self._permutations[epoch]

    def _window_ids(self, start: int, count: int) -> np.ndarray:
        """Windows at positions [start, start + count) of the endless stream of permutations."""
        out = []
        while count > 0:
            epoch, pos = divmod(start, self.num_windows)
            take = min(count, self.num_windows - pos)
            out.append(self._permutation(epoch)[pos:pos + take])
            start, count = start + take, count - take
        return np.concatenate(out)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (x, y), int64 CPU tensors [batch_size, seq_len]."""
        stream_pos = self.epoch * self.num_windows + self.position
        ids = self._window_ids(stream_pos + self.rank * self.batch_size, self.batch_size)
        stream_pos += self.world_size * self.batch_size
        self.epoch, self.position = divmod(stream_pos, self.num_windows)
        return _batch(self.tokens, ids, self.seq_len)

    def state_dict(self) -> dict:
        """JSON-able position in the stream, plus what must match for the position to mean the same."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "seq_len": self.seq_len, "num_windows": self.num_windows}

    def load_state_dict(self, state: dict) -> None:
        """Continue the saved stream exactly (its seed included); batch size and ranks may differ."""
        if (state["seq_len"], state["num_windows"]) != (self.seq_len, self.num_windows):
            raise ValueError(
                f"the saved data position is for {state['num_windows']} windows of seq_len="
                f"{state['seq_len']}, this loader has {self.num_windows} of seq_len={self.seq_len}: "
                "resume with the same data and seq_len (or start a fresh data stream)")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._permutations.clear()


def eval_batches(tokens, batch_size: int, seq_len: int,
                 max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same deterministic (x, y) batches on every call.

    max_batches=None covers every window of the split once, in order (last partial batch kept).
    Otherwise max_batches * batch_size windows evenly spaced over the split are used, so that a
    small eval set samples the whole split instead of its first documents.
    """
    total = num_windows(tokens, seq_len)
    count = total if max_batches is None else min(total, max_batches * batch_size)
    windows = (np.arange(count, dtype=np.int64) * total) // count  # strictly increasing, spread out
    for lo in range(0, count, batch_size):
        yield _batch(tokens, windows[lo:lo + batch_size], seq_len)
