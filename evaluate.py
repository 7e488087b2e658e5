"""Evaluate a checkpoint; the model, text and features are rebuilt from the checkpoint alone.

python evaluate.py ckpt=outputs/<date>/<time>            # best.pt on its own test split
python evaluate.py ckpt=path/to/last.pt split=dev
python evaluate.py ckpt=path/to/best.pt manifest=my_test.jsonl
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from asr.cli import check_overrides, run_job
from asr.config import register_configs, to_evaluate_config
from asr.evaluation import evaluate_checkpoint

register_configs()


@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="evaluate"
)
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    return run_job(lambda: evaluate_checkpoint(to_evaluate_config(cfg), run_dir)["cer"])


if __name__ == "__main__":
    check_overrides("evaluate")
    main()
