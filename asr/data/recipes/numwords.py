"""Numbers as words, for transcripts that write digits where the speaker says words.

The alphabet has no digits: a transcript with "marque 1" would be skipped in training (or worse,
trained as "marque"). Cardinals in Spanish and American English, 0 .. 10**12 - 1; decimals
are read "<integer> punto|point <digit> <digit>...".
"""

from __future__ import annotations

import re


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ES_UNITS = _words(
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
    "dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés "
    "veinticuatro veinticinco veintiséis veintisiete veintiocho veintinueve"
)
_ES_TENS = _words("_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa")
_ES_HUNDREDS = _words(
    "_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos "
    "ochocientos novecientos"
)
_EN_UNITS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_EN_TENS = _words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")

LIMIT = 10**12
POINT = {"es": "punto", "en": "point"}


def _es_below_1000(n: int) -> str:
    if n == 100:
        return "cien"
    hundreds, rest = divmod(n, 100)
    parts = [_ES_HUNDREDS[hundreds]] if hundreds else []
    if rest < 30:
        if rest or not parts:
            parts.append(_ES_UNITS[rest])
    else:
        tens, unit = divmod(rest, 10)
        parts.append(_ES_TENS[tens] + (f" y {_ES_UNITS[unit]}" if unit else ""))
    return " ".join(parts)


def _es_apocope(words: str) -> str:
    """`uno` drops its last vowel before a noun: veintiún mil, treinta y un millones."""
    if words.endswith("veintiuno"):
        return words[: -len("uno")] + "ún"
    if words.endswith("uno"):
        return words[:-1]
    return words


def spanish(n: int) -> str:
    """0 -> cero, 21 -> veintiuno, 100 -> cien, 1001 -> mil uno, 21000 -> veintiún mil."""
    if not 0 <= n < LIMIT:
        raise ValueError(f"{n} is outside 0..{LIMIT - 1}")
    if n == 0:
        return "cero"
    millions, rest = divmod(n, 10**6)
    thousands, units = divmod(rest, 1000)
    parts = []
    if millions:
        parts.append("un millón" if millions == 1 else f"{_es_apocope(spanish(millions))} millones")
    if thousands:
        parts.append("mil" if thousands == 1 else f"{_es_apocope(_es_below_1000(thousands))} mil")
    if units:
        parts.append(_es_below_1000(units))
    return " ".join(parts)


def _en_below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{_EN_UNITS[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        parts.append(_EN_TENS[tens] + (f"-{_EN_UNITS[unit]}" if unit else ""))
    elif rest or not parts:
        parts.append(_EN_UNITS[rest])
    return " ".join(parts)


def english(n: int) -> str:
    """0 -> zero, 21 -> twenty-one, 101 -> one hundred one, 8500 -> eight thousand five
    hundred (American usage: no "and")."""
    if not 0 <= n < LIMIT:
        raise ValueError(f"{n} is outside 0..{LIMIT - 1}")
    if n == 0:
        return "zero"
    parts = []
    for scale, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        count, n = divmod(n, scale)
        if count:
            parts.append(f"{_en_below_1000(count)} {name}")
    if n:
        parts.append(_en_below_1000(n))
    return " ".join(parts)


CARDINAL = {"es": spanish, "en": english}


def digits(text: str, language: str) -> str:
    """Each digit on its own: "007" -> "cero cero siete"."""
    return " ".join(CARDINAL[language](int(d)) for d in text)


def number(text: str, language: str) -> str:
    """A run of digits, optionally with a decimal point, as words. Leading zeros and numbers
    too long for a cardinal are read digit by digit."""
    integer, _, fraction = text.partition(".")
    if (len(integer) > 1 and integer.startswith("0")) or int(integer) >= LIMIT:
        words = digits(integer, language)
    else:
        words = CARDINAL[language](int(integer))
    if fraction:
        words += f" {POINT[language]} {digits(fraction, language)}"
    return words


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NAME_BEFORE = re.compile(r"[^\W\d_][.-]?$")  # a letter, maybe a dot or dash, then the number


def spell_numbers(text: str, language: str) -> str:
    """Every number in `text` as words, set apart by spaces ("3D" -> "three D")."""
    if language not in CARDINAL:
        raise ValueError(f"no number words for language {language!r}")

    def spoken(m: re.Match[str]) -> str:
        # A space where the number touches a word or a dot, which normalization would delete
        # ("H.323" -> "H. three hundred ..."), none before punctuation ("press 5." stays).
        before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
        left = " " if before.isalnum() or before == "." else ""
        right = " " if after.isalnum() else ""
        # A number glued to a name is a model or protocol ("H.323", "G729"): said digit by
        # digit, as the Asterisk prompts do ("h tres dos tres").
        named = _NAME_BEFORE.search(text, 0, m.start()) is not None
        words = digits(m.group(), language) if named else number(m.group(), language)
        return f"{left}{words}{right}"

    return _NUMBER.sub(spoken, text)
