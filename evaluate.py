"""Evaluate a checkpoint; the model, text and features are rebuilt from the checkpoint alone.

python evaluate.py ckpt=outputs/<date>/<time>            # best.pt on its own test split
python evaluate.py ckpt=path/to/last.pt split=dev
python evaluate.py ckpt=path/to/best.pt manifest=my_test.jsonl
python evaluate.py ckpt=<run> decode=beam                 # LM beam search (the [decode] extra)
python evaluate.py --multirun ckpt=<run> +sweep=decode_grid   # tune it on dev: see docs/decoding.md
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from asr.cli import check_overrides, evaluate_job, run_job
from asr.config import register_configs

register_configs()


@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="evaluate"
)
def main(cfg: DictConfig) -> float:
    """Returns the CER (or, with objective=wer, the WER) that a sweeper minimises."""
    return run_job(lambda: evaluate_job(cfg))


if __name__ == "__main__":
    check_overrides("evaluate")
    main()
