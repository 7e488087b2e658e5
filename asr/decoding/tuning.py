"""The report of a decoder-tuning sweep (`evaluate.py --multirun ... decode=beam`).

Reads each job's `eval.json` (the decode settings that ran and the WER/CER they gave) and
writes into the sweep directory `tuning.md`, `tuning.csv` and `plots/wer_heatmap.png`: dev WER
over (`lm_weight`, `word_score`), the best cell outlined. Other swept settings (say
`beam_size`) are folded by taking each cell's best. The summary ends with the command that
decodes test with the best settings.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr.decoding.config import DecodeConfig

AXES = ("lm_weight", "word_score")


@dataclass
class TuningJob:
    name: str
    result: dict[str, Any]

    @property
    def wer(self) -> float:
        value = self.result.get("wer")
        return float(value) if isinstance(value, int | float) else math.inf

    @property
    def settings(self) -> dict[str, Any]:
        return self.result.get("decode") or {}


def load_tuning_jobs(sweep_dir: Path) -> list[TuningJob]:
    jobs = []
    for path in sorted(Path(sweep_dir).glob("*/eval.json")):
        try:
            jobs.append(TuningJob(path.parent.name, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # a job writing right now; the next report has it
    return jobs


def varied(jobs: list[TuningJob]) -> list[str]:
    """Decode settings that differ between jobs, the heatmap's axes first."""
    keys = {k for j in jobs for k in j.settings}
    out = [k for k in keys if len({json.dumps(j.settings.get(k)) for j in jobs}) > 1]
    return sorted(out, key=lambda k: (k not in AXES, AXES.index(k) if k in AXES else 0, k))


def best_command(best: TuningJob, keys: list[str]) -> str:
    """The evaluate.py command that decodes test with the best job's settings."""
    s = best.settings
    defaults = DecodeConfig(name="beam").to_json()
    given = [k for k in s if k not in keys and k != "name" and s[k] != defaults.get(k)]
    parts = [f"ckpt={best.result['ckpt']}", "split=test", f"decode={s.get('name', 'beam')}"]
    parts += [f"decode.{k}={_short(s[k])}" for k in [*given, *keys] if k != "name" and k in s]
    return "python evaluate.py " + " ".join(parts)


def _short(value: Any) -> Any:
    """Optuna's 2.4110535042865755 as 2.4111: no decoder is that sensitive."""
    return round(value, 4) if isinstance(value, float) else value


def write_heatmap(jobs: list[TuningJob], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = [(j.settings.get(AXES[0]), j.settings.get(AXES[1]), j.wer) for j in jobs]
    points = [p for p in points if None not in p and math.isfinite(p[2])]
    if not points:
        return None
    ys = sorted({p[0] for p in points})  # lm_weight down the rows
    xs = sorted({p[1] for p in points})  # word_score across
    if len(points) < len(xs) * len(ys) / 2:  # a search (Optuna), not a grid: a scatter
        fig = _scatter(points, plt)
    else:
        fig = _grid(points, xs, ys, plt, np)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _grid(points, xs, ys, plt, np):
    grid = np.full((len(ys), len(xs)), np.nan)
    for lm_weight, word_score, value in points:  # several jobs per cell: keep the best
        i, k = ys.index(lm_weight), xs.index(word_score)
        grid[i, k] = value if np.isnan(grid[i, k]) else min(grid[i, k], value)
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(xs), 1.4 + 0.5 * len(ys)))
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto", origin="lower")
    best = np.unravel_index(np.nanargmin(grid), grid.shape)
    for (i, k), value in np.ndenumerate(grid):
        if not np.isnan(value):
            color = "white" if value > np.nanmean(grid) else "black"
            weight = "bold" if (i, k) == best else "normal"
            ax.text(k, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color=color,
                    fontweight=weight)  # fmt: skip
    outline = plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, lw=2.5, ec="red")
    ax.add_patch(outline)
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    _labels(ax, fig, image)
    return fig


def _scatter(points, plt):
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ys, xs, values = zip(*points, strict=True)
    image = ax.scatter(xs, ys, c=values, cmap="viridis_r", s=60, edgecolors="k", linewidths=0.3)
    best = min(points, key=lambda p: p[2])
    ax.scatter([best[1]], [best[0]], s=220, facecolors="none", edgecolors="red", linewidths=2)
    ax.annotate(f"{best[2]:.3f}", (best[1], best[0]), textcoords="offset points", xytext=(8, 8))
    ax.margins(0.15)  # room for the ring and its label
    _labels(ax, fig, image)
    return fig


def _labels(ax, fig, image) -> None:
    ax.set_xlabel("decode.word_score")
    ax.set_ylabel("decode.lm_weight")
    ax.set_title("dev WER (best outlined in red)")
    fig.colorbar(image, ax=ax, label="WER")


def make_tuning_report(sweep_dir: str | Path, plots: bool = True) -> str:
    """Write tuning.md/.csv (and the heatmap) into the sweep dir; return a terminal summary."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted(load_tuning_jobs(sweep_dir), key=lambda j: (j.wer, j.name))
    if not jobs:
        return f"no jobs with an eval.json under {sweep_dir}"
    keys = varied(jobs)
    columns = [*keys, "wer", "cer", "decode_rtf", "emissions_cached"]
    rows = [
        [*(j.settings.get(k) for k in keys), *(j.result.get(c) for c in columns[len(keys) :])]
        for j in jobs
    ]
    with open(sweep_dir / "tuning.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["job", *columns], *[[j.name, *r] for j, r in zip(jobs, rows, strict=True)]]
        )
    best = jobs[0]
    lines = [f"decoder tuning {sweep_dir}: {len(jobs)} jobs on {best.result.get('source')}"]
    if math.isfinite(best.wer):
        lines.append(f"best: WER {best.wer:.4f} CER {best.result['cer']:.4f} in {best.name}")
        lines.append(f"  {best_command(best, keys)}")
    md = [f"# Decoder tuning: {best.result.get('source')}", "", *lines[1:], ""]
    if (
        plots
        and set(AXES) <= set(keys)
        and write_heatmap(jobs, sweep_dir / "plots" / "wer_heatmap.png")
    ):
        md += ["![dev WER](plots/wer_heatmap.png)", ""]
    md += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    (sweep_dir / "tuning.md").write_text("\n".join(md) + "\n")
    lines.append(f"report: {sweep_dir / 'tuning.md'}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value == value and abs(value) < 100 else f"{value:g}"
    return "" if value is None else str(value)
