"""The W&B side of a run: its settings (`LoggerConfig`, the `logger` group), when it goes online,
and one W&B run that never stops training.

Design choices, each from something wandb 0.31 was seen to do:

- `mode="auto"` goes online only when credentials exist, so no run ever waits on a network.
- A second `wandb.init` in one process without `finish()` silently reuses the first run (Hydra
  multirun, reused joblib workers). `WandbRun.start` finishes any leaked run before its own.
- A failing `wandb.init` (online but unreachable raises `CommError` after `init_timeout_s`)
  leaves W&B off for that run with one warning, and so does any later W&B error: logging must
  never stop training.
- Steps: W&B silently drops any `run.log(..., step=s)` whose `s` is lower than the last step it
  saw, which happens when a run resumes from a checkpoint older than its last logged step. So
  the training step is logged as an ordinary metric named `step`, declared with
  `define_metric("*", step_metric="step")` as every chart's x axis, and W&B keeps its own
  monotonic `_step`. Nothing is ever dropped; re-run steps after a resume appear twice.
- W&B's service process (wandb-core) ignores USR2, the preemption warning that Slurm may send
  to every process of a job; SIGTERM ends it at once. A run stopped by the warning logs up to
  its save and finishes its W&B run before the job is requeued (asr.cluster).

wandb itself is imported only when a run starts (about 0.5 s), so that nothing else pays for it.
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asr.tracking.files import one_line, plain

__all__ = ["LoggerConfig", "WandbRun", "has_wandb_credentials", "new_run_id", "resolve_mode"]

log = logging.getLogger(__name__)

KINDS = ("wandb", "none")
MODES = ("auto", "online", "offline", "disabled")
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


class WandbRun:
    """One W&B run. After any W&B error it warns once and stops calling W&B for this run;
    `finish` still ends it."""

    def __init__(self, cfg: LoggerConfig, run_dir: Path, run_id: str, mode: str) -> None:
        self.cfg, self.run_dir, self.run_id, self.mode = cfg, run_dir, run_id, mode
        self.run: Any = None  # wandb's Run once started
        self.dir: Path | None = None  # .../wandb/offline-run-*/ when offline
        self.ok = False

    def start(self, config: dict[str, Any]) -> None:
        import wandb  # lazy: ~0.5 s, only for runs that use it

        leaked = wandb.run
        if leaked is not None:
            log.warning("finishing W&B run %s left open by an earlier job", leaked.id)
            try:
                leaked.finish()
            except Exception as e:
                log.warning("could not finish leaked W&B run: %s", one_line(e))
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
            log.warning("W&B off for this run, files only (wandb.init failed: %s)", one_line(e))
            if wandb.run is not None:  # half-started: do not leak it into the next job
                with contextlib.suppress(Exception):
                    wandb.run.finish(exit_code=1)
            return
        self.run, self.ok, self.dir = run, True, Path(run.dir).parent

    def call(self, what: str, fn: Callable[[], Any]) -> None:
        """Run one W&B call; on error warn once and stop using W&B for this run."""
        if not self.ok:
            return
        try:
            fn()
        except Exception as e:
            self.ok = False
            log.warning("W&B off for the rest of this run (%s failed: %s)", what, one_line(e))

    def log(self, values: dict[str, Any], step: int) -> None:
        self.call("run.log", lambda: self.run.log({**values, "step": step}))

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        def call() -> None:
            import wandb

            table = wandb.Table(columns=list(columns), data=[plain(list(r)) for r in rows])
            self.run.log({key: table, "step": int(step)})

        self.call("log_table", call)

    def update_summary(self, values: dict[str, Any]) -> None:
        self.call("summary.update", lambda: self.run.summary.update(values))

    def finish(self, status: str) -> None:
        if self.run is None:
            return
        self.update_summary({"status": status})
        try:
            self.run.finish(exit_code=0 if status == "ok" else 1)
        except Exception as e:
            log.warning("W&B run.finish failed: %s", one_line(e))
            return
        if self.mode == "offline" and self.dir is not None:
            log.info("W&B offline run saved; upload it with: wandb sync %s", self.dir)
