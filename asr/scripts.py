"""Console scripts: `asr-train`, `asr-evaluate` and `asr-transcribe`.

Each runs the checkout's `train.py`, `evaluate.py` or `transcribe.py` as `python <file>` would,
with the same arguments. The product's layout keeps those entry points and `conf/` at the root
of the checkout, outside the `asr` package, so the commands find them next to it, which is
where an editable install (`pip install -e .`, what `make install` does) leaves them. Running
the files themselves, rather than a copy of their code, keeps one path through Hydra: the
same job name, the same config directory, and the same output folders.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_entry_point(script: str) -> None:
    path = ROOT / script
    if not path.is_file() or not (ROOT / "conf").is_dir():
        sys.exit(
            f"error: {script} and conf/ are not next to the asr package (looked in {ROOT}): "
            "the asr-* commands need an editable install, pip install -e <checkout>"
        )
    sys.argv[0] = str(path)
    runpy.run_path(str(path), run_name="__main__")


def train() -> None:
    run_entry_point("train.py")


def evaluate() -> None:
    run_entry_point("evaluate.py")


def transcribe() -> None:
    run_entry_point("transcribe.py")
