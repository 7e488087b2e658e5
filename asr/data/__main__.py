"""`python -m asr.data prepare|check|shard ...`: the data command line.

- `prepare <recipe> --root DIR --out DIR`: a corpus as downloaded -> NeMo-style JSONL manifests.
- `check MANIFEST [--fix OUT]`: read every entry, report what is wrong by kind, optionally clean.
- `shard --manifest M --out DIR --shard-size N`: tar shards and their index, for `data=shards`.
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m asr.data {prepare,check,shard} ... (add --help after one for its options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "prepare":
        from asr.data.recipes.cli import main as prepare_main

        return prepare_main(rest)
    if command == "check":
        from asr.data.check import main as check_main

        return check_main(rest)
    if command == "shard":
        from asr.data.shard_write import main as shard_main

        return shard_main(rest)
    print(f"unknown command {command!r}; {USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
