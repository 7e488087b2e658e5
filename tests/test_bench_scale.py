"""The benchmark's scale phase (bench/scale.py) runs end to end in its smoke mode: start-up at
two manifest sizes, the workers' memory, shards at two corpus sizes, every decode path. No
figure is asserted: they belong to the benchmark's report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench import run_smoke


@pytest.mark.slow
def test_bench_scale_phase_smoke_measures_every_part(tmp_path: Path):
    results = run_smoke("run.py", tmp_path, "--phases=scale")
    scale = results["scale"]  # the loader at scale: start-up, workers, shards, decode paths
    sizes = scale["plan"]["sizes"]
    assert set(scale["startup"]) == {f"{n} {s}" for n in sizes for s in ("built", "cached")}
    assert scale["workers"]["rows"] == scale["plan"]["worker_rows"]
    assert len(scale["workers"]["worker_uss_after_epoch_mib"]) == 4
    assert [v["utterances"] for v in scale["shards"].values()] == scale["plan"]["shard_sizes"]
    assert {(p["format"], p["source_rate"]) for p in scale["decode"]["paths"]} == {
        (f, r) for f in ("wav", "flac", "mp3", "opus") for r in (16000, 48000)
    }
    assert all("error" not in p and p["workers_for_anchor"] >= 1 for p in scale["decode"]["paths"])
    assert len(scale["targets"]) == 6
