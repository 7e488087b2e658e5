"""Hydra wiring: register the schemas of `asr.schema` and turn a composed config into them.

Every YAML in `conf/<group>/` starts from its schema `base_<group>`, so a typo'd key or a wrong
type is refused by Hydra before any work. Value checks run when the DictConfig becomes the
plain dataclasses (`to_train_config`), and checks that span groups in `check_cross_fields`;
both raise `ConfigError` with one line that names the key.

Only this module and the entry points import Hydra; everything else takes the dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from asr.schema import (
    AugmentConfig,
    ConfigError,
    DataConfig,
    EvaluateConfig,
    LoggerConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
)

GROUPS = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "augment": AugmentConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
}


# Path-valued keys would nest folders in a job's name; summary.json records them instead.
JOB_DIR_EXCLUDE = frozenset(
    {
        "data.cache_dir",
        "data.root",
        "data.alphabet",
        "data.train_manifest",
        "data.dev_manifest",
        "data.test_manifest",
        "trainer.resume",
        "trainer.init_from",
    }
)
JOB_DIR_MAX = 120  # characters; file systems allow 255, people read far fewer
# What sweeps usually vary comes first, so a name cut to JOB_DIR_MAX still shows it.
JOB_DIR_FIRST = ("model", "optim", "seed", "data.batch_size", "augment")


def job_dirname(overrides: list[str]) -> str:
    """A sweep job's folder name from its overrides: `data.batch_size-8__model.n_cnn-1`.

    No `=` and no `,`, so the path goes back through a Hydra command line unquoted
    (`evaluate.py ckpt=<job dir>`). Floats are shortened (Optuna suggests 0.21455680991172585),
    and a name that is still too long is cut and made unique by a hash of all overrides.
    """

    def order(item: str) -> tuple[bool, str]:
        return (not item.lstrip("+~").startswith(JOB_DIR_FIRST), item)

    parts = []
    for item in sorted((str(o) for o in overrides), key=order):
        key, _, value = item.partition("=")
        # +sweep=... / +hparams_search=... define the sweep: the same for all of its jobs
        if key.lstrip("+~") in JOB_DIR_EXCLUDE or key.startswith(("hydra", "+sweep", "+hparams")):
            continue
        try:
            if "." in value or "e" in value.lower():
                value = f"{float(value):.6g}"
        except ValueError:
            pass
        parts.append(f"{key.lstrip('+~')}-{value.replace('/', '_').replace(',', '_')}")
    name = "__".join(parts) or "default"
    if len(name) > JOB_DIR_MAX:
        digest = hashlib.sha1("\n".join(sorted(map(str, overrides))).encode()).hexdigest()[:8]
        name = f"{name[: JOB_DIR_MAX - 10]}__{digest}"
    return name


def register_configs() -> None:
    """Register `base_train`, `base_evaluate`, one `base_<group>` schema per group, and the
    `asr.job_dir` resolver that names sweep job folders."""
    OmegaConf.register_new_resolver("asr.job_dir", job_dirname, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    for group, schema in GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)


def _to_object(node: Any, prefix: str) -> Any:
    try:
        return OmegaConf.to_object(node)
    except ValueError as e:  # raised by a schema's __post_init__, already one line
        raise ConfigError(f"{prefix}.{e}") from None


def refuse_unknown_keys(node: Any, schema: type, prefix: str = "") -> None:
    """`+model.n_rnnn=3` adds a key even to a schema-backed config, and nothing would read it:
    refuse it, like a typo without the `+`."""
    known = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        name = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{name} is not a known setting{hint}")
        nested = known[key].default_factory
        if dataclasses.is_dataclass(nested) and isinstance(node[key], DictConfig):
            refuse_unknown_keys(node[key], nested, f"{name}.")


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """Resolve and check a composed config; raise ConfigError naming the culprit key."""
    refuse_unknown_keys(cfg, TrainConfig)
    groups = {group: _to_object(cfg[group], group) for group in GROUPS}
    train_cfg = TrainConfig(**groups, seed=int(cfg.seed))
    check_cross_fields(train_cfg)
    return train_cfg


def to_evaluate_config(cfg: DictConfig) -> EvaluateConfig:
    refuse_unknown_keys(cfg, EvaluateConfig)
    logger = _to_object(cfg.logger, "logger")
    fields = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "logger"}
    try:
        return EvaluateConfig(**fields, logger=logger)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_cross_fields(cfg: TrainConfig) -> None:
    """Checks that involve more than one group."""
    if cfg.model.n_feats != cfg.data.n_mels:
        raise ConfigError(
            f"model.n_feats ({cfg.model.n_feats}) must equal data.n_mels ({cfg.data.n_mels})"
        )
    if cfg.trainer.precision == "bf16" and cfg.trainer.device == "cpu":
        raise ConfigError("trainer.precision=bf16 is for CUDA; on CPU it is slower than fp32")
