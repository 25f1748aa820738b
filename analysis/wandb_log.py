"""Reading a wandb run's offline transaction log (run-<id>.wandb) without a wandb server.

    from analysis.wandb_log import wandb_records, wandb_key
    for record in wandb_records(Path("wandb/offline-run-.../run-abc.wandb")): ...

Used by analysis/runs.py, which turns the records into a Run; wandb itself is imported only here,
and only when a log is read (it is an optional dependency).
"""
from __future__ import annotations

import struct
from pathlib import Path


def wandb_records(path: Path):
    """The protobuf records of a wandb transaction log (LevelDB-style log: 7-byte file header
    ':W&B' magic version, then 32 KiB blocks of records, each with a 7-byte header
    crc32/length/type; type 1 = a whole record, 2/3/4 = its first/middle/last piece)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb transaction log")
    block, pos, pieces = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:                 # the rest of a block is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0:                                # zero padding at the end of a block or file
            pos += (block - pos % block) % block
            continue
        if pos + length > len(data):                 # a record still being written (a live run)
            break
        chunk, pos = data[pos:pos + length], pos + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces + chunk if kind == 4 else chunk)
            pieces = b""
            yield record
        else:
            pieces = chunk if kind == 2 else pieces + chunk


def wandb_key(item) -> str:
    """The name of a config/history/summary item: its key, or its nested key joined by dots."""
    return item.key or ".".join(item.nested_key)
