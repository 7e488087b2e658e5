"""asr-sweep's Hydra launcher plugins (see slurm_launcher)."""
