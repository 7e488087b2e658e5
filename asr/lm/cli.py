"""`python -m asr.lm build ...`: an ARPA file from text, manifests, or a checkpoint's training
transcripts. The command line apart from `asr.lm`, which depends on text and manifests only:
`--ckpt` reads a checkpoint, which needs torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.data.manifest import ManifestError, read_manifest
from asr.lm import DEFAULT_ORDER, MAX_ORDER, UNITS, build_lm, sentences_of, write_lm
from asr.text import LANGUAGES, make_vocabulary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asr.lm", description="Word or character n-gram LMs as ARPA files"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="an ARPA file from text or from manifests' transcripts")
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", type=Path, help="a text file, one sentence per line")
    source.add_argument("--manifest", type=Path, nargs="+", help="JSONL manifests (their text)")
    source.add_argument(
        "--ckpt", help="a checkpoint or run directory: its training transcripts, language, alphabet"
    )
    b.add_argument(
        "--unit",
        choices=UNITS,
        default="word",
        help="word: for decode.unit=word (a lexicon); char: for decode.unit=char (the default "
        "beam search, lexicon-free), written with <out>.words, the words of its text",
    )
    b.add_argument("--order", type=int, help="n-gram order (default: 3 for words, 6 for chars)")
    b.add_argument("--language", default="es", choices=LANGUAGES)
    b.add_argument("--alphabet", help="a custom alphabet file, as data.alphabet")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle a --ckpt that needs more than tensors and plain values (it can run code)",
    )
    a = parser.parse_args(argv)
    a.order = DEFAULT_ORDER[a.unit] if a.order is None else a.order
    if not 1 <= a.order <= MAX_ORDER:
        parser.error(
            f"--order must be in 1..{MAX_ORDER}, what the decoder's KenLM loads (got {a.order})"
        )
    try:
        vocab = make_vocabulary(a.alphabet)
        if a.text:
            lines = a.text.read_text(encoding="utf-8").splitlines()
        elif a.manifest:
            lines = [e.text for m in a.manifest for e in read_manifest(m)]
        else:
            from asr.checkpoint import checkpoint_source  # torch: only for --ckpt

            manifest, a.language, vocab = checkpoint_source(
                a.ckpt, "train", trust=a.trust_checkpoint
            )
            a.manifest = [manifest]
            lines = [e.text for e in read_manifest(manifest)]
    except (OSError, UnicodeDecodeError, ManifestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sentences = list(sentences_of(lines, language=a.language, vocab=vocab))
    if not sentences:
        print(f"error: no words in {a.text or ' '.join(map(str, a.manifest))}", file=sys.stderr)
        return 2
    model = build_lm(sentences, order=a.order, unit=a.unit)
    write_lm(model, a.out, unit=a.unit, sentences=sentences)
    sizes = ", ".join(f"{len(g):,} {n + 1}-grams" for n, g in enumerate(model.logprob))
    words = len({w for s in sentences for w in s})
    print(
        f"wrote {a.out}: a {a.unit} LM of {len(sentences):,} sentences ({words:,} words), {sizes}"
    )
    return 0
