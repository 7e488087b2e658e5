"""Characters in, integer labels out: the seed's vocabulary and per-language normalization.

The seed maps `'` to 0, `<SPACE>` to 1, a..z to 2..27 and reserves 28 for the CTC blank, so a
model has 29 classes. Normalization turns raw corpus text into that alphabet:

- lowercase, `ñ -> ni` for Spanish (the seed's README rule, which its code never applied),
- accents stripped (`á -> a`, `ü -> u`), punctuation removed, whitespace collapsed,
- anything still outside the alphabet (digits, other scripts) is reported in `dropped`; the data
  pipeline skips such an utterance (its label would no longer match the audio) and counts the
  characters, so a corpus that needs a bigger alphabet says so instead of silently losing them.

A custom alphabet (`data.alphabet`: a file, one symbol per line, `<SPACE>` for the space) keeps
its own characters: accents are only stripped from characters the alphabet lacks, and Spanish
`ñ` becomes `ni` only when the alphabet has no `ñ`.
"""

from __future__ import annotations

import functools
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

SPACE = "<SPACE>"
SEED_SYMBOLS: tuple[str, ...] = ("'", SPACE, *string.ascii_lowercase)
LANGUAGES = ("es", "en")


@dataclass(frozen=True)
class Vocabulary:
    """Symbols in label order; the CTC blank is the extra class after the last symbol."""

    symbols: tuple[str, ...] = SEED_SYMBOLS

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"vocabulary has duplicate symbols: {self.symbols}")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @property
    def blank(self) -> int:
        return len(self.symbols)

    @property
    def n_class(self) -> int:
        return len(self.symbols) + 1

    def encode(self, text: str) -> list[int]:
        """Normalized text -> labels. Raises on a character outside the vocabulary."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        try:
            return [index[SPACE if c == " " else c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, labels: list[int]) -> str:
        """Labels -> text (the blank and unknown labels are skipped)."""
        out = []
        for label in labels:
            if 0 <= label < len(self.symbols):
                s = self.symbols[label]
                out.append(" " if s == SPACE else s)
        return "".join(out)

    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "blank": self.blank}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(tuple(d["symbols"]))

    @classmethod
    def from_file(cls, path: str | Path) -> Vocabulary:
        """An alphabet file: one symbol per line (a single character, or `<SPACE>`), in label
        order; blank lines and lines starting with `#` are skipped."""
        path = Path(path).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read alphabet file {path}: {e}") from None
        symbols = []
        for lineno, line in enumerate(lines, start=1):
            symbol = line.strip("\r\n")
            if not symbol.strip() or symbol.startswith("#"):
                continue
            symbol = symbol.strip()
            if symbol != SPACE and len(symbol) != 1:
                raise ValueError(
                    f"{path}:{lineno}: a symbol is one character or {SPACE} (got {symbol!r})"
                )
            symbols.append(symbol)
        if not symbols:
            raise ValueError(f"alphabet file {path} holds no symbols")
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"alphabet file {path} repeats {dupes}")
        return cls(tuple(symbols))

    @property
    def characters(self) -> frozenset[str]:
        """The text characters the labels stand for (`<SPACE>` as " ")."""
        return frozenset(" " if s == SPACE else s for s in self.symbols)


def make_vocabulary(alphabet: str | Path | None = None) -> Vocabulary:
    """The seed's 28 symbols (es and en), or a custom alphabet file."""
    return Vocabulary.from_file(alphabet) if alphabet else Vocabulary()


@dataclass
class Normalized:
    text: str
    dropped: Counter[str] = field(default_factory=Counter)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _char_rule(c: str, allowed: AbstractSet[str]) -> str | None:
    """What one character becomes: itself, its base letters, a space, "" (punctuation), or
    None when it is outside the alphabet (the utterance is dropped and the character counted).
    The rule is per character, which is what lets `Normalizer` apply it as a table."""
    if c not in allowed and not c.isspace():
        base = _strip_accents(c)  # á -> a, unless the alphabet has á itself
        if base and all(b in allowed for b in base):
            return base
    if c in allowed:
        return c
    if c.isspace() or c in "-_/":
        return " "  # word separators
    if unicodedata.category(c).startswith("P"):
        return ""  # punctuation carries no sound: removed by rule, not counted
    return None


class _Rules(dict):
    """`str.translate`'s table: each character's `_char_rule`, worked out the first time the
    character is met. A character outside the alphabet maps to itself, so it survives the
    translation and is found (and counted) afterwards."""

    def __init__(self, allowed: AbstractSet[str]):
        super().__init__()
        self.allowed = allowed

    def __missing__(self, code: int) -> str:
        c = chr(code)
        rule = _char_rule(c, self.allowed)
        self[code] = c if rule is None else rule
        return self[code]


class Normalizer:
    """`normalize` for one (language, alphabet): raw transcript -> alphabet text.

    Why a class: a corpus of millions of utterances is normalized at start-up, and a loop over
    characters in Python costs about 20 µs per transcript. The same per-character rule
    (`_char_rule`) applied through `str.translate` costs about 2 µs.
    """

    def __init__(self, language: str, vocab: Vocabulary | None = None):
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {'|'.join(LANGUAGES)} (got {language!r})")
        self.allowed = (vocab or Vocabulary()).characters
        rules = _Rules(self.allowed)
        # The replacements made before the per-character rule, folded into the same table:
        # Spanish ñ -> ni (before accent stripping, which would make it "n"), typographic
        # apostrophes -> "'".
        if language == "es" and "ñ" not in self.allowed:
            rules[ord("ñ")] = rules[ord("n")] + rules[ord("i")]
        rules[ord("’")] = rules[ord("`")] = rules[ord("'")]
        self._rules = rules
        self._kept = self.allowed | {" "}

    def __call__(self, text: str) -> Normalized:
        clean, dropped = self.split(text)
        return Normalized(clean, Counter(dropped))

    def split(self, text: str) -> tuple[str, str]:
        """(normalized text, the characters outside the alphabet, each occurrence): the
        allocation-free form of `__call__`, for reading a corpus."""
        if not text.isascii():  # (NFC leaves ASCII as it is)
            text = unicodedata.normalize("NFC", text)
        text = text.lower().translate(self._rules)
        dropped = ""
        if not self._kept.issuperset(text):
            dropped = "".join(c for c in text if c not in self._kept)
            text = "".join(c for c in text if c in self._kept)
        return " ".join(text.split()), dropped


@functools.lru_cache(maxsize=8)
def _normalizer(language: str, vocab: Vocabulary) -> Normalizer:
    return Normalizer(language, vocab)


def normalize(text: str, language: str, vocab: Vocabulary | None = None) -> Normalized:
    """Raw transcript -> text made only of `vocab` characters and single spaces: lowercase,
    Spanish `ñ -> ni`, accents stripped, punctuation removed, word separators made spaces,
    whitespace collapsed; characters still outside the alphabet are counted in `dropped`."""
    return _normalizer(language, vocab or Vocabulary())(text)


def oov_rate(texts: Iterable[str], known: Iterable[str]) -> float:
    """The fraction of word tokens in `texts` that are not in `known` (0.0 when there are none).

    Why tokens, not types: a word the LM never saw costs the decoder once per occurrence, so
    the token rate is what bounds the word error rate a language model can fix. `texts` are
    already normalized (`normalize(...).text`: words separated by single spaces), as an LM's
    training text and a corpus's references both are, so that `Niño` and `ninio` count as one.
    """
    vocabulary = known if isinstance(known, AbstractSet) else set(known)
    tokens = unknown = 0
    for text in texts:
        words = text.split()
        tokens += len(words)
        unknown += sum(w not in vocabulary for w in words)
    return unknown / tokens if tokens else 0.0
