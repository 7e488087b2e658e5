"""The manifest checker: every kind of bad entry is found, counted, and `--fix` cleans it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from asr.data.check import main as check_main
from asr.data.checks import KINDS
from tests.badcorpus import BAD_KINDS, REPAIRED_KINDS, build_bad_manifest
from tests.conftest import ROOT


def test_builder_covers_at_least_twelve_kinds():
    kinds = {**BAD_KINDS, **REPAIRED_KINDS}
    assert len(kinds) >= 12 and set(kinds) == set(KINDS)


def test_check_reports_each_kind_with_its_count(corpus_cache: Path, tmp_path: Path, capsys):
    good = next(corpus_cache.glob("synth_es-*/train.jsonl"))
    bad = build_bad_manifest(good, tmp_path)
    n_good = sum(1 for line in good.read_text().splitlines() if line.strip())

    code = check_main([str(bad), "--jobs", "2", "--fix", str(tmp_path / "fixed.jsonl")])
    out = capsys.readouterr().out
    assert code == 1  # some entries are unusable
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("UNUSABLE", "repaired"):
            counts[parts[1]] = int(parts[2])
    assert counts == {**BAD_KINDS, **REPAIRED_KINDS}, out
    assert "'2': 1, '5': 1" in out  # the characters outside the alphabet are named
    n_usable = n_good + sum(REPAIRED_KINDS.values())
    assert f"{n_usable} usable, {sum(BAD_KINDS.values())} unusable" in out

    # --fix keeps exactly the usable entries, with measured durations: it then checks clean
    fixed = [json.loads(line) for line in (tmp_path / "fixed.jsonl").read_text().splitlines()]
    assert len(fixed) == n_usable
    mis = next(r for r in fixed if r["audio_filepath"].endswith("misdeclared.wav"))
    assert mis["duration"] == round(sf.info(mis["audio_filepath"]).duration, 4)
    assert check_main([str(tmp_path / "fixed.jsonl"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "UNUSABLE" not in out and "duration_mismatch" not in out


def test_check_flags_change_alphabet_and_stride(tmp_path: Path, capsys):
    import numpy as np

    sf.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 16000)  # 0.5 s
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"audio_filepath": "a.wav", "text": "ab" * 10, "duration": 0.5}) + "\n")
    assert check_main([str(m), "--jobs", "1"]) == 0  # 20 labels fit 26 frames at stride 2
    assert check_main([str(m), "--jobs", "1", "--stride", "4"]) == 1  # not 13 frames
    assert "too_long_for_ctc" in capsys.readouterr().out
    alphabet = tmp_path / "abc.txt"
    alphabet.write_text("<SPACE>\nx\ny\n")
    assert check_main([str(m), "--jobs", "1", "--alphabet", str(alphabet)]) == 1
    assert "chars_outside_alphabet" in capsys.readouterr().out


def test_check_command_line_errors_are_one_line(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "asr.data", "check", str(tmp_path / "none.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "manifest not found" in proc.stderr


def test_an_empty_file_is_empty_audio_whatever_duration_it_declares(tmp_path: Path, capsys):
    """A manifest measured from the files declares 0 s for an empty one: no transcript fits 0 s,
    but the problem is the audio, not the transcript's length."""
    import numpy as np

    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(tmp_path / "ok.wav", np.zeros(16000, np.float32), 16000)
    rows = [
        {"audio_filepath": "empty.wav", "text": "hola", "duration": 0.0},
        # a wrong 0 s declaration of real audio: repaired, and the CTC check uses the file's 1 s
        {"audio_filepath": "ok.wav", "text": "hola", "duration": 0.0},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert check_main([str(m), "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert "2 entries, 1 usable, 1 unusable" in out
    assert "empty_audio" in out and "duration_mismatch" in out
    assert "too_long_for_ctc" not in out
