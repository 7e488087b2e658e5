"""Summaries of the benchmark's runs, the targets they are held to, and the printed table.

The helpers that print (fmt, print_columns, print_targets) and judge (meets, fraction_of_peak)
are shared with the GPU benchmark's report, bench/gpu_report.py."""

from __future__ import annotations

import math

from bench.measure import median
from bench.sides import Run, ratio

# (name, phase, key, direction, target): product / baseline must be >= or <= target.
TARGETS = [
    ("training throughput, seed size", "throughput", "median", ">=", 2.0),
    ("dev CER after the race budget", "race", "dev_cer", "<=", 0.7),
    ("evaluation real-time factor", "rtf", "rtf", "<=", 0.33),
    ("peak memory, training at seed size", "throughput", "peak_pss_mib", "<=", 1.0),
    ("peak memory, training in the race", "race", "peak_pss_mib", "<=", 1.0),
]


def progress(what: str, run: Run) -> None:
    parts = [f"{run.finished.seconds:.0f} s", f"peak {run.finished.peak_pss_mib:.0f} MiB"]
    if run.windows:
        parts.append(f"median {median(run.windows):.2f} audio s/s")
    if run.dev_cer is not None:
        parts.append(f"best dev CER {run.dev_cer:.4f}")
    if run.rtf is not None:
        parts.append(f"RTF {run.rtf:.4f}, CER {run.cer:.4f}")
    print(f"[bench] {what}: {', '.join(parts)}", flush=True)


def run_stats(runs: list[Run]) -> dict:
    """One side's runs in one phase: medians over all of its timed windows and rounds."""
    windows = [w for r in runs for w in r.windows]
    return {
        "median": median(windows),
        "windows": windows,
        "round_medians": [median(r.windows) for r in runs],
        "peak_pss_mib": max(r.finished.peak_pss_mib for r in runs),
        "peak_rss_mib": max(r.finished.peak_rss_mib for r in runs),
        "process_seconds": [r.finished.seconds for r in runs],
        "steps": [r.steps for r in runs],
        "dev_cer": min((r.dev_cer for r in runs if r.dev_cer is not None), default=None),
        "final_dev_cer": runs[-1].final_dev_cer,
        "rtf": median([r.rtf for r in runs if r.rtf is not None]),
        "rtfs": [r.rtf for r in runs if r.rtf is not None],
        "cer": runs[-1].cer,
    }


def targets(results: dict) -> list[dict]:
    rows = []
    for name, phase, key, direction, target in TARGETS:
        if phase not in results:
            continue
        base, prod = results[phase]["baseline"][key], results[phase]["product"][key]
        r = ratio(prod, base)
        met = meets(r, direction, target)
        rows.append(
            {"name": name, "baseline": base, "product": prod, "ratio": r,
             "target": f"{direction} {target}", "met": met}
        )  # fmt: skip
    return rows


def meets(value: float | None, direction: str, target: float) -> bool | None:
    """`value` against `direction target` (">=", "<=" or "=="); None: nothing to judge."""
    if value is None:
        return None
    if direction == ">=":
        return value >= target
    return value <= target if direction == "<=" else value == target


def fmt(x, digits: int = 2) -> str:
    """A table cell: floats with thousands separators and `digits` decimals; "-" for a missing
    or non-finite value."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}" if isinstance(x, float) else str(x)


def print_columns(rows: list[tuple[str, ...]], right: bool = False) -> None:
    """Rows of cells in aligned columns, two spaces apart; `right`: every column but the first
    (the labels) right-aligned, as numbers read best."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = enumerate(zip(row, widths, strict=True))
        print("  ".join(c.rjust(w) if right and i else c.ljust(w) for i, (c, w) in cells))


def print_targets(rows: list[dict], value: str) -> None:
    """Each target row's `value` and verdict."""
    print("\ntargets:")
    for row in rows:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[row["met"]]
        print(f"  {row['name']}: {fmt(row[value], 3)} (target {row['target']}): {verdict}")


def print_table(results: dict) -> None:
    peak = results["matmul_peak_gflops"]
    flops = results["train_gflop_per_audio_second"]
    print(f"\nmachine: {results['machine']}")
    print(f"fp32 matmul peak measured here: {peak:.1f} GFLOP/s; a training step costs "
          f"{flops:.2f} GFLOP per second of audio (matmul and conv FLOPs, seed size)")  # fmt: skip
    rows = [("", "baseline", "product", "product/baseline", "target", "")]
    t = results.get("throughput")
    if t:
        b, p = t["baseline"]["median"], t["product"]["median"]
        rows.append(_row("train audio s/s, seed size (median)", b, p, ">= 2.0"))
        rows.append(
            _row(
                "  fraction of fp32 matmul peak",
                fraction_of_peak(b, flops, peak),
                fraction_of_peak(p, flops, peak),
                "",
            )
        )
        rows.append(_row("  peak memory MiB (PSS)", t["baseline"]["peak_pss_mib"],
                         t["product"]["peak_pss_mib"], "<= 1.0", 0))  # fmt: skip
    r = results.get("race")
    if r:
        label = f"best dev CER after {r['minutes']:g} min, small"
        rows.append(_row(label, r["baseline"]["dev_cer"], r["product"]["dev_cer"], "<= 0.7", 4))
        rows.append(_row("  steps in the budget", r["baseline"]["steps"][0],
                         r["product"]["steps"][0], ""))  # fmt: skip
        rows.append(_row("  peak memory MiB (PSS)", r["baseline"]["peak_pss_mib"],
                         r["product"]["peak_pss_mib"], "<= 1.0", 0))  # fmt: skip
    e = results.get("rtf")
    if e:
        rows.append(_row("eval real-time factor (median)", e["baseline"]["rtf"],
                         e["product"]["rtf"], "<= 0.33", 4))  # fmt: skip
        rows.append(_row("  test CER", e["baseline"]["cer"], e["product"]["cer"], "", 4))
        if "product int8" in e:
            q = e["product int8"]
            rows.append(_row("  int8 RTF | CER (vs fp32 product)", e["product"]["rtf"], q["rtf"],
                             "", 4))  # fmt: skip
            rows.append(_row("  int8 CER cost", e["product"]["cer"], q["cer"], "", 4))
    print_columns(rows)
    lv = results.get("levers")
    if lv:
        ref = lv["product (all levers)"]["median"]
        print("\nlevers at seed size (audio s/s, median; ratio to all levers on):")
        for name, s in lv.items():
            print(f"  {name:40s} {fmt(s['median'])}  {fmt(ratio(s['median'], ref))}x"
                  f"  peak {s['peak_pss_mib']:.0f} MiB")  # fmt: skip
    aug = results.get("augment")
    if aug:
        ref = aug["specaugment (the default)"]["median"]
        print("\naugment presets at the quick start's size (audio s/s, median; ratio to default):")
        for name, s in aug.items():
            print(f"  {name:40s} {fmt(s['median'])}  {fmt(ratio(s['median'], ref))}x")
    sc = results.get("scale")
    if sc:
        from bench.scale import table as scale_table

        print("\nthe loader at scale (bench/scale.py):")
        print("\n".join(scale_table(sc)))
    print_targets(results["targets"], "ratio")


def fraction_of_peak(audio_per_s, gflop_per_audio_s, peak_gflops):
    """The matmul and conv FLOP/s a training rate (audio s/s) reaches, over a matmul peak."""
    if audio_per_s is None:
        return None
    return audio_per_s * gflop_per_audio_s / peak_gflops


def _row(label: str, base, prod, target: str, digits: int = 2) -> tuple:
    r = ratio(float(prod), float(base)) if base is not None and prod is not None else None
    rtxt = f"{r:.3f}x" if r is not None else "-"
    return (label, fmt(base, digits), fmt(prod, digits), rtxt, target, "")
