"""Train a DeepSpeech2 model from Hydra configs. Returns the best dev CER (for sweepers).

python train.py model=ds2_small trainer.max_minutes=10
python train.py model.n_cnn=3 model.n_rnn=5
python train.py --multirun data.batch_size=8,16 model.n_cnn=1,3 model.n_rnn=1,3,5
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

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
    main()
