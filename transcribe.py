"""Transcribe audio files with a checkpoint: one JSON line per file, with word times.

python transcribe.py ckpt=outputs/<date>/<time> input=recordings/ out=transcripts.jsonl
python transcribe.py ckpt=<run> input=talk.flac decode=beam        # LM beam search
python transcribe.py ckpt=<run> input=test.jsonl runtime=onnx      # onnxruntime
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from asr.cli import check_overrides, run_job
from asr.config import register_configs, to_transcribe_config
from asr.transcription import transcribe_files

register_configs()


@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="transcribe"
)
def main(cfg: DictConfig) -> None:
    run_job(lambda: transcribe_files(to_transcribe_config(cfg)))


if __name__ == "__main__":
    check_overrides("transcribe")
    main()
