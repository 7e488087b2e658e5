"""Config schemas as plain dataclasses: one per Hydra group, plus the run-level ones.

No Hydra here: library code imports these, and `asr.config` registers them with Hydra's
ConfigStore. Value checks live in each `__post_init__` and raise a one-line ValueError naming
the field; `asr.config` prefixes the group so the user sees the full key (`model.n_cnn ...`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from asr.data.recipes import REGISTRY
from asr.data.recipes.common import RecipeSpec
from asr.data.synth import SynthSpec
from asr.decoding.config import DecodeConfig
from asr.errors import ConfigError
from asr.model import ModelConfig
from asr.text import LANGUAGES
from asr.tracking import LoggerConfig

__all__ = [
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "DecodeConfig",
    "EvaluateConfig",
    "LoggerConfig",
    "ModelConfig",
    "OptimConfig",
    "RecipeSpec",
    "SynthSpec",
    "TrainConfig",
    "TrainerConfig",
    "TranscribeConfig",
]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# Corpora that `python -m asr.data prepare` turns into manifests: the recipe registry's.
RECIPES = tuple(REGISTRY)
CORPORA = ("synth_es", "manifest", "shards", *RECIPES)

RUNTIMES = ("torch", "onnx")
OBJECTIVES = ("cer", "wer", "guarded_wer")  # evaluate.py objective

CACHE_DIR_ENV = "ASR_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/asr-sweep"


def default_cache_dir() -> str:
    """`$ASR_CACHE_DIR` when set, else `~/.cache/asr-sweep` (expanded where it is used).

    Read when a DataConfig is made, and by Hydra when `asr.config.register_configs` stores the
    schema (at the start of train.py/evaluate.py): the variable must be set before that.
    """
    return os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR


@dataclass
class DataConfig:
    corpus: str = "synth_es"  # one of CORPORA: synth_es | manifest | shards | a recipe of RECIPES
    language: str = "es"  # es | en: text normalization (es also maps ñ -> ni)
    alphabet: str | None = None  # a custom alphabet file (one symbol per line); null: a-z ' space
    root: str | None = None  # recipe corpora: the corpus folder as downloaded
    recipe: RecipeSpec = field(default_factory=RecipeSpec)
    train_manifest: str | None = None
    dev_manifest: str | None = None
    test_manifest: str | None = None
    # corpus=shards: the training set as tar shards (`python -m asr.data shard`), streamed
    shards_dir: str | None = None
    shuffle_buffer: int = 1000  # corpus=shards: utterances in each reader's shuffle buffer
    # Where generated corpora live: outside any run directory, shared by all runs and sweeps.
    # Default: $ASR_CACHE_DIR, else ~/.cache/asr-sweep.
    cache_dir: str = field(default_factory=default_cache_dir)
    synth: SynthSpec = field(default_factory=SynthSpec)
    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 1024  # zero-padded 25 ms window; 400 or 512 leave low mel filters empty
    win_length: int = 400  # 25 ms
    hop_length: int = 160
    # The log-mel's floor, in dB below the utterance's peak mel power: the features do not
    # depend on the recording level (a quiet telephone prompt and a loud one give the same).
    # null: the absolute floor log(power + 1e-6) of checkpoints made before this setting, which
    # covers more of a quiet recording than of a loud one (docs/augmentation.md measures it).
    log_floor_db: float | None = 60.0
    batch_size: int = 16  # utterances per batch, as in the seed; what sweeps vary
    # Seconds of audio per batch instead (lhotse-style): batches of short utterances hold
    # more of them, so each step does similar work. null: batch_size utterances.
    batch_seconds: float | None = None
    num_buckets: int = 10  # duration buckets: similar lengths share a batch
    # Utterances per batch of the dev/test evaluations (no gradients, so a GPU takes more);
    # null: batch_size.
    eval_batch_size: int | None = None
    max_duration: float = 20.0  # seconds; longer utterances are dropped (and counted)
    # DataLoader worker processes. null: none on the CPU, where a worker only competes with the
    # model for the cores (measured here: the same speed or faster, and less memory, without
    # one; the feature cache makes later epochs free anyway), one on CUDA.
    num_workers: int | None = None
    # Log-mel kept in memory (float16, before SpecAugment) after an utterance's first use, per
    # loading process: later epochs and evaluations skip the audio. 1 h of audio at 128 mels
    # takes ~90 MiB. 0: recompute every time.
    feature_cache_mb: float = 1024

    def __post_init__(self) -> None:
        _check(
            self.corpus in CORPORA,
            f"corpus must be one of {'|'.join(CORPORA)} (got {self.corpus!r})",
        )
        _check(
            self.language in LANGUAGES,
            f"language must be one of {'|'.join(LANGUAGES)} (got {self.language!r})",
        )
        _check(self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})")
        _check(
            self.eval_batch_size is None or self.eval_batch_size >= 1,
            f"eval_batch_size must be >= 1 or null (got {self.eval_batch_size})",
        )
        _check(
            self.batch_seconds is None or self.batch_seconds > 0,
            f"batch_seconds must be > 0 or null (got {self.batch_seconds})",
        )
        _check(self.num_buckets >= 1, f"num_buckets must be >= 1 (got {self.num_buckets})")
        _check(self.sample_rate >= 1000, f"sample_rate must be >= 1000 (got {self.sample_rate})")
        _check(self.n_mels >= 1, f"n_mels must be >= 1 (got {self.n_mels})")
        _check(self.hop_length >= 1, f"hop_length must be >= 1 (got {self.hop_length})")
        _check(
            self.log_floor_db is None or self.log_floor_db > 0,
            f"log_floor_db must be > 0 dB below the peak, or null (got {self.log_floor_db})",
        )
        _check(self.n_fft >= self.win_length, f"n_fft must be >= win_length (got {self.n_fft})")
        _check(
            self.win_length >= self.hop_length,
            f"win_length must be >= hop_length (got {self.win_length})",
        )
        _check(self.max_duration > 0, f"max_duration must be > 0 (got {self.max_duration})")
        _check(
            self.num_workers is None or self.num_workers >= 0,
            f"num_workers must be >= 0 or null (got {self.num_workers})",
        )
        _check(
            self.feature_cache_mb >= 0,
            f"feature_cache_mb must be >= 0 (got {self.feature_cache_mb})",
        )
        _check(
            self.synth.train_hours > 0,
            f"synth.train_hours must be > 0 (got {self.synth.train_hours})",
        )
        if self.corpus == "manifest":
            for split in ("train", "dev"):
                value = getattr(self, f"{split}_manifest")
                _check(bool(value), f"{split}_manifest must be set when corpus=manifest")
        if self.corpus == "shards":
            _check(bool(self.shards_dir), "shards_dir must be set when corpus=shards")
            _check(bool(self.dev_manifest), "dev_manifest must be set when corpus=shards")
        _check(self.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1 (got {self.shuffle_buffer})")


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 5e-4  # the peak learning rate
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    schedule: str = "onecycle"  # onecycle | cosine | constant
    pct_start: float = 0.3  # onecycle: fraction of the run spent warming up
    div_factor: float = 25.0  # onecycle: start lr = lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final lr = start lr / final_div_factor
    warmup: float = 0.05  # cosine: fraction of the run spent warming up linearly
    min_lr_ratio: float = 0.01  # cosine: final lr = lr * min_lr_ratio
    # torch's fused kernel (adamw and sgd): one pass over all parameters (on CPU an AdamW step
    # over the seed's 23.7 M parameters took 12.8 ms against 33.7 ms: bench/micro.py adamw),
    # and a non-finite step is skipped on the device (asr/step.py) instead of after a host
    # read; false: torch's default kernels.
    fused: bool = True

    def __post_init__(self) -> None:
        _check(self.name in ("adamw", "sgd"), f"name must be adamw|sgd (got {self.name!r})")
        _check(
            self.schedule in ("onecycle", "cosine", "constant"),
            f"schedule must be onecycle|cosine|constant (got {self.schedule!r})",
        )
        _check(self.lr > 0, f"lr must be > 0 (got {self.lr})")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})")
        _check(0 < self.pct_start < 1, f"pct_start must be in (0, 1) (got {self.pct_start})")
        _check(0 <= self.warmup < 1, f"warmup must be in [0, 1) (got {self.warmup})")
        _check(self.div_factor >= 1, f"div_factor must be >= 1 (got {self.div_factor})")


@dataclass
class AugmentConfig:
    """Training-time augmentation (Hydra group `augment`): waveform augmentations, each with
    its own probability per utterance and epoch (asr/augment.py), then SpecAugment's masks."""

    name: str = "specaugment"  # a label: specaugment | none | speed | robust | yours
    # SpecAugment
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 35
    time_width_ratio: float = 0.1  # a time mask never covers more than this share of frames
    # The first epoch with waveform augmentations: the epochs before it train on clean audio
    # (and cached features) while the model leaves CTC's blank plateau. SpecAugment is on from
    # the start either way.
    start_epoch: int = 0
    # Speed perturbation: one factor drawn per utterance and epoch ([]: off)
    speed_factors: list[float] = field(default_factory=list)
    # Reverberation: an impulse response of a generated room ("room": pyroomacoustics),
    # generated decaying noise ("noise"), or a folder of RIR files
    reverb_prob: float = 0.0
    rir_source: str = "room"
    rt60_min: float = 0.2  # seconds, for generated RIRs
    rt60_max: float = 0.8
    # Additive noise at an SNR drawn in [min, max] dB, of a kind drawn from noise_kinds:
    # white | pink | brown (generated), babble (other training utterances), file (noise_dir)
    noise_prob: float = 0.0
    noise_kinds: list[str] = field(default_factory=lambda: ["white", "pink", "brown", "babble"])
    noise_dir: str | None = None
    noise_snr_min_db: float = 5.0
    noise_snr_max_db: float = 25.0
    # Gain in [min, max] dB, clipped at full scale
    gain_prob: float = 0.0
    gain_min_db: float = -10.0
    gain_max_db: float = 10.0
    # Telephone channel: 300-3400 Hz through 8 kHz and back, optionally mu-law coded
    telephone_prob: float = 0.0
    telephone_mulaw: bool = True

    def __post_init__(self) -> None:
        for key in ("freq_masks", "freq_width", "time_masks", "time_width"):
            _check(getattr(self, key) >= 0, f"{key} must be >= 0 (got {getattr(self, key)})")
        _check(
            0 <= self.time_width_ratio <= 1,
            f"time_width_ratio must be in [0, 1] (got {self.time_width_ratio})",
        )
        _check(self.start_epoch >= 0, f"start_epoch must be >= 0 (got {self.start_epoch})")
        for key in ("reverb_prob", "noise_prob", "gain_prob", "telephone_prob"):
            value = getattr(self, key)
            _check(0 <= value <= 1, f"{key} must be in [0, 1] (got {value})")
        _check(
            all(0.5 <= f <= 2 for f in self.speed_factors),
            f"speed_factors must lie in [0.5, 2] (got {list(self.speed_factors)})",
        )
        for low, high in (("noise_snr_min_db", "noise_snr_max_db"), ("gain_min_db", "gain_max_db"),
                          ("rt60_min", "rt60_max")):  # fmt: skip
            _check(
                getattr(self, low) <= getattr(self, high),
                f"{low} must be <= {high} (got {getattr(self, low)} > {getattr(self, high)})",
            )
        _check(self.rt60_min > 0, f"rt60_min must be > 0 (got {self.rt60_min})")
        kinds = ("white", "pink", "brown", "babble", "file")
        bad = [k for k in self.noise_kinds if k not in kinds]
        _check(not bad, f"noise_kinds: unknown {bad} (known: {'|'.join(kinds)})")
        _check(
            self.noise_prob == 0 or bool(self.noise_kinds),
            "noise_kinds is empty while noise_prob > 0",
        )
        _check(
            "file" not in self.noise_kinds or self.noise_prob == 0 or bool(self.noise_dir),
            "noise_kinds has file: give noise_dir=<folder of noise recordings>",
        )

    @property
    def waveform(self) -> bool:
        """Whether any waveform augmentation is on."""
        probs = (self.reverb_prob, self.noise_prob, self.gain_prob, self.telephone_prob)
        return any(f != 1.0 for f in self.speed_factors) or any(p > 0 for p in probs)

    @property
    def enabled(self) -> bool:
        return self.name != "none" and (self.freq_masks > 0 or self.time_masks > 0)


@dataclass
class TrainerConfig:
    # Budgets: training stops at whichever ends first; null means no limit.
    max_epochs: int | None = 30
    max_steps: int | None = None
    max_minutes: float | None = None
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    device: str = "auto"  # auto | cpu | cuda
    # fp32 | tf32 | bf16 (asr/precision.py); tf32 and bf16 are for CUDA. Under bf16 the GRUs and
    # CTC stay in fp32 (TF32 math): autocast would run cuDNN GRUs in unscaled fp16.
    precision: str = "fp32"
    num_threads: int | None = None  # torch intra-op threads; null = all cores
    log_every_steps: int = 20
    eval_every_steps: int | None = None  # dev evaluation also runs at each epoch end
    n_samples_logged: int = 8  # transcripts shown per evaluation
    resume: str | None = None  # a run directory or checkpoint to continue from
    # A resume whose features, text or model settings differ from the checkpoint's is refused
    # (they would change what is trained on mid-run); true resumes anyway, with a warning.
    accept_changed_settings: bool = False
    init_from: str | None = None  # a checkpoint whose weights start a new run (fine-tuning)
    max_nonfinite_steps: int = 50  # consecutive skipped steps before the run fails
    # last.pt is also written every this many steps (besides each dev evaluation and SIGTERM),
    # bounding what a SIGKILL can lose; null: only at dev evaluations and on SIGTERM.
    checkpoint_every_steps: int | None = 500
    # ... and once this many minutes have passed since the last save, whatever the step count:
    # what a preempted job on a slow machine can lose. null: no clock-based saves.
    checkpoint_every_minutes: float | None = 15.0
    patience: int | None = None  # stop after this many dev evaluations without a better CER

    def __post_init__(self) -> None:
        _check(
            not (self.max_steps == 0 and self.max_minutes == 0),
            "max_steps and max_minutes are both 0: nothing would train (null means no limit)",
        )
        budgets = {"max_epochs": self.max_epochs, "max_steps": self.max_steps}
        budgets["max_minutes"] = self.max_minutes
        _check(
            any(v is not None for v in budgets.values()),
            "set at least one of max_epochs, max_steps, max_minutes",
        )
        for key, value in budgets.items():
            _check(value is None or value > 0, f"{key} must be > 0 or null (got {value})")
        _check(self.grad_clip >= 0, f"grad_clip must be >= 0 (got {self.grad_clip})")
        _check(
            self.device in ("auto", "cpu", "cuda"),
            f"device must be auto|cpu|cuda (got {self.device!r})",
        )
        _check(
            self.precision in ("fp32", "tf32", "bf16"),
            f"precision must be fp32|tf32|bf16 (got {self.precision!r})",
        )
        _check(
            self.num_threads is None or self.num_threads >= 1,
            f"num_threads must be >= 1 (got {self.num_threads})",
        )
        _check(
            self.log_every_steps >= 1, f"log_every_steps must be >= 1 (got {self.log_every_steps})"
        )
        _check(
            self.eval_every_steps is None or self.eval_every_steps >= 1,
            f"eval_every_steps must be >= 1 or null (got {self.eval_every_steps})",
        )
        _check(
            self.max_nonfinite_steps >= 1,
            f"max_nonfinite_steps must be >= 1 (got {self.max_nonfinite_steps})",
        )
        _check(
            self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
            f"checkpoint_every_steps must be >= 1 or null (got {self.checkpoint_every_steps})",
        )
        _check(
            self.checkpoint_every_minutes is None or self.checkpoint_every_minutes > 0,
            f"checkpoint_every_minutes must be > 0 or null (got {self.checkpoint_every_minutes})",
        )
        _check(
            self.patience is None or self.patience >= 1,
            f"patience must be >= 1 or null (got {self.patience})",
        )
        _check(not (self.resume and self.init_from), "resume and init_from are exclusive: pick one")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # dev and test evaluations
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    # Checkpoints (a resume, trainer.init_from) load without running code: a file that needs
    # more than tensors and plain values is refused. true unpickles it in full, with a warning.
    trust_checkpoint: bool = False


@dataclass
class EvaluateConfig:
    ckpt: str = "???"  # a checkpoint, or a run directory holding best.pt
    split: str = "test"  # a split of the checkpoint's own data: train | dev | test
    manifest: str | None = None  # any JSONL manifest instead of a split
    batch_size: int = 16
    device: str = "auto"
    num_threads: int | None = None
    quantize: bool = False  # dynamic int8 GRU/Linear for CPU inference
    runtime: str = "torch"  # torch | onnx (onnxruntime, the [export] extra)
    cache_emissions: bool = True  # reuse the model's log-probs across decoder settings
    # What the job returns to a sweeper: cer | wer | guarded_wer (WER, but 1 + WER where the
    # CER is worse than greedy decoding's on the same split: a tuner never picks those).
    objective: str = "cer"
    trust_checkpoint: bool = False  # unpickle a checkpoint that needs more than plain values
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        _check(
            self.ckpt not in ("???", ""),
            "ckpt is required: ckpt=<checkpoint file, or a run directory holding best.pt>",
        )
        _check(
            self.split in ("train", "dev", "test"),
            f"split must be train|dev|test (got {self.split!r})",
        )
        _check(self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})")
        _check(self.runtime in RUNTIMES, f"runtime must be torch|onnx (got {self.runtime!r})")
        _check(
            not (self.quantize and self.runtime == "onnx"),
            "quantize=true is for runtime=torch (the ONNX export is fp32)",
        )
        _check(
            self.objective in OBJECTIVES,
            f"objective must be {'|'.join(OBJECTIVES)} (got {self.objective!r})",
        )
        _check(
            self.device in ("auto", "cpu", "cuda"),
            f"device must be auto|cpu|cuda (got {self.device!r})",
        )


@dataclass
class TranscribeConfig:
    """transcribe.py: audio files in, one JSON line per file out. The model, features and
    vocabulary come from the checkpoint."""

    ckpt: str = "???"  # a checkpoint, or a run directory holding best.pt
    input: str = "???"  # an audio file, a folder of them (searched recursively), or a manifest
    out: str = "transcripts.jsonl"
    chunk_seconds: float = 15.0  # longer recordings are cut into overlapping chunks
    overlap_seconds: float = 2.0  # shared by neighbouring chunks; the seam is its middle
    device: str = "auto"
    num_threads: int | None = None
    runtime: str = "torch"  # torch | onnx
    progress: bool = True  # a progress bar over the files
    trust_checkpoint: bool = False  # unpickle a checkpoint that needs more than plain values
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        for key in ("ckpt", "input"):
            _check(getattr(self, key) not in ("???", ""), f"{key} is required: {key}=<path>")
        _check(self.chunk_seconds >= 2, f"chunk_seconds must be >= 2 (got {self.chunk_seconds})")
        _check(
            0 <= self.overlap_seconds <= self.chunk_seconds / 2,
            f"overlap_seconds must be in [0, chunk_seconds / 2] (got {self.overlap_seconds})",
        )
        _check(self.runtime in RUNTIMES, f"runtime must be torch|onnx (got {self.runtime!r})")
        _check(
            self.device in ("auto", "cpu", "cuda"),
            f"device must be auto|cpu|cuda (got {self.device!r})",
        )
