"""Export a checkpoint's acoustic model to ONNX or TorchScript, with a JSON sidecar and a check.

``python -m asr.export ckpt=RUN_DIR_OR_FILE format=onnx|torchscript [out=PATH] [opset=17]
[check=true] [trust_checkpoint=false]``; `load_exported` runs the result where a DeepSpeech2
stands (evaluation).

* Traced, both formats (``torch.onnx.export(dynamo=False)``, ``torch.jit.trace``): the dynamo
  exporter and ``torch.export`` fail on ``nn.GRU`` (the time axis gets specialised) and on the
  model's data-dependent branches. The GRUs run the ``reverse`` arrangement (`asr.gru`): torch's
  own GRU op, one direction at a time on the padded tensor, which becomes native ONNX GRUs.
* Traced on a PADDED batch of several lengths: the model skips the padding-aware path when no
  utterance is padded (a Python bool), so traced on one unpadded utterance that shortcut is
  baked in and the backward GRU direction of shorter utterances starts in the padding (errors
  of ~0.1). The tracer's warnings about such Python values are expected and silenced, with the
  exporters' deprecation notes and ONNX's GRU batch-size note (the check uses another size).
* The parity check (on by default) runs the exported file on a new batch (other lengths, one
  very short, another batch size) and compares real frames only (``t < out_lens[b]``; later
  frames are don't-care, as for CTC) with the original model; the sidecar is written after it.
* The sidecar (``<out>.json``) holds what the file's user needs and cannot see in it: the
  vocabulary, the log-mel settings (the checkpoint's, as `make_logmel` uses them), the stem
  conv's time geometry (output lengths without running the model) and provenance.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from asr import checkpoint
from asr.features import FEATURE_KEYS
from asr.model import DeepSpeech2, conv_output_lengths, load_model

FORMATS = {"onnx": ".onnx", "torchscript": ".ts.pt"}
KEYS = ("ckpt", "format", "out", "opset", "check", "trust_checkpoint")
INPUTS, OUTPUTS = ("feats", "feat_lens"), ("log_probs", "out_lens")
DYNAMIC_AXES = {"feats": {0: "batch", 2: "time"}, "feat_lens": {0: "batch"},
                "log_probs": {0: "batch", 1: "frames"}, "out_lens": {0: "batch"}}  # fmt: skip
DEFAULT_OPSET, OPSETS = 17, range(9, 21)  # what torch's TorchScript-based exporter supports
TRACE_LENGTHS = (200, 157, 90)  # padded, several lengths: see the module docstring
CHECK_LENGTHS = (311, 240, 64, 17)  # other lengths, another batch size, one very short
TOLERANCE = 1e-4
INSTALL_HINT = 'pip install -e ".[export]"'


class UsageError(ValueError):
    """A bad command line or checkpoint (exit 2)."""


class ParityError(RuntimeError):
    """The exported model does not compute what torch does (exit 1)."""


class MissingDependency(ImportError):
    """onnx / onnxruntime not installed: the message says how to install them (exit 2)."""


def random_batch(lengths: tuple[int, ...], n_feats: int, seed: int = 0):
    """Per-utterance normalised random features (B, n_feats, T) padded with garbage (the model
    must ignore it), and their lengths (B,) int64."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), n_feats, max(lengths), generator=gen)
    return feats, torch.tensor(lengths, dtype=torch.int64)


def export_model(
    model: DeepSpeech2,
    fmt: str,
    out: Path,
    opset: int = DEFAULT_OPSET,
    trace_lengths: tuple[int, ...] = TRACE_LENGTHS,
) -> None:
    """Trace an eval-mode copy of `model`'s arrangement (gru_impl "reverse") to `out`."""
    impl, model.gru_impl = model.gru_impl, "reverse"
    args = random_batch(trace_lengths, model.cfg.n_feats)
    try:
        with quiet_tracer(), torch.no_grad():
            if fmt == "onnx":
                _export_onnx(model.eval(), args, out, opset)
            else:
                torch.jit.trace(model.eval(), args, check_trace=False).save(str(out))
    finally:
        model.gru_impl = impl


@contextmanager
def quiet_tracer() -> Iterator[None]:
    """Silence what tracing says on purpose: the Python values it bakes in, the deprecation
    of the exporters chosen here, and the ONNX GRU batch-size note (parity checks that)."""
    with warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", ".*variable length with GRU", UserWarning)
        yield


def _export_onnx(model: DeepSpeech2, args: tuple, out: Path, opset: int) -> None:
    try:
        torch.onnx.export(
            model, args, str(out), dynamo=False, opset_version=opset, input_names=list(INPUTS),
            output_names=list(OUTPUTS), dynamic_axes=DYNAMIC_AXES,
        )  # fmt: skip
    except ImportError as e:
        raise MissingDependency(f"{e.name or 'onnx'} is not installed: {INSTALL_HINT}") from None


def build_meta(state: dict, ckpt: Path, model: DeepSpeech2, fmt: str, opset: int) -> dict:
    data = state["config"]["data"]
    conv = model.cnn  # seed layout (B, C, F, T): index 1 is the time axis
    stem = {"kernel": conv.kernel_size[1], "stride": conv.stride[1], "padding": conv.padding[1]}
    return {
        "format": fmt,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "vocab": state["vocab"],  # {"symbols": [...], "blank": index}: Vocabulary.from_dict
        "n_class": model.cfg.n_class,
        "features": {k: data.get(k) for k in FEATURE_KEYS},  # LogMel(**features)
        "stem_conv": stem,
        "time_stride": stem["stride"],
        "seconds_per_frame": data["hop_length"] * stem["stride"] / data["sample_rate"],
        "model": state["config"]["model"],
        "checkpoint": str(ckpt),
        "trained_step": state.get("counters", {}).get("step"),
        "torch_version": torch.__version__,
        "opset": opset if fmt == "onnx" else None,
    }


class ExportedModel:
    """An exported model that stands where a DeepSpeech2 does: `model(feats, feat_lens)` ->
    (log_probs (B, T', C) float32 on feats' device, out_lens (B,) int64 on the host). It runs
    on the CPU (onnxruntime, or TorchScript); `.to()` and `.eval()` change nothing."""

    def __init__(self, path: str | Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = Path(path), meta
        self._run = _onnx_runner(self.path) if meta["format"] == "onnx" else _ts_runner(self.path)

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        log_probs, out_lens = self._run(feats.float().cpu(), feat_lens.long().cpu())
        return log_probs.to(feats.device), out_lens

    def output_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(feat_lens, **self.meta["stem_conv"])

    def to(self, *args: Any, **kwargs: Any) -> ExportedModel:
        return self

    def eval(self) -> ExportedModel:
        return self


def _onnx_runner(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency(f"onnxruntime is not installed: {INSTALL_HINT}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(feats: torch.Tensor, feat_lens: torch.Tensor):
        log_probs, out_lens = session.run(
            list(OUTPUTS), {"feats": feats.contiguous().numpy(), "feat_lens": feat_lens.numpy()}
        )
        return torch.from_numpy(log_probs), torch.from_numpy(out_lens).long()

    return run


def _ts_runner(path: Path):
    with quiet_tracer():
        return torch.jit.load(str(path), map_location="cpu").eval()


def sidecar_path(out: str | Path) -> Path:
    return Path(str(out) + ".json")


def load_exported(path: str | Path) -> ExportedModel:
    meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    return ExportedModel(path, meta)


def parity(exported: ExportedModel, reference: DeepSpeech2, lengths=CHECK_LENGTHS) -> float:
    """Max |difference| of the log-probs on real frames; ParityError if out_lens differ."""
    feats, lens = random_batch(lengths, reference.cfg.n_feats, seed=1)
    with torch.no_grad():
        want, want_lens = reference(feats, lens)
    got, got_lens = exported(feats, lens)
    if not torch.equal(got_lens, want_lens):
        raise ParityError(f"out_lens differ: {got_lens.tolist()} vs torch {want_lens.tolist()}")
    return max(float((got[b, :n] - want[b, :n]).abs().max()) for b, n in enumerate(want_lens))


def export(
    ckpt: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    *,
    trust: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Export a checkpoint (file, or run directory holding best.pt); write the sidecar after the
    parity check passes. Returns the exported file and the sidecar's dict."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be {'|'.join(FORMATS)} (got {fmt!r})")
    if fmt == "onnx" and opset not in OPSETS:
        raise UsageError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1} (got {opset})")
    try:
        ckpt_path = checkpoint.resolve_checkpoint(ckpt, "best.pt")
        state = checkpoint.load(ckpt_path, trust=trust)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    out_path = Path(out) if out else ckpt_path.with_suffix(FORMATS[fmt])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = load_model(state)
    export_model(model, fmt, out_path, opset)
    meta = build_meta(state, ckpt_path, model, fmt, opset)
    meta["parity"] = None
    if check:
        diff = parity(ExportedModel(out_path, meta), model)
        meta["parity"] = {"lengths": list(CHECK_LENGTHS), "max_abs_diff": diff}
        if not diff <= TOLERANCE:  # NaN fails too
            raise ParityError(f"max |diff| {diff:.3g} on real frames > {TOLERANCE:g}")
    sidecar_path(out_path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_path, meta


def parse_args(argv: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {
        "format": "onnx",
        "out": None,
        "opset": DEFAULT_OPSET,
        "check": True,
        "trust_checkpoint": False,
    }
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise UsageError(f"unknown argument {arg!r}; expected key=value with key in {KEYS}")
        args[key] = value
    if not args.get("ckpt"):
        raise UsageError("ckpt=<checkpoint file or run directory> is required")
    if not str(args["opset"]).isdigit():
        raise UsageError(f"opset must be an integer (got {args['opset']!r})")
    flags = {key: _flag(args, key) for key in ("check", "trust_checkpoint")}
    return {**args, "opset": int(args["opset"]), **flags}


def _flag(args: dict[str, Any], key: str) -> bool:
    value = str(args[key]).lower()
    if value not in ("true", "false", "1", "0"):
        raise UsageError(f"{key} must be true|false (got {args[key]!r})")
    return value in ("true", "1")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        out, meta = export(
            args["ckpt"],
            args["format"],
            args["out"],
            args["opset"],
            args["check"],
            trust=args["trust_checkpoint"],
        )
    except (UsageError, MissingDependency) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ParityError as e:
        print(f"error: parity check failed: {e}", file=sys.stderr)
        return 1
    check = meta["parity"]
    diff = f"max |diff| {check['max_abs_diff']:.3g} on real frames" if check else "not checked"
    print(f"exported {meta['checkpoint']} (step {meta['trained_step']}) to {out} ({diff}; "
          f"sidecar {sidecar_path(out)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())


def exported_for(ckpt: Path, cache_dir: Path) -> ExportedModel:
    """`runtime=onnx`: the checkpoint's ONNX export, made (and checked) on first use and kept
    in `cache_dir` under the checkpoint's content hash."""
    from asr.decoding.emissions import file_digest, file_lock

    out = Path(cache_dir) / f"{file_digest(ckpt)[:20]}.onnx"
    with file_lock(out):  # parallel sweep jobs: one exports, the rest wait
        if not sidecar_path(out).is_file():
            export(ckpt, "onnx", out)
    return load_exported(out)
