"""Tests for asr.export: ONNX / TorchScript parity on padded batches, the sidecar, the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr import checkpoint, export
from asr.model import DeepSpeech2, ModelConfig, load_model
from asr.schema import DataConfig
from asr.text import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
# Dropout on: the export must run the model in eval mode.
TINY = ModelConfig(n_cnn=1, n_rnn=2, rnn_dim=32, n_feats=16, dropout=0.1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A run directory holding best.pt, in the trainer's format (asr.loop.Trainer.save)."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = DeepSpeech2(TINY)
    state = {
        "format_version": checkpoint.FORMAT_VERSION,
        "model": model.state_dict(),
        "counters": {"step": 123},
        "config": {
            "model": dataclasses.asdict(TINY),
            "data": dataclasses.asdict(DataConfig(n_mels=16)),
        },
        "vocab": Vocabulary().to_dict(),
    }
    checkpoint.save_atomic(state, run / "best.pt")
    return run


@pytest.fixture(scope="module")
def onnx_export(ckpt) -> tuple[Path, dict]:
    return export.export(ckpt, "onnx", ckpt / "model.onnx")


def torch_model(ckpt: Path) -> DeepSpeech2:
    return load_model(checkpoint.load(ckpt / "best.pt"))


def real_frame_diff(got, want, lens) -> float:
    return max(float((got[b, :n] - want[b, :n]).abs().max()) for b, n in enumerate(lens))


def check_against_torch(exported, model, lengths: tuple[int, ...]) -> float:
    feats, lens = export.random_batch(lengths, TINY.n_feats, seed=7)
    with torch.no_grad():
        want, want_lens = model(feats, lens)
    got, got_lens = exported(feats, lens)
    assert got.dtype == torch.float32 and got_lens.dtype == torch.int64
    assert got.shape[0] == len(lengths) and got.shape[2] == TINY.n_class
    assert torch.equal(got_lens, want_lens)
    return real_frame_diff(got, want, want_lens)


def test_onnx_matches_torch_on_padded_batches(ckpt, onnx_export) -> None:
    out, meta = onnx_export
    assert meta["parity"]["max_abs_diff"] < export.TOLERANCE
    loaded = export.load_exported(out)
    assert loaded.meta == json.loads(export.sidecar_path(out).read_text())
    model = torch_model(ckpt)
    # Another batch size again, a 1-frame utterance, and a batch with no padding at all.
    assert check_against_torch(loaded, model, (5, 130, 1, 77, 64)) < export.TOLERANCE
    assert check_against_torch(loaded, model, (90,)) < export.TOLERANCE
    lens = torch.tensor([1, 2, 17, 311])
    assert torch.equal(loaded.output_lengths(lens), model.output_lengths(lens))
    assert loaded.to("cpu") is loaded and loaded.eval() is loaded


def test_sidecar_describes_the_model(ckpt, onnx_export) -> None:
    _, meta = onnx_export
    assert meta["format"] == "onnx" and meta["opset"] == 17
    assert meta["vocab"] == Vocabulary().to_dict() and meta["n_class"] == 29
    assert meta["features"] == {
        "sample_rate": 16000, "n_mels": 16, "n_fft": 1024, "win_length": 400, "hop_length": 160,
        "log_floor_db": 60.0,
    }  # fmt: skip
    assert meta["stem_conv"] == {"kernel": 3, "stride": 2, "padding": 1}
    assert meta["time_stride"] == 2 and meta["seconds_per_frame"] == pytest.approx(0.02)
    assert meta["checkpoint"] == str(ckpt / "best.pt") and meta["trained_step"] == 123
    assert meta["torch_version"] == torch.__version__


def test_tracing_one_unpadded_utterance_breaks_padded_batches(ckpt, tmp_path) -> None:
    """Why the trace needs a padded batch: traced on one utterance, the model's "no padding"
    shortcut is baked in and the parity check catches it."""
    model = torch_model(ckpt)
    out = tmp_path / "one.onnx"
    export.export_model(model, "onnx", out, trace_lengths=(200,))
    exported = export.ExportedModel(out, {"format": "onnx"})
    assert export.parity(exported, model) > 1e-3


def test_torchscript_matches_torch(ckpt, tmp_path) -> None:
    out, meta = export.export(ckpt, "torchscript", tmp_path / "m.ts.pt")
    assert meta["parity"]["max_abs_diff"] < export.TOLERANCE and meta["opset"] is None
    loaded = export.load_exported(out)
    assert check_against_torch(loaded, torch_model(ckpt), (5, 130, 1, 77, 64)) < 1e-4


def test_parity_failure_exits_1_and_writes_no_sidecar(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)
    out = tmp_path / "m.ts.pt"
    assert export.main([f"ckpt={ckpt}", "format=torchscript", f"out={out}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: parity check failed") and err.count("\n") == 1
    assert not export.sidecar_path(out).exists()


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-m", "asr.export", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_exports_onnx_end_to_end(ckpt, tmp_path) -> None:
    out = tmp_path / "cli" / "model.onnx"
    proc = run_cli([f"ckpt={ckpt}", "format=onnx", f"out={out}"], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "max |diff|" in proc.stdout and proc.stdout.count("\n") == 1
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert out.is_file() and meta["parity"]["max_abs_diff"] < export.TOLERANCE


def test_cli_bad_format_is_one_line_exit_2(ckpt, tmp_path) -> None:
    proc = run_cli([f"ckpt={ckpt}", "format=tflite"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: format must be") and proc.stderr.count("\n") == 1
    assert not list(ckpt.glob("best.*.json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "ckpt="),
        (["ckpt=RUN", "size=3"], "unknown argument 'size=3'"),
        (["ckpt=RUN", "opset=x"], "opset must be an integer"),
        (["ckpt=RUN", "check=maybe"], "check must be true|false"),
        (["ckpt=RUN", "opset=99"], "opset must be in 9..20"),
        (["ckpt=/nonexistent/run"], "checkpoint not found"),
    ],
)
def test_cli_errors_are_one_line_exit_2(ckpt, capsys, args, message) -> None:
    args = [a.replace("RUN", str(ckpt)) for a in args]
    assert export.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_onnxruntime_says_how_to_install(onnx_export, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r'^onnxruntime is not installed: pip install -e "\.'):
        export.load_exported(onnx_export[0])
