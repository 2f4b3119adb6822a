"""Reading an offline W&B run file (``run-<id>.wandb``) in tests: its records in order.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then LevelDB-style
records in 32 KiB blocks (4-byte CRC, 2-byte little-endian length, 1-byte type: 1 full, 2 first,
3 middle, 4 last fragment), each a serialised ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list[Any]:
    """The ``Record`` messages of a run file, in the order they were written."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a record header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
    parsed = []
    for chunk in out:
        record = pb.Record()
        record.ParseFromString(chunk)
        parsed.append(record)
    return parsed


def kinds(path: Path) -> list[str]:
    """The type of each record (``run``, ``config``, ``history``, ``summary``...)."""
    return [r.WhichOneof("record_type") for r in records(path)]


def config_keys(path: Path) -> set[str]:
    """Top-level keys of every config update of the run."""
    return {u.key or u.nested_key[0] for r in records(path) if r.WhichOneof("record_type") == "config" for u in r.config.update}


def history(path: Path) -> list[dict[str, Any]]:
    """Each logged history row as {key: JSON-decoded value}."""
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
    return rows


def run_id(path: Path) -> str:
    """The id of the run the file belongs to."""
    return next(r.run.run_id for r in records(path) if r.WhichOneof("record_type") == "run")
