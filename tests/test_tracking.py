"""Tracker and offline-run reader tests: W&B offline only, everything under tmp_path.

Each Tracker test reads the `.wandb` file back, because the bugs that matter here (runs merging,
runs never finished, values not reaching W&B) are invisible in our own files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb

from asr.tracking import LoggerConfig, Tracker, has_wandb_credentials, resolve_mode
from tests.wandb_offline import OfflineRunFormatError, read_offline_run

_ENV_TO_CLEAR = ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC", "WANDB_PROJECT")


@pytest.fixture(autouse=True)
def isolated_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep W&B away from $HOME, the network and other tests' runs."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name, sub in (("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "wandb_config")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    yield
    if wandb.run is not None:  # a failing test must not leak its run into the next one
        wandb.run.finish()


def offline_cfg(**overrides: object) -> LoggerConfig:
    values: dict[str, object] = {"project": "test-proj", "mode": "offline"}
    values.update(overrides)
    return LoggerConfig(**values)  # type: ignore[arg-type]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# -- config and mode ------------------------------------------------------------------------


def test_logger_config_rejects_bad_values_with_one_line_naming_the_field() -> None:
    with pytest.raises(ValueError) as e:
        LoggerConfig(mode="onlin")
    assert str(e.value) == "mode must be one of auto|online|offline|disabled (got 'onlin')"
    with pytest.raises(ValueError, match=r"^kind must be one of wandb\|none \(got 'tb'\)$"):
        LoggerConfig(kind="tb")


def test_resolve_mode_env_wins() -> None:
    assert resolve_mode("online", {"WANDB_MODE": "offline"}) == "offline"
    assert resolve_mode("auto", {"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}) == "disabled"
    assert resolve_mode("offline", {"WANDB_MODE": "online"}) == "online"
    assert resolve_mode("auto", {"WANDB_MODE": "dryrun"}) == "offline"  # legacy spelling
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_mode("auto", {"WANDB_MODE": "sometimes"})


def test_resolve_mode_explicit_modes_pass_through(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    for mode in ("online", "offline", "disabled"):
        assert resolve_mode(mode, env) == mode


def test_resolve_mode_auto_is_offline_without_credentials(tmp_path: Path) -> None:
    assert resolve_mode("auto", {"HOME": str(tmp_path)}) == "offline"
    assert resolve_mode("auto", {"HOME": str(tmp_path), "WANDB_API_KEY": "  "}) == "offline"


def test_resolve_mode_auto_is_online_with_api_key(tmp_path: Path) -> None:
    assert resolve_mode("auto", {"HOME": str(tmp_path), "WANDB_API_KEY": "k" * 40}) == "online"


def test_resolve_mode_auto_reads_netrc(tmp_path: Path) -> None:
    netrc_file = tmp_path / "my_netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc_file.chmod(0o600)
    assert resolve_mode("auto", {"NETRC": str(netrc_file)}) == "online"
    # ~/.netrc, with HOME from the given env
    (tmp_path / ".netrc").write_text(netrc_file.read_text())
    (tmp_path / ".netrc").chmod(0o600)
    assert resolve_mode("auto", {"HOME": str(tmp_path)}) == "online"
    # The entry must be for the configured server's host.
    other = {"HOME": str(tmp_path), "WANDB_BASE_URL": "https://wandb.example.org:8443"}
    assert resolve_mode("auto", other) == "offline"
    (tmp_path / ".netrc").write_text("machine wandb.example.org login u password p\n")
    assert resolve_mode("auto", other) == "online"


def test_broken_netrc_means_no_credentials(tmp_path: Path) -> None:
    bad = tmp_path / "netrc"
    bad.write_text("machine\n")
    assert not has_wandb_credentials({"NETRC": str(bad)})
    assert not has_wandb_credentials({"NETRC": str(tmp_path / "missing")})


# -- a full offline run -----------------------------------------------------------------------


def test_offline_run_files_and_wandb_agree(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = offline_cfg(group="sweep-1", name="lr0.1", tags=["ds2", "es"])
    config = {"optim": {"lr": 0.1}, "model": {"n_rnn": 3}, "seed": 7}
    with Tracker(run_dir, cfg, config) as tracker:
        assert tracker.wandb_enabled
        for step, loss in ((0, 3.5), (10, 2.25), (20, 1.5)):
            tracker.log({"train/loss": loss, "lr": 0.1}, step=step)
        tracker.log({"val/wer": 0.75}, step=20)
        tracker.log_table("samples", ["ref", "hyp"], [["hola mundo", "ola mundo"]], step=20)
        tracker.update_summary(best_wer=0.75, best_step=20)
    assert wandb.run is None

    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [(x["step"], x.get("train/loss")) for x in lines] == [
        (0, 3.5),
        (10, 2.25),
        (20, 1.5),
        (20, None),
    ]
    assert all(isinstance(x["time"], float) for x in lines)
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["error"] is None
    assert summary["best_wer"] == 0.75 and summary["run_id"] == tracker.run_id
    assert summary["wandb_mode"] == "offline"

    assert tracker.wandb_dir is not None
    assert tracker.wandb_dir.name.startswith("offline-run-")
    assert tracker.wandb_dir.parent == run_dir / "wandb"
    run = read_offline_run(tracker.wandb_dir)
    assert run.complete and run.exit_code == 0
    assert (run.run_id, run.project) == (tracker.run_id, "test-proj")
    assert (run.name, run.group, run.tags) == ("lr0.1", "sweep-1", ["ds2", "es"])
    assert run.config == config
    losses = [(r["step"], r["train/loss"]) for r in run.history if "train/loss" in r]
    assert losses == [(0, 3.5), (10, 2.25), (20, 1.5)]
    assert any(r.get("val/wer") == 0.75 for r in run.history)
    assert any(r.get("samples/_type") == "table-file" for r in run.history)
    assert run.summary["best_wer"] == 0.75 and run.summary["status"] == "ok"
    # The parent directory finds the same (only) run.
    assert read_offline_run(run_dir).run_id == tracker.run_id


def test_default_name_is_run_dir_name_and_auto_mode_goes_offline(tmp_path: Path) -> None:
    run_dir = tmp_path / "2024-01-01_12-00-00"
    with Tracker(run_dir, LoggerConfig(project="p"), {}) as tracker:  # mode="auto"
        tracker.log({"loss": 1.0}, step=1)
    assert tracker.mode == "offline"
    assert read_offline_run(run_dir).name == "2024-01-01_12-00-00"


def test_exception_marks_run_failed_finishes_wandb_and_propagates(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"), Tracker(run_dir, offline_cfg(), {}) as tracker:
        tracker.log({"loss": 1.0}, step=0)
        raise RuntimeError("boom")
    assert wandb.run is None
    summary = read_summary(run_dir)
    assert summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: boom"
    run = read_offline_run(tracker.wandb_dir)
    assert run.complete and run.exit_code == 1
    assert run.summary["status"] == "failed"


def test_keyboard_interrupt_marks_run_interrupted(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), Tracker(run_dir, offline_cfg(), {}):
        raise KeyboardInterrupt
    assert read_summary(run_dir)["status"] == "interrupted"
    assert wandb.run is None


def test_finish_is_idempotent_and_closes_the_tracker(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with Tracker(run_dir, offline_cfg(), {}) as tracker:
        tracker.finish("ok")
        tracker.finish("failed", "ignored")  # already finished: no effect
    assert read_summary(run_dir)["status"] == "ok"
    with pytest.raises(RuntimeError, match="finished"):
        tracker.log({"loss": 1.0}, step=1)
    with pytest.raises(ValueError, match="status"):
        tracker.finish("done")


def test_reserved_metric_names_are_refused(tmp_path: Path) -> None:
    with (
        Tracker(tmp_path / "run", LoggerConfig(kind="none"), {}) as tracker,
        pytest.raises(ValueError, match="reserved"),
    ):
        tracker.log({"step": 3}, step=3)


# -- several runs in one process ---------------------------------------------------------------


def test_sequential_trackers_do_not_merge(tmp_path: Path) -> None:
    ids = []
    for i in range(2):
        with Tracker(tmp_path / f"job{i}", offline_cfg(), {"job": i}) as tracker:
            tracker.log({"loss": float(10 * i)}, step=0)
            tracker.log({"loss": float(10 * i + 1)}, step=1)
        ids.append(tracker.run_id)
    assert ids[0] != ids[1]
    for i, run_id in enumerate(ids):
        run = read_offline_run(tmp_path / f"job{i}")
        assert run.run_id == run_id
        assert run.config == {"job": i}
        assert [r["loss"] for r in run.history] == [10.0 * i, 10.0 * i + 1]


def test_a_leaked_run_is_finished_not_reused(tmp_path: Path) -> None:
    leaked = wandb.init(
        project="test-proj",
        dir=str(tmp_path),
        mode="offline",
        settings=wandb.Settings(silent=True, console="off"),
    )
    leaked.log({"leaked": 1})
    with Tracker(tmp_path / "job", offline_cfg(), {}) as tracker:
        tracker.log({"loss": 1.0}, step=0)
    assert tracker.run_id != leaked.id
    run = read_offline_run(tracker.wandb_dir)
    assert run.run_id == tracker.run_id
    assert all("leaked" not in r for r in run.history)


def test_resume_appends_to_the_same_files_and_wandb_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with Tracker(run_dir, offline_cfg(), {"lr": 0.1}) as first:
        first.log({"loss": 3.0}, step=1)
        first.log({"loss": 2.0}, step=2)
        first.update_summary(best_wer=0.5)
    with Tracker(run_dir, offline_cfg(), {"lr": 0.1}, run_id=first.run_id) as second:
        assert second.summary["best_wer"] == 0.5  # kept from the first part
        second.log({"loss": 2.5}, step=2)  # resumed from an older checkpoint: step again
        second.log({"loss": 1.0}, step=3)
    assert second.run_id == first.run_id
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [(x["step"], x["loss"]) for x in lines] == [(1, 3.0), (2, 2.0), (2, 2.5), (3, 1.0)]
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["best_wer"] == 0.5
    # Offline, each part gets its own directory; both belong to the same W&B run id, and the
    # re-logged step is not dropped.
    assert first.wandb_dir != second.wandb_dir
    part1, part2 = read_offline_run(first.wandb_dir), read_offline_run(second.wandb_dir)
    assert part1.run_id == part2.run_id == first.run_id
    assert [(r["step"], r["loss"]) for r in part2.history] == [(2, 2.5), (3, 1.0)]
    assert read_offline_run(run_dir).path == second.wandb_dir  # the latest part


# -- without W&B ----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [LoggerConfig(kind="none"), offline_cfg(mode="disabled")])
def test_files_only_when_wandb_is_off(tmp_path: Path, cfg: LoggerConfig) -> None:
    run_dir = tmp_path / "run"
    with Tracker(run_dir, cfg, {"a": 1}) as tracker:
        tracker.log({"loss": 1.0}, step=0)
        tracker.log_table("samples", ["ref", "hyp"], [["a", "b"]], step=0)
        tracker.update_summary(best_wer=0.3)
    assert isinstance(tracker.run_id, str) and tracker.run_id
    assert tracker.wandb_dir is None and not tracker.wandb_enabled
    assert not (run_dir / "wandb").exists()
    assert not (tmp_path / "wandb").exists()
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 1
    summary = read_summary(run_dir)
    assert summary["status"] == "ok" and summary["wandb_mode"] == "off"
    assert summary["best_wer"] == 0.3


def test_failing_wandb_init_falls_back_to_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise wandb.errors.CommError("Failed to get resume status:\ncontext deadline exceeded")

    monkeypatch.setattr(wandb, "init", unreachable)
    run_dir = tmp_path / "run"
    with (
        caplog.at_level(logging.WARNING, logger="asr.tracking"),
        Tracker(run_dir, offline_cfg(mode="online"), {}) as tracker,
    ):
        tracker.log({"loss": 1.0}, step=0)
        tracker.update_summary(best_wer=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "CommError" in warnings[0]
    assert tracker.wandb_dir is None
    assert read_summary(run_dir)["status"] == "ok"
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 1


# -- the reader on larger and broken files ----------------------------------------------------


def test_reader_handles_records_spanning_blocks_and_rejects_corruption(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    big = "x" * 100_000  # one record over three 32 KiB blocks: first/middle/last fragments
    with Tracker(run_dir, offline_cfg(), {"big": big}) as tracker:
        for step in range(600):
            tracker.log({"loss": step / 7}, step=step)
    run = read_offline_run(tracker.wandb_dir)
    assert run.config["big"] == big
    assert [r["loss"] for r in run.history] == [step / 7 for step in range(600)]
    wandb_file = next(tracker.wandb_dir.glob("run-*.wandb"))
    assert wandb_file.stat().st_size > 3 * 32 * 1024

    broken = tmp_path / "broken" / "offline-run-20240101_000000-abc"
    broken.mkdir(parents=True)
    data = bytearray(wandb_file.read_bytes())
    data[40_000] ^= 0xFF
    (broken / "run-abc.wandb").write_bytes(bytes(data))
    with pytest.raises(OfflineRunFormatError, match="checksum"):
        read_offline_run(broken, wait_s=0)
    (broken / "run-abc.wandb").write_bytes(b"not a wandb file")
    with pytest.raises(OfflineRunFormatError, match="header"):
        read_offline_run(broken, wait_s=0)
    with pytest.raises(FileNotFoundError):
        read_offline_run(tmp_path / "nothing-here")
