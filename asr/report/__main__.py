import sys

from asr.report import main

sys.exit(main())
