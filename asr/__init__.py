"""asr-sweep: DeepSpeech2-style speech recognizers trained and swept from Hydra configs."""

import os

# OpenMP threads that wait at a barrier spin this many times, then sleep. libgomp's default
# (300,000) made a 2-core training step 3-10x slower whenever another process took a core (the
# spinning threads steal the time of the one they wait for); 1,000 keeps the quiet-machine speed
# (bench/run.py --phases levers: 1.01x on a quiet machine). Read once, when torch loads
# OpenMP: this runs before any `asr` module imports torch. A value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
