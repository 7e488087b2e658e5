"""Read back what an OFFLINE W&B run recorded, without a W&B server.

wandb 0.31 has no public reader for offline runs (`wandb.sdk.internal.datastore` is gone), yet
the tests need to check that W&B received the metrics, config and summary. This module decodes
the run's `run-<id>.wandb` file directly. It lives with the tests: the package itself only
writes runs (`asr.tracking`, its one module that imports wandb).

File format (checked against files written by wandb 0.31.0):

- A 7-byte file header: the ASCII magic ``:W&B``, a little-endian uint16 ``0xBEE1`` and a
  version byte ``0``.
- Then a LevelDB-style log of 32 KiB blocks (the file header counts as part of block 0). Each
  fragment has a 7-byte header: CRC-32 (4 bytes LE), payload length (2 bytes LE), type (1 byte:
  full=1, first=2, middle=3, last=4). The checksum is the plain zlib CRC-32 (IEEE, not CRC-32C)
  of the type byte followed by the payload. A block tail too short for a fragment header is
  zero padding.
- Each reassembled payload is a serialized `wandb.proto.wandb_internal_pb2.Record`.

Only protobuf classes shipped with wandb are used; nothing here starts a W&B process.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

__all__ = [
    "OfflineRun",
    "OfflineRunFormatError",
    "find_offline_run_dir",
    "iter_records",
    "read_offline_run",
]

_FILE_HEADER = struct.Struct("<4sHB")
_FILE_MAGIC = (b":W&B", 0xBEE1, 0)
_BLOCK_LEN = 32 * 1024
_FRAG_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# Directory names are offline-run-<YYYYMMDD_HHMMSS>-<id>, plus -<n> when a run with the same id
# (a resumed run) started in the same second.
_DIR_RE = re.compile(r"^offline-run-(\d{8}_\d{6})-(.+)$")
# Internal bookkeeping W&B adds to config and summary; not something the user logged.
_INTERNAL_PREFIX = "_wandb"


class OfflineRunFormatError(ValueError):
    """The file is not a W&B run log, or a record is corrupt (bad checksum or fragment order)."""


@dataclass
class OfflineRun:
    """What one offline W&B run directory holds.

    `history` has one dict per `run.log` call, including W&B's own `_step`, `_runtime` and
    `_timestamp` columns. Nested keys are joined with "/". `config` and `summary` leave out
    W&B's internal `_wandb` entries. `complete` is True once the run's exit record is in the file
    (the run was finished); `exit_code` is the code given to `finish()`.
    """

    run_id: str
    project: str
    name: str
    group: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    path: Path | None = None
    entity: str = ""
    complete: bool = False
    exit_code: int | None = None
    records: dict[str, int] = field(default_factory=dict)


def iter_records(data: bytes) -> Iterator[bytes]:
    """Yield the record payloads of a `.wandb` file's bytes.

    A truncated final fragment (a writer still running, or killed mid-write) ends the
    iteration quietly, so a live run can be inspected; a checksum mismatch raises, because
    silently skipping data would make a test pass for the wrong reason.
    """
    if len(data) < _FILE_HEADER.size:
        raise OfflineRunFormatError(f"file too short for a W&B header ({len(data)} bytes)")
    header = _FILE_HEADER.unpack_from(data, 0)
    if header != _FILE_MAGIC:
        raise OfflineRunFormatError(f"not a W&B run log: header {header!r}, want {_FILE_MAGIC!r}")
    pos = _FILE_HEADER.size
    pending: bytearray | None = None
    while True:
        room = _BLOCK_LEN - pos % _BLOCK_LEN
        if room < _FRAG_HEADER.size:  # block trailer padding
            pos += room
            continue
        if pos + _FRAG_HEADER.size > len(data):
            return
        crc, length, kind = _FRAG_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled rest of a block (preallocated or padded)
            pos += room
            continue
        start = pos + _FRAG_HEADER.size
        payload = data[start : start + length]
        if len(payload) < length:
            return
        if zlib.crc32(payload, zlib.crc32(bytes((kind,)))) != crc:
            raise OfflineRunFormatError(f"checksum mismatch in fragment at byte {pos}")
        pos = start + length
        if kind == _FULL:
            pending = None
            yield payload
        elif kind == _FIRST:
            pending = bytearray(payload)
        elif kind in (_MIDDLE, _LAST):
            if pending is None:
                raise OfflineRunFormatError(f"fragment type {kind} without a first at byte {pos}")
            pending += payload
            if kind == _LAST:
                yield bytes(pending)
                pending = None
        else:
            raise OfflineRunFormatError(f"unknown fragment type {kind} at byte {pos}")


def find_offline_run_dir(path: Path) -> Path:
    """Return the `offline-run-*` directory for `path`.

    `path` may be the run directory itself, its `wandb/` parent, or a directory holding
    `wandb/`. With several runs (a resumed run gets a new directory each time) the latest start
    wins; same-second restarts are ordered by W&B's `-<n>` suffix.
    """
    path = Path(path)
    if any(path.glob("run-*.wandb")):
        return path
    candidates: list[tuple[str, int, Path]] = []
    for base in (path, path / "wandb"):
        if not base.is_dir():
            continue
        for child in base.iterdir():
            match = _DIR_RE.match(child.name)
            if not match or child.is_symlink() or not child.is_dir():
                continue
            files = list(child.glob("run-*.wandb"))
            if not files:
                continue
            run_id = files[0].name[len("run-") : -len(".wandb")]
            rest = match.group(2)
            suffix = rest[len(run_id) + 1 :] if rest.startswith(run_id + "-") else ""
            candidates.append((match.group(1), int(suffix) if suffix.isdigit() else 0, child))
    if not candidates:
        raise FileNotFoundError(f"no wandb offline-run-* directory in or under {path}")
    return max(candidates)[2]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _apply(target: dict[str, Any], updates: Iterable[Any], removes: Iterable[Any]) -> None:
    for item in updates:
        target[_key(item)] = json.loads(item.value_json)
    for item in removes:
        target.pop(_key(item), None)


def _strip_internal(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not k.startswith(_INTERNAL_PREFIX)}


def _decode(data: bytes, path: Path) -> OfflineRun:
    run = OfflineRun("", "", "", "", [], {}, [], {}, path=path)
    config: dict[str, Any] = {}
    for payload in iter_records(data):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind is None:
            continue
        run.records[kind] = run.records.get(kind, 0) + 1
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.entity = r.run_id, r.project, r.entity
            run.name, run.group, run.tags = r.display_name, r.run_group, list(r.tags)
            _apply(config, r.config.update, r.config.remove)
        elif kind == "config":
            _apply(config, record.config.update, record.config.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply(row, record.history.item, ())
            run.history.append(row)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            run.complete, run.exit_code = True, record.exit.exit_code
    run.config = _strip_internal(config)
    run.summary = _strip_internal(run.summary)
    return run


def read_offline_run(run_dir: Path, wait_s: float = 5.0) -> OfflineRun:
    """Decode an offline run: its id, names, config, every history row and the final summary.

    `run.finish()` in wandb 0.31 can return a few milliseconds before W&B's writer process has
    flushed the file (seen here: the file still held only its 7-byte header). So when the exit
    record is missing this re-reads for up to `wait_s` seconds; a run that never finished
    (crashed, or still running) is returned as found, with `complete=False`.
    """
    directory = find_offline_run_dir(Path(run_dir))
    files = sorted(directory.glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb in {directory}, found {len(files)}")
    deadline = time.monotonic() + wait_s
    while True:
        run = _decode(files[0].read_bytes(), directory)
        if run.complete or time.monotonic() >= deadline:
            return run
        time.sleep(0.02)
