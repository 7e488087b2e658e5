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
import math
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from asr import cluster, distributed, ranks
from asr.data.recipes import ROOT_OPTIONAL
from asr.schema import (
    RECIPES,
    AugmentConfig,
    ConfigError,
    DataConfig,
    DecodeConfig,
    EvaluateConfig,
    LoggerConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
    TranscribeConfig,
)
from asr.text import make_vocabulary

GROUPS = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "augment": AugmentConfig,
    "trainer": TrainerConfig,
    "decode": DecodeConfig,
    "logger": LoggerConfig,
}
EVALUATE_GROUPS = {"decode": DecodeConfig, "logger": LoggerConfig}


# Path-valued keys would nest folders in a job's name; summary.json records them instead.
JOB_DIR_EXCLUDE = frozenset(
    {
        "data.cache_dir",
        "data.root",
        "data.alphabet",
        "data.train_manifest",
        "data.dev_manifest",
        "data.test_manifest",
        "data.shards_dir",
        "trainer.resume",
        "trainer.init_from",
        "decode.lm",
        "decode.lexicon",
        "ckpt",  # evaluate.py and transcribe.py
        "manifest",
        "input",
        "out",
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


def n_class_for(alphabet: str | None) -> int:
    """`${asr.n_class:${data.alphabet}}`: the model's output classes follow the alphabet."""
    try:
        return make_vocabulary(alphabet).n_class
    except ValueError as e:
        raise ConfigError(f"data.alphabet: {e}") from None


def sqrt_scaled(value: float, reference: float, actual: float | None) -> float:
    """`${asr.sqrt_scaled:lr,ref,batch}`: lr * sqrt(batch / ref), the square-root rule for
    Adam-style optimizers when the batch grows (batch null: no scaling)."""
    return value if actual is None else float(value) * math.sqrt(float(actual) / float(reference))


def run_name(pattern: str) -> str:
    """`${asr.run_name:%Y-%m-%d/%H-%M-%S}`: the job's start time in `pattern` (rank 0's clock
    under DDP), except in a Slurm batch job: `slurm-<job id>`, which survives a requeue."""
    if cluster.in_slurm_batch_job():
        return f"slurm-{cluster.slurm_job_id()}"
    return distributed.start_time().strftime(pattern)


def register_configs() -> None:
    """Register `base_train`, `base_evaluate`, one `base_<group>` schema per group, and the
    resolvers `asr.job_dir` (names sweep job folders), `asr.n_class`, `asr.run_name`, and for
    DDP `asr.now`, `asr.rank_suffix`, `asr.main_rank` (see `asr.distributed` and `asr.ranks`)."""
    OmegaConf.register_new_resolver("asr.job_dir", job_dirname, replace=True)
    OmegaConf.register_new_resolver("asr.n_class", n_class_for, replace=True)
    OmegaConf.register_new_resolver("asr.sqrt_scaled", sqrt_scaled, replace=True)
    # Hydra's `now`, but rank 0's clock on every rank of a DDP job (one run directory). Cached
    # like `now`, so that Hydra hands the submitting process's value to submitit's tasks.
    OmegaConf.register_new_resolver(
        "asr.now",
        lambda pattern: distributed.start_time().strftime(pattern),
        use_cache=True,
        replace=True,
    )
    # A single run's folder name: the time, or in a Slurm batch job `slurm-<job id>`, the same
    # when the job is requeued, so that it finds its last.pt (asr.cluster).
    OmegaConf.register_new_resolver("asr.run_name", run_name, use_cache=True, replace=True)
    # Per process, never cached: `.rank<N>` on ranks other than 0 (their own log files), and
    # a value that only rank 0 keeps (null elsewhere: e.g. only rank 0 saves `.hydra/`).
    OmegaConf.register_new_resolver("asr.rank_suffix", lambda: ranks.rank_suffix(), replace=True)
    OmegaConf.register_new_resolver(
        "asr.main_rank", lambda value: value if ranks.is_main_rank() else None, replace=True
    )
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    cs.store(name="base_transcribe", node=TranscribeConfig)
    for group, schema in {**GROUPS, **EVALUATE_GROUPS}.items():
        cs.store(group=group, name=f"base_{group}", node=schema)


def _to_object(node: Any, prefix: str) -> Any:
    try:
        return OmegaConf.to_object(node)
    except InterpolationResolutionError as e:  # a resolver's own error, e.g. asr.n_class
        message = str(e).splitlines()[0].split("raised while resolving interpolation: ")[-1]
        raise ConfigError(message) from None
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
    groups = {group: _to_object(cfg[group], group) for group in EVALUATE_GROUPS}
    fields = OmegaConf.to_container(cfg, resolve=True)
    fields = {k: v for k, v in fields.items() if k not in EVALUATE_GROUPS}
    try:
        return EvaluateConfig(**fields, **groups)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def to_transcribe_config(cfg: DictConfig) -> TranscribeConfig:
    refuse_unknown_keys(cfg, TranscribeConfig)
    decode = _to_object(cfg.decode, "decode")
    fields = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "decode"}
    try:
        return TranscribeConfig(**fields, decode=decode)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_cross_fields(cfg: TrainConfig) -> None:
    """Checks that involve more than one group, or the file system: all before any work."""
    d = cfg.data
    try:
        vocab = make_vocabulary(d.alphabet)
    except ValueError as e:
        raise ConfigError(f"data.alphabet: {e}") from None
    if cfg.model.n_class != vocab.n_class:
        raise ConfigError(
            f"model.n_class ({cfg.model.n_class}) must be {vocab.n_class}: the alphabet has "
            f"{len(vocab.symbols)} symbols plus the CTC blank"
        )
    if d.corpus in RECIPES:
        if not d.root and d.corpus not in ROOT_OPTIONAL:  # e.g. asterisk fetches its packages
            raise ConfigError(f"data.root is required for data.corpus={d.corpus}")
        if d.root and not Path(d.root).expanduser().is_dir():
            raise ConfigError(f"data.root does not exist: {d.root}")
    if d.corpus in ("manifest", "shards"):
        for split in ("train", "dev", "test"):
            value = getattr(d, f"{split}_manifest")
            if value and not Path(value).expanduser().is_file():
                raise ConfigError(f"data.{split}_manifest does not exist: {value}")
    if d.corpus == "shards":
        if not (Path(d.shards_dir).expanduser() / "index.json").is_file():
            raise ConfigError(f"data.shards_dir holds no index.json: {d.shards_dir}")
        if cfg.augment.waveform:
            raise ConfigError(
                "augment: waveform augmentation reads other utterances' files (babble), which "
                "shards do not offer; use augment=specaugment with data=shards"
            )
    if cfg.model.n_feats != cfg.data.n_mels:
        raise ConfigError(
            f"model.n_feats ({cfg.model.n_feats}) must equal data.n_mels ({cfg.data.n_mels})"
        )
    if cfg.trainer.precision != "fp32" and cfg.trainer.device == "cpu":
        raise ConfigError(
            f"trainer.precision={cfg.trainer.precision} needs a CUDA device (on cpu: fp32)"
        )


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_train_config(overrides: list[str] | None = None) -> TrainConfig:
    """`conf/train.yaml` with `overrides`, composed outside `@hydra.main`: how tools such as
    `python -m asr.data check` take their defaults from the same place training does."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    register_configs()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose("train", overrides=list(overrides or []))
    except HydraException as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    return to_train_config(cfg)
