"""The two generated impulse-response sources of `augment.rir_source` measured against each other:
`room` (pyroomacoustics' image-source model of a random shoebox room) and `noise` (Gaussian noise
under an exponential decay).

    python -m bench.rir                                   # the banks alone, seconds
    python -m bench.rir --ckpt <run> --manifest <test.jsonl> --n 150   # and a model's CER on them

For each source, a bank of 64 as a run makes it (RT60 drawn in [0.2, 0.8] s from the seed):
- the time to make it;
- the RT60 measured on each impulse response (Schroeder backward integration, the -5 to -25 dB
  slope times 3), against the one drawn: their median ratio and its spread;
- the direct-to-reverberant ratio (the energy within 2.5 ms of the direct sound against the rest);
- with a checkpoint: its CER on test utterances convolved with the bank (utterance i with
  impulse response i mod 64), by `evaluate.py` itself, next to the CER on the clean ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.augment import generated_rirs, measured_rt60
from asr.data.audio import read_audio
from asr.schema import AugmentConfig

ROOT = Path(__file__).resolve().parent.parent
SR = 16000


def drr_db(rir: torch.Tensor) -> float:
    peak = int(rir.abs().argmax())
    direct = slice(max(peak - 40, 0), peak + 40)  # +-2.5 ms at 16 kHz
    e_direct = float(rir[direct].pow(2).sum())
    e_rest = float(rir.pow(2).sum()) - e_direct
    return 10 * torch.log10(torch.tensor(e_direct / max(e_rest, 1e-12))).item()


def bank_stats(source: str, seed: int) -> tuple[dict, list[torch.Tensor]]:
    cfg = AugmentConfig(rir_source=source, reverb_prob=1.0)
    started = time.perf_counter()
    asked, bank = zip(*generated_rirs(cfg, SR, seed=seed), strict=True)  # as make_rir_bank
    seconds = time.perf_counter() - started
    ratios = [measured_rt60(r, SR) / a for r, a in zip(bank, asked, strict=True)]
    drr = [drr_db(r) for r in bank]
    q = statistics.quantiles(ratios, n=10)
    return {
        "source": source,
        "bank_seconds": round(seconds, 2),
        "rt60_measured_over_drawn_median": round(statistics.median(ratios), 3),
        "rt60_measured_over_drawn_p10_p90": [round(q[0], 3), round(q[-1], 3)],
        "drr_db_median": round(statistics.median(drr), 1),
        "drr_db_p10_p90": [round(x, 1) for x in statistics.quantiles(drr, n=10)[::8]],
    }, list(bank)


def reverberated_manifest(manifest: Path, bank: list[torch.Tensor], out: Path, n: int) -> Path:
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()][:n]
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, row in enumerate(rows):
        path = Path(row["audio_filepath"])
        path = path if path.is_absolute() else manifest.parent / path
        wave = read_audio(path, SR).wave
        wet = AF.fftconvolve(wave, bank[i % len(bank)])[: wave.shape[0]]
        wet = wet * (wave.abs().max() / wet.abs().max().clamp_min(1e-9))  # the same peak level
        dest = out / f"{i:04d}.wav"
        sf.write(dest, wet.numpy(), SR)
        lines.append(json.dumps({**row, "audio_filepath": str(dest)}, ensure_ascii=False))
    target = out / "test.jsonl"
    target.write_text("\n".join(lines) + "\n")
    return target


def evaluate_cer(ckpt: str, manifest: Path, work: Path) -> float:
    out = work / f"eval-{manifest.parent.name}"
    cmd = [sys.executable, str(ROOT / "evaluate.py"), f"ckpt={ckpt}", f"manifest={manifest}",
           "logger=none", f"hydra.run.dir={out}"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return json.loads((out / "eval.json").read_text())["cer"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", help="a run folder or checkpoint, for the CER on reverberated audio")
    p.add_argument("--manifest", type=Path, help="test utterances (JSONL) to reverberate")
    p.add_argument("--n", type=int, default=150, help="how many of them")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    banks = {}
    for source in ("room", "noise"):
        results[source], banks[source] = bank_stats(source, a.seed)
        print(json.dumps(results[source]))
    if a.ckpt and a.manifest:
        with tempfile.TemporaryDirectory(prefix="asr-rir-") as tmp:
            work = Path(tmp)
            clean = reverberated_manifest(a.manifest, [torch.ones(1)], work / "clean", a.n)
            print(json.dumps({"clean_cer": round(evaluate_cer(a.ckpt, clean, work), 4)}))
            for source, bank in banks.items():
                wet = reverberated_manifest(a.manifest, bank, work / source, a.n)
                cer = evaluate_cer(a.ckpt, wet, work)
                print(json.dumps({"source": source, "reverberated_cer": round(cer, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
