"""Run tracking: `metrics.jsonl` and `summary.json` always, Weights & Biases when enabled.

This is the only module of the package that imports wandb (the tests read offline runs back
with `tests/wandb_offline.py`), so that the rest of the project (and every test that does not
care about W&B) neither pays its ~0.5 s import nor depends on its behaviour. The files are the
source of truth: they are written first and survive any W&B failure, so a run can be compared
and resumed without a server. W&B is an extra view for comparing sweeps.

Design choices, each from something wandb 0.31 was seen to do:

- `mode="auto"` goes online only when credentials exist, so no run ever waits on a network.
- A second `wandb.init` in one process without `finish()` silently reuses the first run (Hydra
  multirun, reused joblib workers). `Tracker` finishes any leaked run before starting its own,
  and `with Tracker(...)` always finishes its run.
- A failing `wandb.init` (online but unreachable raises `CommError` after `init_timeout_s`)
  leaves W&B off for that run with one warning: logging must never stop training.
- Steps: W&B silently drops any `run.log(..., step=s)` whose `s` is lower than the last step it
  saw, which happens when a run resumes from a checkpoint older than its last logged step. So
  the training step is logged as an ordinary metric named `step`, declared with
  `define_metric("*", step_metric="step")` as every chart's x axis, and W&B keeps its own
  monotonic `_step`. Nothing is ever dropped; re-run steps after a resume appear twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import netrc
import os
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

__all__ = [
    "LoggerConfig",
    "NullTracker",
    "Tracker",
    "has_wandb_credentials",
    "new_run_id",
    "read_summary",
    "record_failure",
    "resolve_mode",
]

log = logging.getLogger(__name__)

KINDS = ("wandb", "none")
MODES = ("auto", "online", "offline", "disabled")
STATUSES = ("running", "ok", "failed", "interrupted")
DEFAULT_WANDB_HOST = "api.wandb.ai"
# wandb still accepts these legacy WANDB_MODE values.
_LEGACY_ENV_MODES = {"dryrun": "offline", "run": "online"}
_ID_CHARS = string.ascii_lowercase + string.digits


@dataclass
class LoggerConfig:
    """How a run is tracked (Hydra group `logger`).

    `kind="none"` keeps only the local files. `mode="auto"` means online iff W&B credentials
    exist (see `resolve_mode`); the `WANDB_MODE` environment variable overrides `mode`.
    """

    kind: str = "wandb"
    project: str = "asr-sweep"
    entity: str | None = None
    mode: str = "auto"
    group: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    init_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {'|'.join(KINDS)} (got {self.kind!r})")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {'|'.join(MODES)} (got {self.mode!r})")
        if not self.project:
            raise ValueError("project must be a non-empty string")
        if not self.init_timeout_s > 0:
            raise ValueError(f"init_timeout_s must be > 0 (got {self.init_timeout_s!r})")


def new_run_id() -> str:
    """A random 8-character base-36 id, the same shape W&B generates.

    Made here rather than by wandb because `wandb.util.generate_id` no longer exists in 0.31,
    and because runs with `kind="none"` need an id too (checkpoints store it to resume).
    """
    return "".join(secrets.choice(_ID_CHARS) for _ in range(8))


def has_wandb_credentials(env: Mapping[str, str] = os.environ) -> bool:
    """True if W&B could authenticate: `WANDB_API_KEY` is set, or the netrc file has a password
    for the W&B host (`WANDB_BASE_URL`'s host, default api.wandb.ai).

    The netrc file is `$NETRC` if set, else `~/.netrc` (with `HOME` taken from `env`). Only
    files are read: nothing here touches the network.
    """
    if env.get("WANDB_API_KEY", "").strip():
        return True
    base_url = env.get("WANDB_BASE_URL", "").strip()
    host = (urlparse(base_url).hostname if base_url else None) or DEFAULT_WANDB_HOST
    if env.get("NETRC"):
        path = Path(env["NETRC"]).expanduser()
    else:
        home = env.get("HOME")
        path = (Path(home) if home else Path.home()) / ".netrc"
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def resolve_mode(mode: str, env: Mapping[str, str] = os.environ) -> str:
    """Turn a configured mode into the one passed to `wandb.init`: online|offline|disabled.

    `WANDB_MODE`, when set, wins (so a user or CI can force offline without touching configs).
    "auto" is "online" iff `has_wandb_credentials(env)`, else "offline": without credentials an
    online init could only fail, and with an unreachable server it would block first.
    """
    env_mode = env.get("WANDB_MODE", "").strip().lower()
    if env_mode:
        env_mode = _LEGACY_ENV_MODES.get(env_mode, env_mode)
        if env_mode not in MODES or env_mode == "auto":
            raise ValueError(
                f"WANDB_MODE must be one of online|offline|disabled (got {env['WANDB_MODE']!r})"
            )
        return env_mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {'|'.join(MODES)} (got {mode!r})")
    if mode != "auto":
        return mode
    return "online" if has_wandb_credentials(env) else "offline"


def _plain(value: Any) -> Any:
    """Make `value` JSON- and W&B-friendly: mappings to dicts, sequences to lists, 0-d
    tensors/arrays to Python scalars (via `.item()`), anything else unknown to `str`.

    Callers often hand over a DictConfig or a tensor; W&B rejects the first and JSON the second.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Tracker:
    """One run's logging: metrics.jsonl + summary.json always; W&B when enabled.

    Use as a context manager so the run is always finished, with status "failed" or
    "interrupted" when the block raises. Create it on one process only (rank 0 under DDP).

    `run_id` resumes: pass the id a checkpoint saved and the same W&B run continues
    (`resume="allow"`), `metrics.jsonl` is appended to and `summary.json` keeps its values.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: LoggerConfig,
        config: Mapping[str, Any],
        run_id: str | None = None,
    ) -> None:
        started_at = time.time()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.run_id: str = run_id or new_run_id()
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self._run: Any = None  # wandb Run, or None when W&B is off
        self._wandb_dir: Path | None = None
        self._wandb_ok = False  # False after any W&B error: stop calling it, still finish it
        self._finished = False
        self.mode = resolve_mode(cfg.mode) if cfg.kind == "wandb" else "disabled"
        self._summary = self._load_summary()
        # The run id reaches summary.json before W&B creates anything under it: a run killed
        # at any later moment, even before its first checkpoint, can resume the same W&B run.
        self._summary.update(status="running", error=None, run_id=self.run_id)
        self._write_summary()
        # Append: a resumed run continues the same file.
        _drop_torn_last_line(self.metrics_path)
        self._metrics = self.metrics_path.open("a", encoding="utf-8")
        if self.mode != "disabled":
            self._start_wandb(_plain(config))
        self._summary.update(
            wandb_mode=self.mode if self._run is not None else "off",
            wandb_dir=str(self._wandb_dir) if self._wandb_dir else None,
            started_at=started_at,
        )
        self._write_summary()

    # -- W&B lifecycle ---------------------------------------------------------------------

    def _start_wandb(self, config: dict[str, Any]) -> None:
        import wandb  # lazy: ~0.5 s, only for runs that use it

        leaked = wandb.run
        if leaked is not None:
            log.warning("finishing W&B run %s left open by an earlier job", leaked.id)
            try:
                leaked.finish()
            except Exception as e:
                log.warning("could not finish leaked W&B run: %s", _one_line(e))
        cfg = self.cfg
        try:
            run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                name=cfg.name or self.run_dir.name,
                group=cfg.group,
                tags=list(cfg.tags) or None,
                config=config,
                dir=str(self.run_dir),
                id=self.run_id,
                resume="allow",
                mode=self.mode,
                reinit="finish_previous",
                settings=wandb.Settings(
                    init_timeout=cfg.init_timeout_s,
                    silent=True,
                    console="off",  # the Hydra log file already keeps the console
                    save_code=False,
                ),
            )
            run.define_metric("step")
            run.define_metric("*", step_metric="step")
        except Exception as e:
            log.warning("W&B off for this run, files only (wandb.init failed: %s)", _one_line(e))
            if wandb.run is not None:  # half-started: do not leak it into the next job
                with contextlib.suppress(Exception):
                    wandb.run.finish(exit_code=1)
            return
        self._run = run
        self._wandb_ok = True
        self._wandb_dir = Path(run.dir).parent

    def _wandb(self, what: str, call: Any) -> None:
        """Run one W&B call; on error warn once and stop using W&B for this run."""
        if not self._wandb_ok:
            return
        try:
            call()
        except Exception as e:
            self._wandb_ok = False
            log.warning("W&B off for the rest of this run (%s failed: %s)", what, _one_line(e))

    @property
    def wandb_dir(self) -> Path | None:
        """The local W&B run directory (`.../wandb/offline-run-*/` when offline), or None when
        W&B is off. `wandb sync <wandb_dir>` uploads an offline run later."""
        return self._wandb_dir

    @property
    def wandb_enabled(self) -> bool:
        """True while W&B receives this run's data."""
        return self._run is not None and self._wandb_ok and not self._finished

    # -- logging ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError(f"Tracker for run {self.run_id} is already finished")

    def log(self, metrics: Mapping[str, float | int | str], step: int) -> None:
        """Record metrics at a training step: one flushed line of metrics.jsonl and one W&B row.

        `step` is a W&B metric (the charts' x axis), not W&B's own step, so a resumed run may
        log a step again without W&B dropping it (see the module docstring).
        """
        self._check_open()
        values = {str(k): _plain(v) for k, v in metrics.items()}
        clash = {"step", "time"} & values.keys()
        if clash:
            raise ValueError(f"metric names {sorted(clash)} are reserved by Tracker.log")
        step = int(step)
        line = {"step": step, "time": time.time(), **values}
        self._metrics.write(json.dumps(line) + "\n")
        self._metrics.flush()
        if self._run is not None:
            self._wandb("run.log", lambda: self._run.log({**values, "step": step}))

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        """Log a small table to W&B (e.g. sample transcripts: reference vs hypothesis).

        Files get nothing: tables are for looking at in the W&B UI; the numbers that matter
        are in `log`.
        """
        self._check_open()
        if self._run is None or not self._wandb_ok:
            return

        def call() -> None:
            import wandb

            table = wandb.Table(columns=list(columns), data=[_plain(list(r)) for r in rows])
            self._run.log({key: table, "step": int(step)})

        self._wandb("log_table", call)

    # -- summary ---------------------------------------------------------------------------

    def _load_summary(self) -> dict[str, Any]:
        return read_summary(self.run_dir)

    def _write_summary(self) -> None:
        _write_json_atomic(self.summary_path, self._summary)

    def update_summary(self, **values: Any) -> None:
        """Merge final/best values (e.g. best_wer) into summary.json and the W&B run summary."""
        self._check_open()
        plain = {k: _plain(v) for k, v in values.items()}
        self._summary.update(plain)
        self._write_summary()
        if self._run is not None:
            self._wandb("summary.update", lambda: self._run.summary.update(plain))

    @property
    def summary(self) -> dict[str, Any]:
        """A copy of what summary.json holds."""
        return dict(self._summary)

    # -- end -------------------------------------------------------------------------------

    def finish(self, status: str = "ok", error: str | None = None) -> None:
        """End the run: summary.json gets `status`/`error`, the W&B run is finished with exit
        code 0 for "ok" and 1 otherwise. Calling it again does nothing."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of ok|failed|interrupted (got {status!r})")
        if self._finished:
            return
        self._finished = True
        started = self._summary.get("started_at")
        self._summary.update(status=status, error=error, finished_at=time.time())
        if isinstance(started, int | float) and math.isfinite(started):
            self._summary["duration_s"] = round(time.time() - started, 3)
        try:
            self._write_summary()
        finally:
            self._metrics.close()
            if self._run is not None:
                self._finish_wandb(status)

    def _finish_wandb(self, status: str) -> None:
        run = self._run
        self._wandb("summary.update", lambda: run.summary.update({"status": status}))
        try:
            run.finish(exit_code=0 if status == "ok" else 1)
        except Exception as e:
            log.warning("W&B run.finish failed: %s", _one_line(e))
            return
        if self.mode == "offline" and self._wandb_dir is not None:
            log.info("W&B offline run saved; upload it with: wandb sync %s", self._wandb_dir)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Always finish; never swallow the exception."""
        if self._finished:
            return
        if exc is None:
            self.finish("ok")
            return
        error = f"{type(exc).__name__}: {exc}"
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
        self.finish("interrupted" if interrupted else "failed", error)


class NullTracker:
    """A Tracker that records nothing: what DDP ranks other than 0 use, so that a job has one
    summary.json, one metrics.jsonl and one W&B run, while every rank runs the same loop."""

    run_id: str | None = None
    wandb_dir: Path | None = None
    wandb_enabled = False

    def log(self, metrics: Mapping[str, float | int | str], step: int) -> None:
        pass

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        pass

    def update_summary(self, **values: Any) -> None:
        pass

    def finish(self, status: str = "ok", error: str | None = None) -> None:
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run's summary.json, or {} when there is none (an unreadable one is reported)."""
    path = Path(run_dir) / "summary.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", path, _one_line(e))
        return {}
    return loaded if isinstance(loaded, dict) else {}


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


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # tmp + os.replace: a crash mid-write never leaves a truncated summary.json.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)


def record_failure(run_dir: Path, error: BaseException, **values: Any) -> None:
    """Mark a run failed in summary.json when it failed before (or outside) its Tracker, e.g.
    on a config error, so that a sweep's report still shows the job and why it failed. A
    status the Tracker already wrote (failed or interrupted) is kept as it is."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary.get("status") in ("failed", "interrupted"):
        return
    summary.update({k: _plain(v) for k, v in values.items()})
    summary.update(status="failed", error=_one_line(error), finished_at=time.time())
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(run_dir / "summary.json", summary)
