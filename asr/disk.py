"""Writing files when the disk may be full: one line that says which file, how much it needed
and how much was free, instead of a traceback from deep inside a serializer.

Every file a run writes goes through `space_for`: checkpoints (`asr.checkpoint.save_atomic`),
metrics lines, and the small files `write_atomic` writes (summary.json, the log-prob cache,
LMs, lexicons). Those are written to a temporary file and renamed, so a failed write leaves the
previous one intact and the same command resumes once space is freed.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DiskFullError", "free_bytes", "human", "space_for", "warn_if_low", "write_atomic"]

# ENOSPC: the file system is full; EDQUOT: the user's quota is (same remedy, same message).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(RuntimeError):
    """A file could not be written for lack of space. Its message is the whole story."""

    resumable = True  # what was written before is whole: the same command continues the run

    def __init__(self, path: Path, needed: int, free: int | None) -> None:
        self.path, self.needed, self.free = Path(path), needed, free
        free_text = "unknown" if free is None else human(free)
        super().__init__(
            f"no space left on device: writing {self.path} needs {human(needed)}, "
            f"{free_text} free; free some space and rerun the same command"
        )


def human(n_bytes: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as `df -h` counts)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n_bytes) < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on `path`'s file system (its nearest
    existing ancestor's), or None where the file system will not say."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def space_for(path: Path, needed: int) -> Iterator[None]:
    """Write `path` (`needed` bytes) in the block: refused up front when the space is plainly
    not there, and a full disk met while writing becomes a `DiskFullError` naming the file."""
    free = free_bytes(Path(path).parent)
    if free is not None and free < needed:
        raise DiskFullError(path, needed, free)
    try:
        yield
    except OSError as e:
        if e.errno not in _NO_SPACE:
            raise
        raise DiskFullError(path, needed, free_bytes(Path(path).parent)) from None


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` through a temporary sibling renamed into place: a reader never
    sees half a file, and a full disk raises `DiskFullError` with the old file as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with space_for(path, len(data)):
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def warn_if_low(folder: Path, *, checkpoint_bytes: int, checkpoints: int = 3) -> str | None:
    """A warning (printed, and returned) when `folder` has room for fewer than `checkpoints`
    checkpoints of about `checkpoint_bytes`: better said at start-up than at the first save."""
    free = free_bytes(folder)
    if free is None or free >= checkpoints * checkpoint_bytes:
        return None
    message = (
        f"warning: {folder} has {human(free)} free, less than {checkpoints} checkpoints of "
        f"about {human(checkpoint_bytes)}: a save may fail for lack of space"
    )
    print(message, flush=True)
    return message
