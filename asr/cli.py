"""What the Hydra entry points share: config errors become one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from asr.data.manifest import ManifestError
from asr.schema import ConfigError

T = TypeVar("T")

USER_ERRORS = (ConfigError, ManifestError, FileNotFoundError)


def run_job(fn: Callable[[], T]) -> T:
    """Run one job. A bad config or missing input exits 2 with one line in a single run; in a
    multirun it is raised, so Hydra records the failed job and the other jobs still run."""
    try:
        return fn()
    except USER_ERRORS as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
