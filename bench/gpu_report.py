"""The GPU benchmark's targets and its printed report, from its results (bench/gpu.py's JSON).

The table and target helpers are the CPU benchmark's (bench/report.py)."""

from __future__ import annotations

from bench.gpu_steps import BASELINE_PRECISION, PRECISIONS
from bench.measure import median
from bench.report import fmt, fraction_of_peak, meets, print_columns, print_targets
from bench.sides import ratio


def find_step(results: dict, side: str, batch: int, precision: str) -> dict | None:
    """The step phase's entry for a configuration, if it has timed windows."""
    for row in results.get("step", {}).get("configs", []):
        if (row["side"], row["batch"], row["precision"]) == (side, batch, precision):
            return row if row["windows"] else None
    return None


def peak_fraction(results: dict, row: dict | None, precision: str) -> float | None:
    """A step's fraction of the matmul peak of its precision (the baseline's: fp32)."""
    if row is None or row.get("median") is None:
        return None
    key = "fp32" if precision == BASELINE_PRECISION else precision.partition("/")[0]
    peak = results["matmul_peak_gflops"].get(key)
    if not peak:
        return None
    return fraction_of_peak(row["median"], results["train_gflop_per_audio_second"], peak)


def sync_count(row: dict | None) -> float | None:
    """Host syncs plus device-to-host copies per profiled step (None: no CUDA trace)."""
    prof = (row or {}).get("profile")
    if not prof or not prof.get("cuda_events_seen"):
        return None
    return prof["syncs"] + prof["dtoh"]


# ------------------------------------------------------------------------------------ targets


def targets(results: dict) -> list[dict]:
    """Each target the results can be held to: its value, and whether it is met."""
    rows = []

    def add(name, base, prod, value, direction, target):
        rows.append(
            {"name": name, "baseline": base, "product": prod, "value": value,
             "target": f"{direction} {target}", "met": meets(value, direction, target)}
        )  # fmt: skip

    e, ev = results.get("e2e"), results.get("eval")
    if e:
        b, p = e["baseline"]["median"], e["product"]["median"]
        name = f"end to end audio s/s at batch {e['batch_size']}, product / baseline"
        add(name, b, p, ratio(p, b), ">=", 2.0)
    if "step" in results:
        step_targets(results, add)
    if ev:
        b, p = ev["baseline"]["rtf_warm"], ev["product"]["rtf_warm"]
        add("warm evaluation RTF, product / baseline", b, p, ratio(p, b), "<=", 0.5)
    if e:
        b, p = e["baseline"]["peak_pss_mib_max"], e["product"]["peak_pss_mib_max"]
        add("host memory (PSS) training, product / baseline", b, p, ratio(p, b), "<=", 1.0)
    if ev:
        b, p = ev["baseline"]["peak_pss_mib"], ev["product"]["peak_pss_mib"]
        add("host memory (PSS) evaluation, product / baseline", b, p, ratio(p, b), "<=", 1.0)
    return rows


def step_targets(results: dict, add) -> None:
    """The product's step: how it scales with the batch, its fraction of each precision's
    matmul peak at the largest batch, and its syncs at the smallest and the largest."""
    prec = results["precision_default"]
    small, large = min(results["plan"]["batches"]), max(results["plan"]["batches"])
    lo = find_step(results, "product", small, prec)
    hi = find_step(results, "product", large, prec)
    lo_rate, hi_rate = lo and lo["median"], hi and hi["median"]
    name = f"product step ({prec}): batch {large} / batch {small} audio s/s"
    add(name, lo_rate, hi_rate, ratio(hi_rate, lo_rate), ">=", 8.0)
    for p in PRECISIONS:
        row = find_step(results, "product", large, p)
        name = f"product step at batch {large}, {p}: fraction of the {p} matmul peak"
        add(name, None, row and row["median"], peak_fraction(results, row, p), ">=", 0.05)
    for batch in (small, large):
        prod = sync_count(find_step(results, "product", batch, prec))
        base = sync_count(find_step(results, "baseline", batch, BASELINE_PRECISION))
        name = f"product host syncs + device-to-host copies per step, batch {batch}"
        add(name, base, prod, prod, "==", 0)


# ------------------------------------------------------------------------------------- report


def print_report(results: dict) -> None:
    mach = results["machine"]
    peaks = results["matmul_peak_gflops"]
    print(
        f"\nmachine: {mach.get('gpu', mach['device'])}, torch {mach['torch']}, "
        f"CUDA {mach.get('cuda', '-')}, cuDNN {mach.get('cudnn', '-')}, {mach['date']}"
    )
    print(
        "matmul peaks measured here (TFLOP/s): "
        + ", ".join(f"{k} {v / 1000:.2f}" for k, v in peaks.items())
        + f"; a training step: {results['train_gflop_per_audio_second']:.2f} GFLOP per audio "
        f"second; product precision: {results['precision_default']}"
    )
    if results.get("step"):
        print_step_table(results)
    print_run_table(results)
    print_targets(results["targets"], "value")


STEP_COLUMNS = ("side", "precision", "batch", "audio s/s", "x small", "of peak", "ms/step",
                "GPU MiB", "syncs", "DtoH", "HtoD pg", "launches", "GPU busy", "loss")  # fmt: skip


def print_step_table(results: dict) -> None:
    """A row per step configuration, then the sync sites of those profiled."""
    z = results["plan"]["size"]
    print(
        f"\nstep alone (batches on the device; {z['n_cnn']} CNN blocks, {z['n_rnn']} GRUs "
        f"of {z['rnn_dim']}, {z['n_mels']} mels):"
    )
    configs = results["step"]["configs"]
    print_columns([STEP_COLUMNS, *(step_cells(results, row) for row in configs)], right=True)
    sites = {(r["side"], r["batch"]): r.get("sync_sites") for r in configs}
    for (side, batch), where in sites.items():
        if where:
            print(f"  sync sites, {side} batch {batch} (over the profiled steps): {where}")


def step_cells(results: dict, row: dict) -> tuple[str, ...]:
    """One configuration's cells; "x small" is its rate over its side's at the smallest batch
    in the side's default precision, and the trace's columns are "n/a" without a CUDA trace."""
    if not row["windows"]:
        what = "skipped" if "skipped" in row else "error"
        return (row["side"], row["precision"], str(row["batch"]), what, *[""] * 10)
    own = results["precision_default"] if row["side"] == "product" else BASELINE_PRECISION
    ref = find_step(results, row["side"], min(results["plan"]["batches"]), own)
    prof = row.get("profile") or {}
    seen = prof.get("cuda_events_seen")
    return (
        row["side"],
        row["precision"],
        str(row["batch"]),
        fmt(row["median"], 1),
        fmt(ratio(row["median"], ref and ref["median"])),
        fmt(peak_fraction(results, row, row["precision"]), 3),
        fmt(row.get("step_ms"), 1),
        fmt(row.get("gpu_peak_mib"), 0),
        *[
            fmt(prof.get(k), 1) if seen else "n/a"
            for k in ("syncs", "dtoh", "htod_pageable", "launches")
        ],
        fmt(ratio(prof.get("gpu_kernel_ms"), row.get("step_ms"))) if seen else "n/a",
        fmt(median(row["losses"]), 2),
    )


def print_run_table(results: dict) -> None:
    """End to end and evaluation, side by side: each side's figure and their ratio."""
    e, ev = results.get("e2e"), results.get("eval")
    rows = [("", "baseline", "product", "product/baseline")]
    if e:
        b, p = e["baseline"], e["product"]
        label = f"end to end audio s/s, batch {e['batch_size']} (median)"
        rows.append((label, fmt(b["median"], 1), fmt(p["median"], 1),
                     fmt(ratio(p["median"], b["median"]))))  # fmt: skip
        b, p = b["peak_pss_mib_max"], p["peak_pss_mib_max"]
        rows.append(("  host peak PSS MiB (training)", fmt(b, 0), fmt(p, 0), fmt(ratio(p, b))))
    if ev:
        b, p = ev["baseline"], ev["product"]
        for key, label, d in (
            ("rtf_cold", "eval RTF, cold pass", 4),
            ("rtf_warm", "eval RTF, warm pass", 4),
            ("cer", "  test CER", 3),
            ("peak_pss_mib", "  host peak PSS MiB (evaluation)", 0),
        ):
            rows.append((label, fmt(b[key], d), fmt(p[key], d), fmt(ratio(p[key], b[key]))))
    if len(rows) > 1:
        print()
        print_columns(rows, right=True)
