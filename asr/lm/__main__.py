import sys

from asr.lm.cli import main

sys.exit(main())
