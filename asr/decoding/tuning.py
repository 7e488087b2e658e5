"""The report of a decoder-tuning sweep (`evaluate.py --multirun ... decode=beam`).

Reads each job's `eval.json` (the decode settings that ran, the WER/CER they gave, and
greedy decoding's on the same log-probs) and writes into the sweep directory `tuning.md`,
`tuning.csv` and `plots/wer_heatmap.png`: dev WER over (`lm_weight`, `sil_score`) for the
lexicon-free beam search, (`lm_weight`, `word_score`) for the lexicon one, the best cell
outlined. Other swept settings (say `beam_size`) are folded by taking each cell's best.

A beam search can lower the WER and raise the CER at once (a lexicon replacing words the LM
never saw), so the report puts greedy's WER and CER and the share of words new to the LM on
top, and marks each setting whose CER is worse than greedy's. The best setting is the one the
jobs' `objective` ranks first (`guarded_wer`: the lowest WER among settings whose CER is no
worse than greedy's); the summary ends with the command that decodes test with it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr.decoding.config import BEAM_DEFAULTS, DecodeConfig

LEXICON_FREE_AXES = ("lm_weight", "sil_score")
LEXICON_AXES = ("lm_weight", "word_score")


@dataclass
class TuningJob:
    name: str
    result: dict[str, Any]

    @property
    def wer(self) -> float:
        return self.metric("wer")

    def metric(self, key: str) -> float:
        value = self.result.get(key)
        return float(value) if isinstance(value, int | float) else math.inf

    @property
    def objective(self) -> str:
        """What the job was asked to minimise (`cer` alone is not a tuning objective)."""
        chosen = self.result.get("objective")
        return chosen if chosen in ("wer", "guarded_wer", "cer") else "wer"

    @property
    def worse_cer_than_greedy(self) -> bool:
        return self.metric("cer") > self.metric("greedy_cer")

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
    axes = axes_of(out)
    return sorted(out, key=lambda k: (k not in axes, axes.index(k) if k in axes else 0, k))


def axes_of(keys: list[str]) -> tuple[str, str]:
    """The heatmap's (rows, columns): the LM weight against the per-token score swept."""
    return LEXICON_FREE_AXES if "sil_score" in keys else LEXICON_AXES


def best_command(best: TuningJob, keys: list[str]) -> str:
    """The evaluate.py command that decodes test with the best job's settings."""
    s = best.settings
    defaults = DecodeConfig(name="beam", unit=s.get("unit")).to_json()  # the mode's defaults
    given = [k for k in s if k not in keys and k != "name" and s[k] != defaults.get(k)]
    parts = [f"ckpt={best.result['ckpt']}", "split=test", f"decode={s.get('name', 'beam')}"]
    if s.get("unit", BEAM_DEFAULTS["unit"]) != BEAM_DEFAULTS["unit"] and "unit" not in keys:
        parts.append(f"decode.unit={s['unit']}")  # the mode itself is not a default
    parts += [f"decode.{k}={_short(s[k])}" for k in [*given, *keys] if k != "name" and k in s]
    return "python evaluate.py " + " ".join(parts)


def _short(value: Any) -> Any:
    """Optuna's 2.4110535042865755 as 2.4111: no decoder is that sensitive."""
    return round(value, 4) if isinstance(value, float) else value


def write_heatmap(jobs: list[TuningJob], axes: tuple[str, str], out: Path) -> Path | None:
    """Dev WER over the two axes; a cell (or point) whose CER is worse than greedy's is
    marked with *."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = [
        (j.settings.get(axes[0]), j.settings.get(axes[1]), j.wer, j.worse_cer_than_greedy)
        for j in jobs
    ]
    points = [p for p in points if None not in p[:2] and math.isfinite(p[2])]
    if not points:
        return None
    ys = sorted({p[0] for p in points})  # lm_weight down the rows
    xs = sorted({p[1] for p in points})  # sil_score or word_score across
    if len(points) < len(xs) * len(ys) / 2:  # a search (Optuna), not a grid: a scatter
        fig, ax, image = _scatter(points, plt)
    else:
        fig, ax, image = _grid(points, xs, ys, plt, np)
    ax.set_xlabel(f"decode.{axes[1]}")
    ax.set_ylabel(f"decode.{axes[0]}")
    ax.set_title("dev WER (best outlined in red; * CER worse than greedy)", fontsize=10)
    fig.colorbar(image, ax=ax, label="WER")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _grid(points, xs, ys, plt, np):
    grid = np.full((len(ys), len(xs)), np.nan)
    worse = np.zeros(grid.shape, dtype=bool)
    for row, column, value, cer_worse in points:  # several jobs per cell: keep the best
        i, k = ys.index(row), xs.index(column)
        if np.isnan(grid[i, k]) or value < grid[i, k]:
            grid[i, k], worse[i, k] = value, cer_worse
    fig, ax = plt.subplots(figsize=(2.2 + 0.9 * len(xs), 1.6 + 0.5 * len(ys)))
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto", origin="lower")
    best = np.unravel_index(np.nanargmin(grid), grid.shape)
    for (i, k), value in np.ndenumerate(grid):
        if not np.isnan(value):
            color = "white" if value > np.nanmean(grid) else "black"
            weight = "bold" if (i, k) == best else "normal"
            text = f"{value:.3f}{'*' if worse[i, k] else ''}"
            ax.text(k, i, text, ha="center", va="center", fontsize=8, color=color,
                    fontweight=weight)  # fmt: skip
    outline = plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, lw=2.5, ec="red")
    ax.add_patch(outline)
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    return fig, ax, image


def _scatter(points, plt):
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ys, xs, values, worse = zip(*points, strict=True)
    image = ax.scatter(xs, ys, c=values, cmap="viridis_r", s=60, edgecolors="k", linewidths=0.3)
    for x, y, cer_worse in zip(xs, ys, worse, strict=True):
        if cer_worse:
            ax.annotate("*", (x, y), textcoords="offset points", xytext=(4, 2))
    best = min(points, key=lambda p: p[2])
    ax.scatter([best[1]], [best[0]], s=220, facecolors="none", edgecolors="red", linewidths=2)
    ax.annotate(f"{best[2]:.3f}", (best[1], best[0]), textcoords="offset points", xytext=(8, 8))
    ax.margins(0.15)  # room for the ring and its label
    return fig, ax, image


def make_tuning_report(sweep_dir: str | Path, plots: bool = True) -> str:
    """Write tuning.md/.csv (and the heatmap) into the sweep dir; return a terminal summary."""
    sweep_dir = Path(sweep_dir)
    jobs = load_tuning_jobs(sweep_dir)
    if not jobs:
        return f"no jobs with an eval.json under {sweep_dir}"
    objective = jobs[0].objective
    jobs.sort(key=lambda j: (j.metric(objective), j.wer, j.name))
    keys = varied(jobs)
    columns = [*keys, "wer", "cer", "cer_vs_greedy", "decode_rtf", "emissions_cached"]
    rows = [[*(j.settings.get(k) for k in keys), *_measures(j)] for j in jobs]
    with open(sweep_dir / "tuning.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["job", *columns], *[[j.name, *r] for j, r in zip(jobs, rows, strict=True)]]
        )
    best = jobs[0]
    lines = [f"decoder tuning {sweep_dir}: {len(jobs)} jobs on {best.result.get('source')}"]
    lines += _baseline(jobs)
    if math.isfinite(best.metric(objective)):
        lines.append(
            f"best by {objective}: WER {best.wer:.4f} CER {best.result['cer']:.4f} in {best.name}"
        )
        lines.append(f"  {best_command(best, keys)}")
        if objective == "guarded_wer" and best.worse_cer_than_greedy:
            lines.append(
                "  no setting has a CER as good as greedy decoding's: on this split greedy is "
                "the better choice (or try decode=beam, lexicon-free, if this was beam_lexicon)"
            )
    md = [f"# Decoder tuning: {best.result.get('source')}", "", *lines[1:], ""]
    axes = axes_of(keys)
    heatmap = sweep_dir / "plots" / "wer_heatmap.png"
    if plots and set(axes) <= set(keys) and write_heatmap(jobs, axes, heatmap):
        md += ["![dev WER](plots/wer_heatmap.png)", ""]
    md += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    (sweep_dir / "tuning.md").write_text("\n".join(md) + "\n")
    lines.append(f"report: {sweep_dir / 'tuning.md'}")
    return "\n".join(lines)


def _measures(job: TuningJob) -> list[Any]:
    """A job's row after its settings: WER, CER, its CER against greedy's (marked when
    worse), decoding's real-time factor, and whether the log-probs came from the cache."""
    r = job.result
    delta = job.metric("cer") - job.metric("greedy_cer")
    versus = "" if not math.isfinite(delta) else f"{delta:+.4f}{' worse' if delta > 0 else ''}"
    return [r.get("wer"), r.get("cer"), versus, r.get("decode_rtf"), r.get("emissions_cached")]


def _baseline(jobs: list[TuningJob]) -> list[str]:
    """Greedy decoding on the same split (the same log-probs), the share of its words the LM
    never saw, and how many settings lose to greedy on CER."""
    first = jobs[0].result
    if "greedy_wer" not in first:
        return []
    oov = first.get("oov_rate")
    worse = sum(j.worse_cer_than_greedy for j in jobs)
    return [
        f"greedy on the same split: WER {first['greedy_wer']:.4f} CER {first['greedy_cer']:.4f}"
        f"; words new to the LM: {'unknown' if oov is None else f'{oov:.1%}'}",
        f"settings with a worse CER than greedy: {worse} of {len(jobs)} (marked worse)",
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value == value and abs(value) < 100 else f"{value:g}"
    return "" if value is None else str(value)
