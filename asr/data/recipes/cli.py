"""`python -m asr.data prepare <recipe> [--root DIR] --out DIR [options]`.

Writes `<out>/{train,dev,test}.jsonl` (asterisk also `all.jsonl`) and prints their paths; a
problem (missing root, unknown recipe, nothing usable) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.data.recipes import REGISTRY, ROOT_OPTIONAL, RecipeError, prepare
from asr.schema import RecipeSpec


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage too; one line is enough
        raise RecipeError(message)


def build_parser() -> argparse.ArgumentParser:
    defaults = RecipeSpec()
    parser = _Parser(
        prog="python -m asr.data prepare",
        description="Turn a corpus as downloaded into NeMo-style JSONL manifests.",
    )
    parser.add_argument("recipe", help=" | ".join(REGISTRY))
    parser.add_argument(
        "--root",
        help="the corpus folder (asterisk: optional, omitted or 'fetch' downloads the packages)",
    )
    parser.add_argument("--out", required=True, help="folder for the manifests")
    parser.add_argument(
        "--language", choices=("es", "en"), help="default: en for librispeech, else es"
    )
    for split in ("train", "dev", "test"):
        parser.add_argument(
            f"--{split}",
            default=None,
            help=f"corpus part(s) for {split} (comma-separated; '' for none)",
        )
    parser.add_argument("--table", default=defaults.table, help="folder: the transcript table")
    parser.add_argument("--dev-fraction", type=float, default=defaults.dev_fraction)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        if args.recipe not in REGISTRY:
            raise RecipeError(f"unknown recipe {args.recipe!r}; one of {', '.join(REGISTRY)}")
        if args.root is None and args.recipe not in ROOT_OPTIONAL:
            raise RecipeError(f"{args.recipe}: --root is required (the corpus folder)")
        root = None if args.root in (None, "fetch") else Path(args.root).expanduser()
        if root is not None and not root.is_dir():
            raise RecipeError(f"{args.recipe}: root folder not found: {root}")
        language = args.language or ("en" if args.recipe == "librispeech" else "es")
        spec = RecipeSpec(
            train=args.train,
            dev=args.dev,
            test=args.test,
            table=args.table,
            dev_fraction=args.dev_fraction,
            test_fraction=args.test_fraction,
        )
        manifests = prepare(args.recipe, root, Path(args.out).expanduser(), spec, language)
    except (RecipeError, OSError, ValueError) as e:  # ValueError: RecipeSpec's own checks
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, path in manifests.items():
        print(f"{split}: {path}")
    return 0
