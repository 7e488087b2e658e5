"""The sweep report's plots, drawn with matplotlib from the jobs `asr.report` loaded.

- `cer_vs_<key>.png`: dev CER against each swept key, one line per combination of the other
  keys, mean ± std over seeds.
- `parallel_coordinates.png`: one line per job from its swept values to its dev CER, the view
  W&B users reach for first.
- `pareto.png`: dev CER against training throughput and against the parameter count, with the
  jobs no other job beats on both marked as the frontier.
- `learning_curves.png`: dev CER against steps, training audio hours and wall-clock minutes.
  Jobs with different batch sizes take different steps for the same audio, so only the last two
  compare them fairly.

A job that failed, or was interrupted, stays in every view: failed jobs as a red cross on a
"failed" line at the top, interrupted ones with hollow markers and dashed lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from asr.report.jobs import REPEAT_KEYS, Job, aggregate, as_number, mean_std

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FAILED_COLOR = "tab:red"


def write_plots(jobs: list[Job], keys: list[str], plot_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")

    plot_dir.mkdir(exist_ok=True)
    config_keys = [k for k in keys if k not in REPEAT_KEYS]
    figures = {}
    for key in config_keys:
        figures[f"cer_vs_{key.replace('.', '_')}"] = cer_vs_key(jobs, key, config_keys)
    if config_keys:
        figures["parallel_coordinates"] = parallel_coordinates(jobs, config_keys)
    figures["pareto"] = pareto(jobs, keys)
    figures["learning_curves"] = learning_curves(jobs, keys)
    return [_save(fig, plot_dir / f"{name}.png") for name, fig in figures.items()]


def _failed(jobs: list[Job]) -> list[Job]:
    return [j for j in jobs if j.cer is None]


def _mark_failed_at_top(ax: Any, xs: list[Any]) -> None:
    """Red crosses on a line just inside the top of the axes: seen, without a made-up CER."""
    if xs:
        ax.scatter(
            xs, [0.96] * len(xs), marker="x", color=FAILED_COLOR, transform=ax.get_xaxis_transform()
        )
        ax.text(0.01, 0.96, "failed", color=FAILED_COLOR, fontsize=7, transform=ax.transAxes)


def _not_shown(ax: Any, jobs: list[Job]) -> None:
    """Name the jobs a panel has no position for, under it."""
    if jobs:
        names = ", ".join(f"{j.name} ({j.status})" for j in jobs[:4])
        more = f" and {len(jobs) - 4} more" if len(jobs) > 4 else ""
        ax.annotate(
            f"not shown: {names}{more}",
            (0, 0),
            xytext=(0, -32),
            xycoords="axes fraction",
            textcoords="offset points",
            fontsize=6,
            color=FAILED_COLOR,
            va="top",
        )


def _label(ax: Any, text: str, at: tuple[float, float]) -> None:
    ax.annotate(text, at, xytext=(5, 4), textcoords="offset points", fontsize=6, alpha=0.8)


def _x_values(jobs: list[Job], key: str) -> tuple[bool, list[Any]]:
    """The key's values for these jobs, as numbers when all of them are numbers."""
    raw = [j.overrides.get(key, "") for j in jobs]
    numeric = all(as_number(v) is not None for v in raw)
    return numeric, [as_number(v) if numeric else v for v in raw]


def _x_positions(all_jobs: list[Job], key: str) -> tuple[dict[str, float], list[str] | None]:
    """Where each of the key's values sits on an x axis: the number itself, or the index of a
    category in sorted order (with the categories as tick labels), so every panel agrees."""
    numeric, values = _x_values(all_jobs, key)
    raw = [j.overrides.get(key, "") for j in all_jobs]
    if numeric:
        return dict(zip(raw, values, strict=True)), None
    categories = sorted(set(raw))
    return {c: float(i) for i, c in enumerate(categories)}, categories


def cer_vs_key(jobs: list[Job], key: str, config_keys: list[str]) -> Figure:
    import matplotlib.pyplot as plt

    others = [k for k in config_keys if k != key]
    done = [j for j in jobs if j.cer is not None]
    x_of, categories = _x_positions(jobs, key)
    fig, ax = plt.subplots(figsize=(6, 4))
    for line_values, group in sorted(aggregate(done, others).items()):
        points = []
        for x, at_x in aggregate(group, [key]).items():
            m, s = mean_std([j.cer for j in at_x])
            points.append((x_of[x[0]], m, s))
        points.sort(key=lambda p: p[0])
        label = ", ".join(f"{k}={v}" for k, v in zip(others, line_values, strict=True))
        ax.errorbar(
            [p[0] for p in points],
            [p[1] for p in points],
            yerr=[p[2] for p in points],
            marker="o",
            capsize=3,
            ls="-" if categories is None else "none",  # no line between unordered categories
            label=label or None,
        )
    _mark_failed_at_top(ax, [x_of[j.overrides.get(key, "")] for j in _failed(jobs)])
    if categories is not None:
        ax.set_xticks(range(len(categories)), categories)
    elif len(set(x_of.values())) <= 12:
        ax.set_xticks(sorted(set(x_of.values())))  # the swept values, not 1.25, 1.5, ...
    ax.set_xlabel(key)
    ax.set_ylabel("best dev CER")
    ax.set_title(f"dev CER vs {key}")
    ax.grid(alpha=0.3)
    if others and done:
        ax.legend(fontsize=8)
    return fig


def _axis_positions(jobs: list[Job], key: str) -> tuple[list[float], list[float], list[str]]:
    """Each job's position in [0, 1] on a parallel axis, and that axis' ticks and labels.
    Numbers keep their spacing (logarithmic when they span 10x or more); other values are
    spread evenly in sorted order."""
    import math

    numeric, xs = _x_values(jobs, key)
    if numeric:
        log = min(xs) > 0 and max(xs) / min(xs) >= 10
        f = (lambda v: math.log10(v)) if log else (lambda v: v)
        lo, hi = f(min(xs)), f(max(xs))
        span = hi - lo or 1.0
        position = {x: (f(x) - lo) / span if hi > lo else 0.5 for x in set(xs)}
        ticks = sorted(set(xs))
        return [position[x] for x in xs], [position[t] for t in ticks], [f"{t:g}" for t in ticks]
    ticks = sorted(set(xs))
    spread = max(len(ticks) - 1, 1)
    position = {t: i / spread if len(ticks) > 1 else 0.5 for i, t in enumerate(ticks)}
    return [position[x] for x in xs], [position[t] for t in ticks], ticks


def parallel_coordinates(jobs: list[Job], keys: list[str]) -> Figure:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    columns = [_axis_positions(jobs, k) for k in keys]
    cers = [j.cer for j in jobs if j.cer is not None]
    lo, hi = (min(cers), max(cers)) if cers else (0.0, 1.0)
    span = hi - lo or 1.0
    failed_y = 1.12  # above the CER axis' range: a failed job ends on its own "failed" tick
    norm = colors.Normalize(lo, hi)
    cmap = matplotlib.colormaps["viridis_r"]

    fig, ax = plt.subplots(figsize=(max(6, 1.8 * (len(keys) + 1)), 4.5))
    n_axes = len(keys) + 1
    for i, job in enumerate(jobs):
        ys = [col[0][i] for col in columns]
        if job.cer is None:
            ax.plot(range(n_axes), [*ys, failed_y], color=FAILED_COLOR, ls="--", marker="x")
            continue
        style = "-" if job.status == "ok" else "--"
        ax.plot(
            range(n_axes),
            [*ys, (job.cer - lo) / span],
            color=cmap(norm(job.cer)),
            ls=style,
            marker="o",
            markersize=3,
            alpha=0.85,
        )
    for x, (_, ticks, labels) in enumerate(columns):
        ax.axvline(x, color="0.6", lw=0.8)
        for t, label in zip(ticks, labels, strict=True):
            ax.annotate(str(label), (x, t), xytext=(4, 0), textcoords="offset points", fontsize=7)
    ax.axvline(len(keys), color="0.6", lw=0.8)
    for frac in (0.0, 0.5, 1.0):
        ax.annotate(
            f"{lo + frac * span:.3f}",
            (len(keys), frac),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=7,
        )
    if len(cers) < len(jobs):
        ax.annotate(
            "failed",
            (len(keys), failed_y),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=7,
            color=FAILED_COLOR,
        )
    ax.set_xticks(range(n_axes), [*keys, "best dev CER"], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.2)
    ax.set_xlim(-0.2, n_axes - 0.5)
    ax.set_title("swept values to dev CER (dashed: not finished)", fontsize=10)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="best dev CER")
    return fig


def frontier(points: list[tuple[float, float]], *, higher_x_is_better: bool) -> list[int]:
    """Indices of the points no other point dominates (as good on x and on CER, better on one;
    lower CER is better), in order of x."""
    sign = -1.0 if higher_x_is_better else 1.0  # compare as "lower is better" on both

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        ax, bx = sign * a[0], sign * b[0]
        return ax <= bx and a[1] <= b[1] and (ax < bx or a[1] < b[1])

    kept = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(kept, key=lambda i: points[i][0])


def pareto(jobs: list[Job], keys: list[str]) -> Figure:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        ("train_audio_seconds_per_second", "training throughput (audio s per s)", True, False),
        ("n_params", "parameters", False, True),
    )
    for ax, (field, label, higher_is_better, log) in zip(axes, panels, strict=True):
        placed = [j for j in jobs if isinstance(j.summary.get(field), int | float)]
        done = [j for j in placed if j.cer is not None]
        points = [(float(j.summary[field]), j.cer) for j in done]
        for job, (x, y) in zip(done, points, strict=True):
            hollow = job.status != "ok"
            ax.scatter(x, y, facecolors="none" if hollow else "tab:blue", edgecolors="tab:blue")
            _label(ax, job.label(keys), (x, y))
        best = frontier(points, higher_x_is_better=higher_is_better)
        if best:
            ax.plot(
                [points[i][0] for i in best],
                [points[i][1] for i in best],
                color="tab:orange",
                marker="o",
                markerfacecolor="none",
                markersize=11,
                label="frontier (no job better on both)",
            )
            ax.legend(fontsize=7, loc="best")
        ax.margins(x=0.15, y=0.12)
        _mark_failed_at_top(ax, [float(j.summary[field]) for j in placed if j.cer is None])
        _not_shown(ax, [j for j in jobs if j not in placed])
        if log:
            _log_axis_at(ax, sorted({x for x, _ in points}))
        ax.set_xlabel(label + (" (higher is better)" if higher_is_better else ""))
        ax.set_ylabel("best dev CER")
        ax.grid(alpha=0.3)
    fig.suptitle("Pareto: dev CER against speed and size")
    return fig


def _log_axis_at(ax: Any, values: list[float]) -> None:
    """A log x axis labelled at the values themselves (1.47M, 2.66M) when there are few of
    them: matplotlib's minor labels between two close values overlap."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    ax.set_xscale("log")
    if 0 < len(values) <= 8:
        ax.set_xticks(values)
        ax.xaxis.set_major_formatter(EngFormatter(places=2, sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())


def learning_curves(jobs: list[Job], keys: list[str]) -> Figure:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    axis_of = (
        ("step", "step", lambda p: p.step),
        ("training audio (hours)", "audio_hours", lambda p: p.audio_hours),
        ("wall clock (minutes)", "minutes", lambda p: p.minutes),
    )
    colours = plt.get_cmap("tab20").colors
    for ax, (label, _, x_of) in zip(axes, axis_of, strict=True):
        for n, job in enumerate(jobs):
            points = [p for p in job.curve if x_of(p) is not None]
            style = "-" if job.status == "ok" else "--"
            name = job.label(keys) + ("" if job.status == "ok" else f" ({job.status})")
            if not points:  # in the legend all the same, so a failed job is not lost
                ax.plot([], [], color=FAILED_COLOR, ls=style, marker="x", label=name)
                continue
            ax.plot(
                [x_of(p) for p in points],
                [p.cer for p in points],
                color=colours[n % len(colours)],
                ls=style,
                marker=".",
                label=name,
            )
        if not any(x_of(p) is not None for j in jobs for p in j.curve):
            ax.text(0.5, 0.5, "not logged by these runs", ha="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dev CER")
    if 0 < len(jobs) <= 20:
        axes[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("learning curves (dashed: failed or interrupted)")
    return fig


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
