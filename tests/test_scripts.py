"""The console scripts run the same entry points as `python train.py` and friends."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", ["asr-train", "asr-evaluate", "asr-transcribe"])
def test_console_scripts_are_installed(name):
    assert (BIN / name).is_file(), f"{name} missing from {BIN}: reinstall with `make install`"


def test_asr_train_composes_the_same_config_from_any_directory(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    args = ["--cfg", "job", "model=ds2_small", "model.n_rnn=3"]
    script = subprocess.run(
        [BIN / "asr-train", *args], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    direct = subprocess.run(
        [sys.executable, repo / "train.py", *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert "n_rnn: 3" in script.stdout
    assert script.stdout == direct.stdout


def test_asr_evaluate_fails_in_one_line_naming_the_checkpoint(tmp_path):
    result = subprocess.run(
        [BIN / "asr-evaluate", "ckpt=missing_run"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "checkpoint not found: missing_run" in result.stderr.strip().splitlines()[-1]
