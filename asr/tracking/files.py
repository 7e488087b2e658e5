"""A run's own files: `metrics.jsonl` (one line per logged step) and `summary.json`.

They are the source of truth of a run: written first, flushed at once, and kept whatever
happens to W&B, so that a run can be compared and resumed without a server. Both survive a
kill at any moment: the summary is replaced atomically, and a metrics line cut by a kill is
dropped before the next one is appended. A disk too full for either raises
`asr.disk.DiskFullError`, whose one line names the file, and leaves the previous summary whole.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asr.disk import space_for, write_atomic

__all__ = ["RunFiles", "one_line", "plain", "read_summary", "record_failure"]

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """Make `value` JSON- and W&B-friendly: mappings to dicts, sequences to lists, 0-d
    tensors/arrays to Python scalars (via `.item()`), anything else unknown to `str`.

    Callers often hand over a DictConfig or a tensor; W&B rejects the first and JSON the second.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return plain(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunFiles:
    """`metrics.jsonl` opened for appending (a resumed run continues it) and `summary.json`,
    whose earlier values a resumed run keeps."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.summary = read_summary(self.run_dir)
        _drop_torn_last_line(self.metrics_path)
        # Unbuffered: a line that did not fit is not kept in a buffer to fail again at close.
        self._metrics = self.metrics_path.open("ab", buffering=0)

    def append_metrics(self, line: dict[str, Any]) -> None:
        data = memoryview((json.dumps(line) + "\n").encode("utf-8"))
        with space_for(self.metrics_path, len(data)):
            while data:  # a raw write may write part of it; the rest raises when the disk is full
                data = data[self._metrics.write(data) :]

    def update_summary(self, values: Mapping[str, Any]) -> None:
        self.summary.update(values)
        write_json_atomic(self.summary_path, self.summary)

    def close(self) -> None:
        self._metrics.close()


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run's summary.json, or {} when there is none (an unreadable one is reported)."""
    path = Path(run_dir) / "summary.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", path, one_line(e))
        return {}
    return loaded if isinstance(loaded, dict) else {}


def record_failure(run_dir: Path, error: BaseException, **values: Any) -> None:
    """Mark a run failed in summary.json when it failed before (or outside) its Tracker, e.g.
    on a config error, so that a sweep's report still shows the job and why it failed. A
    status the Tracker already wrote (failed or interrupted) is kept as it is."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary.get("status") in ("failed", "interrupted"):
        return
    summary.update({k: plain(v) for k, v in values.items()})
    summary.update(status="failed", error=one_line(error), finished_at=time.time())
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "summary.json", summary)


def _drop_torn_last_line(path: Path) -> None:
    """Cut a partial last line (the process was killed mid-write), so that appending after it
    does not glue two records into one unreadable line."""
    try:
        with path.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # through a temporary file: a crash mid-write never leaves a truncated summary.json.
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
