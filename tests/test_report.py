import csv
import json
from pathlib import Path

from asr.report import load_jobs, make_report, swept_keys


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
    lines = [{"step": s, "dev/cer": (cer or 1.0) + 1 / s} for s in (10, 20, 30)] if cer else []
    (job / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


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
        "cer_vs_params.png",
        "learning_curves.png",
    ]
    assert all((tmp_path / "plots" / p).stat().st_size > 5000 for p in plots)


def test_report_of_an_empty_dir_says_so(tmp_path):
    assert "no jobs" in make_report(tmp_path)
