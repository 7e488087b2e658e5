from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from asr.config import to_train_config
from asr.schema import RECIPES, ConfigError
from tests.conftest import CONF, ROOT, compose_train, run_script


def test_default_is_the_seed_model():
    cfg = to_train_config(compose_train())
    m = cfg.model
    assert (m.n_cnn, m.n_rnn, m.rnn_dim, m.n_feats, m.dropout) == (3, 5, 512, 128, 0.1)
    assert cfg.data.corpus == "synth_es" and cfg.data.batch_size == 16
    assert cfg.optim.name == "adamw" and cfg.optim.schedule == "onecycle"
    assert cfg.augment.name == "specaugment" and cfg.logger.kind == "wandb"


def test_n_feats_follows_n_mels():
    cfg = to_train_config(compose_train(["data.n_mels=80"]))
    assert cfg.model.n_feats == 80


def test_every_group_option_composes(tmp_path):
    for name in ("a.jsonl", "b.jsonl", "index.json"):
        (tmp_path / name).touch()
    for group in ("model", "data", "optim", "augment", "trainer", "logger"):
        for yaml in sorted((CONF / group).glob("*.yaml")):
            overrides = [f"{group}={yaml.stem}"]
            if yaml.stem == "manifest":
                overrides += [f"data.train_manifest={tmp_path}/a.jsonl"]
                overrides += [f"data.dev_manifest={tmp_path}/b.jsonl"]
            if yaml.stem == "shards":
                overrides += [f"data.shards_dir={tmp_path}"]
                overrides += [f"data.dev_manifest={tmp_path}/b.jsonl"]
            if group == "data" and yaml.stem in RECIPES:
                overrides += [f"data.root={tmp_path}"]
            to_train_config(compose_train(overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.max_steps=0", "trainer.max_minutes=0"],
            "trainer.max_steps and max_minutes are both 0",
        ),
        (["data=folder", "data.root=/no/such/dir"], "data.root does not exist: /no/such/dir"),
        (
            ["data=librispeech", "data.root=null"],
            "data.root is required for data.corpus=librispeech",
        ),
        (
            ["data=manifest", "data.train_manifest=/no/t.jsonl", "data.dev_manifest=/no/d.jsonl"],
            "data.train_manifest does not exist: /no/t.jsonl",
        ),
        (["data.alphabet=/no/abc.txt"], "data.alphabet: cannot read alphabet file /no/abc.txt"),
        (["model.n_class=40"], "model.n_class (40) must be 29: the alphabet has 28 symbols"),
    ],
)
def test_cross_field_guard_rails_name_the_culprit(overrides, message):
    with pytest.raises(ConfigError) as e:
        to_train_config(compose_train(overrides))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_custom_alphabet_sizes_the_model(tmp_path):
    alphabet = tmp_path / "abc.txt"
    alphabet.write_text("<SPACE>\na\nb\nc\nñ\n")
    cfg = to_train_config(compose_train([f"data.alphabet={alphabet}"]))
    assert cfg.model.n_class == 6  # 5 symbols + the CTC blank


def test_groups_really_switch():
    small = to_train_config(compose_train(["model=ds2_small", "optim=sgd_cosine", "augment=none"]))
    assert (small.model.n_cnn, small.model.n_rnn, small.model.rnn_dim) == (1, 2, 256)
    assert small.optim.name == "sgd" and small.optim.schedule == "cosine"
    assert not small.augment.enabled


def test_typo_and_wrong_type_are_refused_by_hydra():
    with pytest.raises(ConfigCompositionException, match="n_rnnn"):
        compose_train(["model.n_rnnn=3"])
    with pytest.raises((ConfigCompositionException, ValidationError), match="n_cnn"):
        compose_train(["model.n_cnn=three"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.n_cnn=-1", "model.n_cnn must be >= 0 (got -1)"),
        ("model.n_rnn=0", "model.n_rnn"),
        ("model.dropout=1.0", "model.dropout must be in [0, 1)"),
        ("data.batch_size=0", "data.batch_size must be >= 1 (got 0)"),
        ("data.n_mels=127", "model.n_feats (127) must be divisible by stride"),
        ("trainer.max_epochs=null", "trainer.set at least one of max_epochs"),
        ("trainer.max_steps=0", "trainer.max_steps must be > 0"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("logger.mode=onlin", "logger.mode"),
    ],
)
def test_impossible_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        to_train_config(compose_train([override]))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.n_rnnn=3", "error: Could not override 'model.n_rnnn': Key 'n_rnnn' not in"),
        ("model.n_cnn=three", "Value 'three' of type 'str' could not be converted to Integer"),
        (
            "+model.n_rnnn=3",
            "error: model.n_rnnn is not a known setting (did you mean model.n_rnn?)",
        ),
        ("model=ds3", "Could not find 'model/ds3'"),
        ("model.n_cnn=-1", "error: model.n_cnn must be >= 0 (got -1)"),
        ("model.dropout=1.0", "error: model.dropout must be in [0, 1) (got 1.0)"),
        ("data.batch_size=0", "error: data.batch_size must be >= 1 (got 0)"),
    ],
)
def test_bad_overrides_exit_nonzero_with_one_line_before_any_work(
    tmp_path: Path, override, expected
):
    run_dir = tmp_path / "run"
    result = run_script("train.py", [override, f"hydra.run.dir={run_dir}"], cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert expected in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line
    assert not (run_dir / "summary.json").exists()  # refused before any work


def test_added_keys_are_refused_like_typos():
    with pytest.raises(ConfigError, match=r"data\.synth\.hourz is not a known setting"):
        to_train_config(compose_train(["+data.synth.hourz=2"]))
    with pytest.raises(ConfigError, match=r"^foo is not a known setting$"):
        to_train_config(compose_train(["+foo=1"]))


def test_job_dirname_is_readable_unquoted_and_bounded():
    from asr.config import JOB_DIR_MAX, job_dirname

    assert job_dirname(["model.n_rnn=3", "data.batch_size=8", "model.n_cnn=1"]) == (
        "data.batch_size-8__model.n_cnn-1__model.n_rnn-3"
    )
    name = job_dirname(["optim.lr=0.0006466422717414558", "data.cache_dir=/a/b", "+sweep=x"])
    assert name == "optim.lr-0.000646642"  # floats shortened, paths and the preset left out
    long = [f"data.synth.key{i}=value{i}" for i in range(30)] + ["model.n_cnn=3"]
    cut = job_dirname(long)
    assert len(cut) <= JOB_DIR_MAX and cut.startswith("model.n_cnn-3__")
    assert cut != job_dirname([*long[:-1], "model.n_cnn=2"])  # still unique when cut
    assert not {"=", ",", "/"} & set(cut)


def test_sweep_presets_compose():
    from hydra import compose, initialize_config_dir

    from asr.config import register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        grid = compose("train", overrides=["+sweep=layers_bs"], return_hydra_config=True)
        assert dict(grid.hydra.sweeper.params) == {
            "data.batch_size": "8,16",
            "model.n_cnn": "1,3",
            "model.n_rnn": "1,2",
        }
        assert grid.model.rnn_dim == 256 and grid.trainer.max_minutes == 3
        seed = compose("train", overrides=["+sweep=seed_grid"], return_hydra_config=True)
        assert seed.model.rnn_dim == 512 and len(seed.hydra.sweeper.params) == 3
        slurm = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
        assert slurm.hydra.launcher.gpus_per_node == 1 and slurm.hydra.launcher.timeout_min == 240
        assert "SlurmLauncher" in slurm.hydra.launcher._target_


def test_the_gpu_preset_batches_by_seconds_and_scales_the_learning_rate():
    import math

    cfg = to_train_config(compose_train(["+preset=gpu"]))
    assert cfg.trainer.precision == "bf16" and cfg.trainer.device == "cuda"
    assert cfg.data.batch_seconds == 360 and cfg.data.eval_batch_size == 64
    assert math.isclose(cfg.optim.lr, 1.5e-3 * math.sqrt(360 / 45))
    smaller = to_train_config(compose_train(["+preset=gpu", "data.batch_seconds=45"]))
    assert math.isclose(smaller.optim.lr, 1.5e-3)  # the rule follows the batch
    fixed = to_train_config(compose_train(["+preset=gpu", "optim.lr=1e-3"]))
    assert fixed.optim.lr == 1e-3


def test_evaluate_without_a_checkpoint_says_what_to_pass(tmp_path: Path):
    result = run_script("evaluate.py", [f"hydra.run.dir={tmp_path}"], cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: ckpt is required: ckpt=<checkpoint file, or a run directory holding best.pt>"
    )


# What `train.yaml` composed to for each data option before the data YAMLs were cut down to
# what differs from DataConfig (each had repeated the schema's defaults): they must keep
# composing to exactly these values.
DATA_SHARED = {
    "language": "es",
    "alphabet": None,
    "root": None,
    "train_manifest": None,
    "dev_manifest": None,
    "test_manifest": None,
    "recipe": {
        "train": None,
        "dev": None,
        "test": None,
        "table": "transcripts.tsv",
        "dev_fraction": 0.1,
        "test_fraction": 0.1,
    },
    "synth": {
        "train_hours": 1.0,
        "dev_utterances": 300,
        "test_utterances": 300,
        "sample_rate": 16000,
        "seed": 0,
    },
    "sample_rate": 16000,
    "n_mels": 128,
    "n_fft": 1024,
    "win_length": 400,
    "hop_length": 160,
    "batch_size": 16,
    "batch_seconds": None,
    "num_buckets": 10,
    "max_duration": 20.0,
    "num_workers": None,
    "feature_cache_mb": 1024,
}
SPLIT_NAMES = {"librispeech": ("train-clean-100", "dev-clean", "test-clean")}
SPLIT_NAMES["commonvoice"] = ("train", "dev", "test")
DATA_OWN = {
    "synth_es": {},
    "manifest": {},
    "folder": {},
    "asterisk": {"max_duration": 90.0},
    "librispeech": {"language": "en"},
    "commonvoice": {},
}


@pytest.mark.parametrize("env_cache", [None, "/elsewhere/cache"])
@pytest.mark.parametrize("option", sorted(DATA_OWN))
def test_data_options_compose_to_the_same_values_as_before(option, env_cache, monkeypatch):
    if env_cache is None:
        monkeypatch.delenv("ASR_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("ASR_CACHE_DIR", env_cache)
    from omegaconf import OmegaConf

    composed = compose_train([f"data={option}"]).data
    got = OmegaConf.to_container(composed, resolve=True, throw_on_missing=False)
    expected = {**DATA_SHARED, "corpus": option, **DATA_OWN[option]}
    expected["recipe"] = dict(expected["recipe"])
    if option in SPLIT_NAMES:
        splits = dict(zip(("train", "dev", "test"), SPLIT_NAMES[option], strict=True))
        expected["recipe"].update(splits)
    # one source for the cache: the schema's default, which reads $ASR_CACHE_DIR (every option,
    # data=manifest too, which used to ignore the variable)
    expected["cache_dir"] = env_cache or "~/.cache/asr-sweep"
    assert {k: got[k] for k in expected} == expected
    if option == "synth_es":  # the generated corpus follows the features' sample rate
        again = compose_train([f"data={option}", "data.sample_rate=8000"]).data
        assert again.synth.sample_rate == 8000


def test_library_code_gets_the_same_cache_dir_as_the_config(monkeypatch):
    from asr.schema import DataConfig

    monkeypatch.delenv("ASR_CACHE_DIR", raising=False)
    assert DataConfig().cache_dir == "~/.cache/asr-sweep"
    monkeypatch.setenv("ASR_CACHE_DIR", "/elsewhere/cache")
    assert DataConfig().cache_dir == "/elsewhere/cache"


# Keys a group option keeps even when they equal the schema's default: what the option's
# name stands for (data=synth_es sets corpus: synth_es, optim=adamw_onecycle name and schedule).
OPTION_IDENTITY = {"data": {"corpus"}, "optim": {"name", "schedule"}}
OPTION_IDENTITY |= {"augment": {"name"}, "logger": {"kind"}}


def _repeated_defaults(node, default, prefix: str) -> list[str]:
    import dataclasses

    from omegaconf import DictConfig, OmegaConf

    repeated = []
    for key in node:
        if key == "defaults":
            continue
        if OmegaConf.is_missing(node, key):  # merged onto a schema default, ??? leaves it as is
            repeated.append(f"{prefix}{key} (???)")
            continue
        if OmegaConf.is_interpolation(node, key):
            continue  # e.g. n_feats: ${data.n_mels}, which the schema cannot say
        value, schema_value = node[key], getattr(default, key)
        if isinstance(value, DictConfig) and dataclasses.is_dataclass(schema_value):
            repeated += _repeated_defaults(value, schema_value, f"{prefix}{key}.")
        elif value == schema_value:
            repeated.append(f"{prefix}{key}")
    return repeated


def test_group_options_hold_only_what_differs_from_the_schema():
    from omegaconf import OmegaConf

    from asr.config import GROUPS

    found = {}
    for group, schema in GROUPS.items():
        for yaml in sorted((CONF / group).glob("*.yaml")):
            node = OmegaConf.load(yaml)
            keys = _repeated_defaults(node, schema(), "")
            keys = [k for k in keys if k not in OPTION_IDENTITY.get(group, ())]
            if keys:
                found[f"{group}/{yaml.name}"] = keys
    assert found == {}, "keys equal to the schema's default: drop them from the YAML"
