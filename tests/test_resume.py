"""asr.resume.changed_settings: what a resume compares with its checkpoint."""

from __future__ import annotations

import dataclasses

from asr.resume import changed_settings
from asr.schema import TrainConfig


def state_of(cfg: TrainConfig) -> dict:
    return {"config": dataclasses.asdict(cfg)}


def test_the_settings_that_decide_what_is_trained_on_are_compared():
    saved = TrainConfig()
    assert changed_settings(state_of(saved), TrainConfig()) == []
    now = TrainConfig()
    now.data.n_mels, now.model.rnn_dim, now.data.language = 64, 256, "en"
    now.optim.lr, now.trainer.max_steps, now.data.batch_size = 1e-4, 10, 3  # not compared
    assert changed_settings(state_of(saved), now) == [
        ("data.n_mels", 128, 64),
        ("data.language", "es", "en"),
        ("model.rnn_dim", 512, 256),
    ]


def test_a_checkpoint_from_before_a_setting_existed_keeps_its_old_meaning():
    """Saved before log_floor_db existed: trained on the absolute floor (null), which the
    default (60 dB below the peak) is not; a model setting it never had is not compared."""
    state = state_of(TrainConfig())
    del state["config"]["data"]["log_floor_db"]
    del state["config"]["model"]["dropout"]
    assert changed_settings(state, TrainConfig()) == [("data.log_floor_db", None, 60.0)]
