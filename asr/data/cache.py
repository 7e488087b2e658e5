"""Build a folder in the shared cache once, safely, however many processes ask at once.

Several sweep jobs may start together and all need the same corpus. An exclusive `flock` on
`<cache_dir>/<name>.lock` guards check-and-build; the folder is built in a temporary sibling,
`DONE` is written last, and the sibling is renamed into place. So a folder with `DONE` is always
complete, a crashed build leaves only a `.tmp-*` sibling (cleared by the next build), and a
process that waited on the lock finds the finished folder and reuses it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DONE_MARKER = "DONE"


def is_complete(folder: Path) -> bool:
    return (folder / DONE_MARKER).is_file()


@contextmanager
def exclusive_lock(path: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive flock on `path` (the file is created, and left in place: deleting a
    lock file while another process waits on it would let two processes in at once)."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process building {path.stem} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_once(final: Path, build: Callable[[Path], None], log: Callable[[str], None]) -> bool:
    """Make `final` by calling `build(tmp_folder)` (which creates the folder), unless it is
    already complete.

    Returns True when this call built it. An exception from `build` removes the temporary
    folder and propagates.
    """
    if is_complete(final):
        return False
    cache_dir = final.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f"{final.name}.lock", log):
        if is_complete(final):  # built by the process we waited for
            return False
        # Holding the lock, any tmp folder of this name is a crashed build's leftover, and a
        # final folder without DONE cannot come from this code: clear both.
        for stale in cache_dir.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            shutil.rmtree(final)
        tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}"  # `build` creates it
        try:
            build(tmp)
            (tmp / DONE_MARKER).write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True
