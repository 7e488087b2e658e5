import csv
import json
import re
from pathlib import Path

import pytest

from asr.report import load_jobs, make_report, swept_keys
from asr.report.plots import FAILED_COLOR, frontier, learning_curves, parallel_coordinates, pareto
from asr.report.screenshot import find_browser, screenshot


def fake_job(sweep: Path, overrides: dict[str, str], cer: float | None, status: str = "ok") -> None:
    name = "__".join(f"{k}-{v}" for k, v in overrides.items())
    job = sweep / name
    job.mkdir(parents=True)
    summary = {
        "status": status,
        "overrides": [f"{k}={v}" for k, v in overrides.items()] + ["trainer.max_steps=5"],
        "best_dev_cer": cer,
        "best_dev_wer": None if cer is None else min(1.0, 2 * cer),
        "test_cer": None if cer is None else cer + 0.01,
        "n_params": 1000 * int(overrides.get("model.n_rnn", 1)),
        "wall_seconds": 12.5,
        "train_audio_seconds_per_second": 40.0,
    }
    if status == "failed":
        summary["error"] = "ConfigError: model.n_rnn must be >= 1 (got 0)"
    (job / "summary.json").write_text(json.dumps(summary))
    batch = int(overrides.get("data.batch_size", 8))
    lines = [  # a job with twice the batch sees twice the audio per step
        {
            "step": s,
            "time": 1000.0 + 3 * s,
            "dev/cer": (cer or 1.0) + 1 / s,
            "train/audio_hours": s * batch * 2.0 / 3600,
            "time/minutes": s / 20,
        }
        for s in (10, 20, 30)
    ]
    (job / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines if cer))


def test_report_table_plots_and_summary(tmp_path):
    for n_cnn in (1, 3):
        for n_rnn in (1, 3):
            for seed in (1, 2):
                cer = 0.5 - 0.05 * n_cnn - 0.02 * n_rnn + 0.01 * seed
                fake_job(tmp_path, {"model.n_cnn": n_cnn, "model.n_rnn": n_rnn, "seed": seed}, cer)
    fake_job(tmp_path, {"model.n_cnn": 1, "model.n_rnn": 0, "seed": 1}, None, status="failed")

    jobs = load_jobs(tmp_path)
    assert len(jobs) == 9
    assert swept_keys(jobs) == ["model.n_cnn", "model.n_rnn", "seed"]  # max_steps is constant

    text = make_report(tmp_path)
    assert "9 jobs (1 failed, 8 ok)" in text
    assert "best: dev CER 0.3000 in model.n_cnn-3__model.n_rnn-3__seed-1" in text
    assert "python train.py model.n_cnn=3 model.n_rnn=3 seed=1 trainer.max_steps=5" in text
    assert "failed: model.n_cnn-1__model.n_rnn-0__seed-1: ConfigError" in text

    with open(tmp_path / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cers = [float(r["best_dev_cer"]) for r in rows if r["best_dev_cer"]]
    assert cers == sorted(cers) and len(rows) == 9
    assert rows[-1]["status"] == "failed"  # no CER: sorted last
    md = (tmp_path / "report.md").read_text()
    assert "Mean ± std over seed" in md and "0.3050 ± 0.0071" in md  # (3, 3) over seeds 1 and 2
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert plots == [
        "cer_vs_model_n_cnn.png",
        "cer_vs_model_n_rnn.png",
        "learning_curves.png",
        "parallel_coordinates.png",
        "pareto.png",
    ]
    assert all((tmp_path / "plots" / p).stat().st_size > 5000 for p in plots)

    page = (tmp_path / "report.html").read_text()
    assert page.count('<img alt="') == len(plots)  # every plot, embedded: the page stands alone
    assert page.count("data:image/png;base64,") == len(plots)
    assert not re.search(r"(src|href)=\"(https?:|/|plots/)", page)  # nothing to fetch
    assert page.count("<tr class=") == 9
    assert '<tr class="failed">' in page and "model.n_cnn-1__model.n_rnn-0__seed-1" in page


def _sweep(tmp_path: Path) -> list:
    """Two batch sizes, one job failed before its first evaluation, one interrupted."""
    fake_job(tmp_path, {"data.batch_size": 8, "model.n_rnn": 1}, 0.30)
    fake_job(tmp_path, {"data.batch_size": 16, "model.n_rnn": 1}, 0.25)
    fake_job(tmp_path, {"data.batch_size": 16, "model.n_rnn": 3}, 0.40, status="interrupted")
    fake_job(tmp_path, {"data.batch_size": 8, "model.n_rnn": 3}, None, status="failed")
    return load_jobs(tmp_path)


def test_learning_curves_compare_jobs_by_audio_hours_and_minutes(tmp_path):
    jobs = _sweep(tmp_path)
    fig = learning_curves(jobs, swept_keys(jobs))
    by_step, by_audio, by_clock = fig.axes[:3]
    assert by_audio.get_xlabel() == "training audio (hours)"
    assert by_clock.get_xlabel() == "wall clock (minutes)"
    line = {ln.get_label(): ln for ln in by_audio.get_lines()}
    small, big = line["data.batch_size=8, model.n_rnn=1"], line["data.batch_size=16, model.n_rnn=1"]
    # the same steps, but the batch of 16 has seen twice the audio at each of them
    assert list(by_step.get_lines()[0].get_xdata()) == [10, 20, 30]
    assert list(big.get_xdata()) == pytest.approx([2 * x for x in small.get_xdata()])
    assert list(small.get_xdata()) == pytest.approx([s * 16 / 3600 for s in (10, 20, 30)])


def test_failed_and_interrupted_jobs_stay_visible_in_every_view(tmp_path):
    jobs = _sweep(tmp_path)
    keys = swept_keys(jobs)
    failed, interrupted = "data.batch_size=8, model.n_rnn=3", "data.batch_size=16, model.n_rnn=3"

    fig = learning_curves(jobs, keys)
    for ax in fig.axes[:3]:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert lines[f"{failed} (failed)"].get_color() == FAILED_COLOR  # in the legend
        assert lines[f"{interrupted} (interrupted)"].get_linestyle() == "--"

    fig = parallel_coordinates(jobs, keys)
    red = [ln for ln in fig.axes[0].get_lines() if ln.get_color() == FAILED_COLOR]
    assert len(red) == 1 and red[0].get_ydata()[-1] > 1  # ends on the "failed" tick
    assert "failed" in [t.get_text() for t in fig.axes[0].texts]

    fig = pareto(jobs, keys)
    for ax in fig.axes[:2]:
        crosses = [
            c for c in ax.collections if len(c.get_offsets()) and c.get_label() != "frontier"
        ]
        assert len(crosses) == 4  # three jobs with a CER and the failed one on the top line
        assert "failed" in [t.get_text() for t in ax.texts]


def test_frontier_keeps_only_jobs_no_other_job_beats_on_both():
    # (throughput, CER): higher throughput is better
    points = [(10.0, 0.30), (20.0, 0.25), (15.0, 0.40), (20.0, 0.26), (5.0, 0.20)]
    assert frontier(points, higher_x_is_better=True) == [4, 1]
    # (parameters, CER): fewer parameters are better
    assert frontier(points, higher_x_is_better=False) == [4]


def test_report_of_an_empty_dir_says_so(tmp_path):
    assert "no jobs" in make_report(tmp_path)


@pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium)")
def test_report_html_renders_in_headless_chromium(tmp_path):
    import matplotlib.image

    _sweep(tmp_path)
    make_report(tmp_path)
    png = screenshot(tmp_path / "report.html", tmp_path / "report.png", width=1200)
    pixels = matplotlib.image.imread(png)[..., :3]  # (H, W, 3) in [0, 1]
    height, width, _ = pixels.shape
    assert width == 1200 and height > 2000  # the window grew with the page
    ink = (pixels < 0.5).any(axis=2).mean(axis=1)  # the share of dark pixels in each row
    table, plots = ink[: height // 10], ink[height // 10 :]
    assert table.max() > 0.2  # the table's borders and text were drawn
    assert (plots > 0.002).sum() > height // 3  # and the plots' axes, lines and text below it
    red = (pixels[..., 0] > 0.95) & (pixels[..., 1] < 0.95) & (pixels[..., 2] < 0.95)
    assert red[: height // 10].any()  # the failed job's row is tinted
