"""N-gram language models of words or of characters, with interpolated modified Kneser-Ney
smoothing, as ARPA files.

Written here because the usual builder, KenLM's `lmplz`, is not on PyPI (the `kenlm` package
has only the query side) and no distribution packages it. The model is the one `lmplz` builds
(Chen & Goodman's interpolated modified Kneser-Ney, three discounts per order from the
count-of-counts), for the corpus sizes speech recipes have: every count is held in memory.

    python -m asr.lm build --text corpus.txt --order 3 --out lm.arpa
    python -m asr.lm build --manifest train.jsonl --order 3 --out lm.arpa --language es
    python -m asr.lm build --ckpt outputs/<date>/<time> --order 3 --out lm.arpa   (asr.lm.cli)
    python -m asr.lm build --text corpus.txt --unit char --order 6 --out chars.arpa

Text is normalised with the project's own normaliser (`asr.text.normalize`), so the LM's words
are the words the acoustic model spells. A character LM (`unit="char"`) sees each sentence as
its characters with `WORD_BOUNDARY` between words: the name of the beam search's silence
token, which the decoder scores with the LM like any other (`asr.decoding.beam`). Beside it
goes `<lm>.words`, the words of its text, which says what the LM has seen: the decoder can
spell others, and a report counts how many of a test set's words are new to it.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.data.manifest import read_manifest
from asr.disk import write_atomic
from asr.text import Vocabulary, normalize

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
UNITS = ("word", "char")
WORD_BOUNDARY = "<sil>"  # a character LM's token between words
MAX_ORDER = 6  # the highest order the KenLM inside flashlight-text (and pip's kenlm) loads
DEFAULT_ORDER = {"word": 3, "char": 6}
Gram = tuple[str, ...]


@dataclass
class NgramModel:
    """Per order n (1-based): log10 p(w | h) of each seen n-gram, and log10 backoff of each
    n-gram that is the context of a longer one."""

    order: int
    logprob: list[dict[Gram, float]]
    backoff: list[dict[Gram, float]]

    def to_arpa(self) -> str:
        lines = ["\\data\\"]
        lines += [f"ngram {n}={len(self.logprob[n - 1])}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for gram, lp in sorted(self.logprob[n - 1].items()):
                bo = self.backoff[n - 1].get(gram)
                row = f"{lp:.6f}\t{' '.join(gram)}"
                lines.append(row if bo is None else f"{row}\t{bo:.6f}")
        return "\n".join([*lines, "", "\\end\\", ""])

    def prob(self, word: str, context: Sequence[str]) -> float:
        """p(word | context) by ARPA back-off semantics (for checks and tests)."""
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        backoff = 0.0
        while True:
            gram = (*context, word)
            if gram in self.logprob[len(gram) - 1]:
                return 10 ** (backoff + self.logprob[len(gram) - 1][gram])
            if not context:
                return 10 ** (backoff + self.logprob[0][(UNK,)])
            backoff += self.backoff[len(context) - 1].get(context, 0.0)
            context = context[1:]


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> list[Counter[Gram]]:
    """Raw counts of every n-gram up to `order`, each sentence within <s> ... </s>."""
    counts: list[Counter[Gram]] = [Counter() for _ in range(order)]
    for words in sentences:
        padded = [BOS, *words, EOS]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                counts[n - 1][tuple(padded[i : i + n])] += 1
    return counts


def kn_counts(raw: list[Counter[Gram]]) -> list[Counter[Gram]]:
    """The counts Kneser-Ney estimates from: raw counts at the highest order and for n-grams
    that start a sentence; for the others, how many distinct words precede them."""
    order = len(raw)
    adjusted = [Counter() for _ in range(order)]
    adjusted[-1] = Counter(raw[-1])
    for n in range(order - 1, 0, -1):  # n-grams of length n get the left extensions of n+1
        for gram in raw[n]:
            adjusted[n - 1][gram[1:]] += 1
        for gram, c in raw[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = c
    return adjusted


def discounts(counts: Counter[Gram]) -> tuple[float, float, float]:
    """Modified Kneser-Ney's D1, D2, D3+ from the count-of-counts (Chen & Goodman)."""
    n = Counter(min(c, 4) for c in counts.values())
    n1, n2, n3, n4 = (n.get(k, 0) for k in (1, 2, 3, 4))
    fallback = (0.5, 1.0, 1.5)  # what `lmplz --discount_fallback` uses
    if not (n1 and n2 and n3 and n4):  # too little data for the estimate
        return fallback
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    # Each discount must lie in (0, k): small or odd corpora can push the estimate outside.
    return d if all(0 < dk < k for k, dk in enumerate(d, start=1)) else fallback


def build(sentences: Iterable[Sequence[str]], order: int) -> NgramModel:
    """An interpolated modified Kneser-Ney model of `order` over tokenised `sentences`."""
    if order < 1:
        raise ValueError(f"order must be >= 1 (got {order})")
    adjusted = kn_counts(count_ngrams(sentences, order))
    vocab = {g[0] for g in adjusted[0]} | {UNK}
    logprob: list[dict[Gram, float]] = [{} for _ in range(order)]
    backoff: list[dict[Gram, float]] = [{} for _ in range(order)]
    lower: dict[Gram, float] = {}  # p of the order below, for interpolation
    for n in range(1, order + 1):
        counts = adjusted[n - 1]
        d = discounts(counts)
        by_context: dict[Gram, dict[str, int]] = defaultdict(dict)
        for gram, c in counts.items():
            if gram[-1] != BOS:  # <s> is never predicted
                by_context[gram[:-1]][gram[-1]] = c
        probs: dict[Gram, float] = {}
        for context, nexts in by_context.items():
            total = sum(nexts.values())
            kinds = Counter(min(c, 3) for c in nexts.values())
            gamma = sum(d[k - 1] * kinds[k] for k in (1, 2, 3)) / total
            if n > 1:
                backoff[n - 2][context] = gamma
            for word, c in nexts.items():
                below = lower[(*context[1:], word)] if n > 1 else 1 / (len(vocab) - 1)
                probs[(*context, word)] = max(c - d[min(c, 3) - 1], 0) / total + gamma * below
        if n == 1:  # <unk> gets its share of the uniform distribution the unigrams interpolate
            probs[(UNK,)] = max(1 - sum(probs.values()), 1e-99)
        lower = probs
        logprob[n - 1] = {g: math.log10(p) for g, p in probs.items()}
    logprob[0][(BOS,)] = -99.0  # in the vocabulary as a context only
    for n in range(1, order):  # every context of a longer n-gram carries a backoff weight
        for context, gamma in list(backoff[n - 1].items()):
            backoff[n - 1][context] = math.log10(gamma) if gamma > 0 else -99.0
    return NgramModel(order, logprob, backoff)


def sentences_of(
    lines: Iterable[str], *, language: str, vocab: Vocabulary | None = None
) -> Iterator[list[str]]:
    """Each line normalised as transcripts are (`asr.text.normalize`), split into words;
    lines left empty are skipped."""
    for line in lines:
        words = normalize(line, language, vocab).text.split()
        if words:
            yield words


def char_tokens(words: Sequence[str]) -> list[str]:
    """A sentence as a character LM sees it: its characters, `WORD_BOUNDARY` between words."""
    tokens: list[str] = []
    for i, word in enumerate(words):
        if i:
            tokens.append(WORD_BOUNDARY)
        tokens.extend(word)
    return tokens


def build_lm(sentences: Sequence[Sequence[str]], *, order: int, unit: str) -> NgramModel:
    """An n-gram of `unit`s (word or char) over sentences given as lists of words."""
    if unit not in UNITS:
        raise ValueError(f"unit must be {'|'.join(UNITS)} (got {unit!r})")
    return build(map(char_tokens, sentences) if unit == "char" else sentences, order)


def write_lm(
    model: NgramModel, out: Path, *, unit: str, sentences: Sequence[Sequence[str]]
) -> Path:
    """Write the ARPA file (through a temporary file: a reader never sees half of it, and a
    full disk says so in one line) and, for a character LM, `<out>.words`: the distinct words
    of its text, one per line."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {out: model.to_arpa()}
    if unit == "char":  # first: an ARPA file on disk has its word list
        words = sorted({w for s in sentences for w in s})
        files = {words_path(out): "".join(f"{w}\n" for w in words), **files}
    for path, text in files.items():
        write_atomic(path, text.encode("utf-8"))
    return out


def words_path(lm: Path) -> Path:
    return Path(str(lm) + ".words")


def arpa_unigrams(path: Path) -> list[str]:
    """The 1-grams of an ARPA file, without <s>, </s> and <unk>."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if in_unigrams:
                    break
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                parts = line.split()
                if len(parts) >= 2 and parts[1] not in (BOS, EOS, UNK):
                    words.append(parts[1])
    return words


def is_arpa(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(b"\\data\\")


def lm_unit(path: Path) -> str | None:
    """The unit of an ARPA file's LM, "char" (it has `WORD_BOUNDARY` among its 1-grams) or
    "word"; None for a KenLM binary, which does not say."""
    if not is_arpa(path):
        return None
    return "char" if WORD_BOUNDARY in arpa_unigrams(path) else "word"


def known_words(path: Path) -> set[str] | None:
    """The words an LM has seen: a word LM's 1-grams, or a character LM's `.words` file; None
    where neither says (a KenLM binary, a character LM without its word list)."""
    if words_path(path).is_file():
        return set(words_path(path).read_text(encoding="utf-8").split())
    return set(arpa_unigrams(path)) if lm_unit(path) == "word" else None


def cached_lm(
    manifest: Path,
    *,
    order: int,
    language: str,
    vocab: Vocabulary,
    cache_dir: Path,
    unit: str = "word",
) -> Path:
    """An LM of a training manifest's transcripts, built once and kept in `cache_dir` under a
    name made of the manifest's content: what `decode.lm=auto` uses."""
    text = Path(manifest).read_bytes()
    key = f"{order}{language}{vocab.symbols}{'' if unit == 'word' else unit}"
    digest = hashlib.sha256(text + key.encode()).hexdigest()[:12]
    name = f"{Path(manifest).stem}-{'' if unit == 'word' else unit + '-'}{digest}.arpa"
    path = Path(cache_dir).expanduser() / "lm" / name
    if not path.is_file():
        lines = [e.text for e in read_manifest(manifest)]
        sentences = list(sentences_of(lines, language=language, vocab=vocab))
        write_lm(build_lm(sentences, order=order, unit=unit), path, unit=unit, sentences=sentences)
        print(f"built a {order}-gram {unit} LM of {manifest}'s transcripts: {path}")
    return path
