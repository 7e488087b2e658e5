"""Self-describing checkpoints, written atomically.

A checkpoint holds everything needed to continue or to evaluate without any config file:
weights, optimizer, schedule progress, RNG states, the resolved config, the vocabulary, the
W&B run id and provenance (git commit, package versions, a hash of the manifests).
`checkpoint_data` and `checkpoint_source` read back what it was trained on.

A checkpoint is a file people share, so loading one never runs code: `load` unpickles with
torch's weights-only unpickler, which builds tensors and plain containers and nothing else.
Everything a checkpoint holds is one of those (NumPy's RNG state is kept as plain values since
format 2); format 1 files held it as a NumPy array, whose three constructors are allowed by name
for them. A file that needs anything more is refused in one line, unless the user says they
trust it (`trust=True`: `trainer.trust_checkpoint`, `trust_checkpoint=true`, `--trust-checkpoint`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.data.corpus import resolve_manifests
from asr.data.manifest import manifest_digest
from asr.data.synth import SynthSpec
from asr.disk import space_for
from asr.errors import first_line
from asr.schema import ConfigError, DataConfig, RecipeSpec, default_cache_dir
from asr.text import Vocabulary

FORMAT_VERSION = 2  # 2: NumPy's RNG state as plain values (1: a pickled ndarray)
READABLE_VERSIONS = (1, 2)
PACKAGES = ("torch", "torchaudio", "hydra-core", "omegaconf", "jiwer", "wandb", "soundfile")


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file, fsync, then rename: a crash leaves the old file intact.

    A SIGKILL mid-write leaves only a `.NAME.tmp-PID` file behind, never a torn `NAME`; the
    next save of the same name (or `remove_stale_temporaries` at start-up) deletes it.

    The state is serialized in memory first: its size is then known before the disk is
    touched, and a disk too full for it fails with `asr.disk.DiskFullError` (its one line
    names the file, the size and the free space) instead of a serializer's internal error.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent, path.name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with space_for(path, len(data)), open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(directory: str | Path, name: str = "*") -> list[Path]:
    """Delete the temporary files of `save_atomic` calls whose process died mid-write.

    A file whose writer is still alive (another process, or this one) is left alone.
    """
    removed = []
    for tmp in Path(directory).glob(f".{name}.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def resolve_checkpoint(path: str | Path, name: str = "last.pt") -> Path:
    """A checkpoint file, or a run directory holding `name`."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


class CheckpointError(ConfigError):
    """A checkpoint that cannot be loaded safely, or is not one: the message is one line."""


# What unpickling a NumPy array calls (format 1 kept NumPy's RNG state as one), allowed by name:
# `_reconstruct` under its NumPy 2 and NumPy 1 module names. None of them can run code.
_reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct
NUMPY_ARRAY_GLOBALS = {
    "numpy._core.multiarray._reconstruct": _reconstruct,
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "numpy.dtypes.UInt32DType": type(np.dtype(np.uint32)),
}


def _globals_needed(path: Path) -> list[str]:
    """The classes and functions the file's pickle would call that the weights-only unpickler
    does not allow by itself (read from the pickle's opcodes: nothing is run)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:  # not a zip archive, torn, not a pickle
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(e)})") from None


def load(
    path: str | Path, map_location: str | torch.device = "cpu", *, trust: bool = False
) -> dict[str, Any]:
    """A checkpoint's state, unpickled without running any code the file may hold.

    `trust=True` is the way back for a file that needs more than tensors and plain values (a
    hand-made or foreign checkpoint): it is unpickled in full, which can run anything, after a
    warning.
    """
    path = resolve_checkpoint(path)
    unsafe = [name for name in _globals_needed(path) if name not in NUMPY_ARRAY_GLOBALS]
    if unsafe and not trust:
        listed = ", ".join(unsafe[:3]) + (f" and {len(unsafe) - 3} more" if unsafe[3:] else "")
        raise CheckpointError(
            f"{path}: refused: unpickling it would call {listed}, which a checkpoint never "
            "needs and which can run code; if you trust where it came from, pass "
            "trust_checkpoint=true (asr.lm: --trust-checkpoint)"
        )
    try:
        if unsafe:  # trusted by the user
            print(f"warning: {path}: unpickling it in full (trusted): it can run code")
            state = torch.load(path, map_location=map_location, weights_only=False)
        else:
            allowed = [(obj, name) for name, obj in NUMPY_ARRAY_GLOBALS.items()]
            with torch.serialization.safe_globals(allowed):
                state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torn data, a class renamed since, ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(e)})") from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: not an asr-sweep checkpoint (format {version!r})")
    return state


def estimated_bytes(model: torch.nn.Module) -> int:
    """About what a training checkpoint of `model` takes on disk: the weights, an Adam-style
    optimizer's two moments of each (SGD's one is less), and 64 KB for the config and the rest."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 3 * weights + (1 << 16)


def checkpoint_data(state: dict[str, Any]) -> DataConfig:
    """The checkpoint's data settings. One saved before `log_floor_db` existed was trained on
    the absolute floor (null), whatever the default is now."""
    saved = state["config"]["data"]
    return DataConfig(
        **{
            "log_floor_db": None,
            **saved,
            "synth": SynthSpec(**saved["synth"]),
            "recipe": RecipeSpec(**saved.get("recipe", {})),
        }
    )


def split_manifest(state: dict[str, Any], data: DataConfig, split: str) -> Path:
    """The manifest of one split of the checkpoint's data: where training read it, or, on
    another machine, rebuilt from the data config (the embedded corpus is generated) into
    this machine's cache: a checkpoint from elsewhere does not choose where files are written."""
    manifest = Path(state["manifests"].get(split, ""))
    if manifest.is_file():
        return manifest
    manifests = resolve_manifests(dataclasses.replace(data, cache_dir=default_cache_dir()))
    if split not in manifests:
        raise ConfigError(f"split={split}: the checkpoint's data has no {split} split")
    return manifests[split]


def checkpoint_source(
    ckpt: str | Path, split: str, *, trust: bool = False
) -> tuple[Path, str, Vocabulary]:
    """(manifest of `split`, language, vocabulary) of a checkpoint or run directory."""
    state = load(resolve_checkpoint(ckpt, "best.pt"), trust=trust)
    data = checkpoint_data(state)
    return split_manifest(state, data, split), data.language, Vocabulary.from_dict(state["vocab"])


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values, which `load` reads without unpickling
    any class (NumPy's key, an array, becomes a list of ints)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}
    state = {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # a dict (format 2) or a legacy tuple (format 1)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def training_state(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    counters: dict[str, Any],
    rng_ranks: list[dict[str, Any]],
    wandb_run_id: str | None,
    n_params: int,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """A training checkpoint: weights, optimizer, where training stands, the RNG of every rank
    (one: a single process), the W&B run and `run_meta`. Rank 0's RNG is also `rng`."""
    state = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "counters": counters,
        "rng": rng_ranks[0],
        "wandb_run_id": wandb_run_id,
        "n_params": n_params,
        **meta,
    }
    if len(rng_ranks) > 1:
        state.update(world_size=len(rng_ranks), rng_ranks=rng_ranks)
    return state


def run_meta(
    cfg: Any, overrides: list[str] | None, vocab: Vocabulary, manifests: dict[str, Path]
) -> dict[str, Any]:
    """What a training run's checkpoints say about it besides the weights: the resolved config
    (a dataclass), the command line's overrides, the vocabulary, the manifests and provenance."""
    return {
        "config": dataclasses.asdict(cfg),
        "overrides": list(overrides or []),
        "vocab": vocab.to_dict(),
        "provenance": provenance(manifest_digest(list(manifests.values()))),
        "manifests": {k: str(v) for k, v in manifests.items()},
    }


def provenance(manifest_hash: str) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "manifest_hash": manifest_hash,
    }
