"""Train a DeepSpeech2 model from Hydra configs. Returns the best dev CER (for sweepers).

python train.py model=ds2_small trainer.max_minutes=10
python train.py model.n_cnn=3 model.n_rnn=5
python train.py --multirun data.batch_size=8,16 model.n_cnn=1,3 model.n_rnn=1,3,5
torchrun --nproc_per_node=4 train.py model=ds2_small    # DDP: one process per GPU
"""

# ruff: noqa: E402 (the scheduler's warning is caught before the slow imports)

from pathlib import Path

from asr.cluster import catch_early_warnings

catch_early_warnings()  # before the imports and the data: a preemption warning is not lost

import hydra
from omegaconf import DictConfig

from asr import distributed
from asr.cli import check_overrides, run_job, train_job
from asr.config import register_configs

register_configs()


@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="train"
)
def main(cfg: DictConfig) -> float:
    return run_job(lambda: train_job(cfg))


if __name__ == "__main__":
    check_overrides("train")
    # Under torchrun or Slurm tasks, join the process group once, before Hydra names the run
    # directory (from rank 0's clock), and keep it for every job of a --multirun.
    distributed.setup()
    main()
