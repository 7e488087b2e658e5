"""Asterisk's core telephone prompts: real recorded speech (one speaker, 8 kHz WAV), with a
transcript, from the Debian packages `asterisk-core-sounds-<lang>-wav` (audio) and
`asterisk-core-sounds-<lang>` (the transcript `core-sounds-<lang>.txt.gz` under usr/share/doc).

About 480 Spanish (es_MX) and 550 English (en_US) prompts, 30 minutes each: too little to
train on, so its main use is evaluating a model on real (telephone) speech:

    python -m asr.data prepare asterisk --language es --out data/asterisk-es
    python evaluate.py ckpt=<run dir> manifest=data/asterisk-es/all.jsonl

`all.jsonl` holds every prompt; train/dev/test are split by a hash of the prompt name (the
fractions of the spec) so that `data=asterisk` can also train, e.g. to fine-tune.

Where the data comes from (`root`):
- None (or the word `fetch`): `apt-get download` both packages into `<out>/debs` and unpack them
  with `dpkg-deb -x` into `<out>/unpacked`; needs no root and works on slim systems whose
  installed packages lack /usr/share/doc. The downloaded .debs are deleted after unpacking.
- a folder holding the two .deb files: unpacked the same way.
- an unpacked or installed tree: the sounds folder (`.../sounds/es_MX_f_Allison` or
  `.../sounds/es`, or a folder above them such as /usr/share/asterisk) is found inside it, the
  transcript in it, in its `usr/share/doc/...`, or in the system's /usr/share/doc.

The transcript needs rewriting, as it is meant for people (see `clean_text`): digits and `#`,
`*` become the words the speaker says, tones and silences in brackets are dropped, and for a key
given twice the first line is kept (Spanish `digits/0` reads "cero", then "diez", which is
`digits/10`'s text under a wrong key: 0.wav says "cero", it is the farthest of all digits
from 10.wav by DTW of MFCCs). Numbers glued to a name are said digit by digit ("H.323" is
"h tres dos tres" in both languages, checked the same way).
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

from asr.data.recipes.common import (
    SPLITS,
    Log,
    ManifestBuilder,
    RecipeError,
    RecipeSpec,
    Skips,
    check_fractions,
    finish,
    hash_split,
)
from asr.data.recipes.numwords import spell_numbers

LANGUAGES = ("es", "en")
FETCH = "fetch"  # root value that means: download the packages
SYSTEM_DOC = Path("/usr/share/doc")
# What the speaker says for the phone keys. The Spanish prompts call # "tecla de número"
# (digits/pound and every "seguido por la tecla de numero"), not Spain's "almohadilla";
# the English ones say "pound" and "star" (digits/pound, digits/star).
KEY_WORDS = {
    "es": {"#": "tecla de número", "*": "asterisco"},
    "en": {"#": "pound", "*": "star"},
}
_WHOLE_ANNOTATION = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\))\s*$")  # "[tono simple]", "(1 second..)"
_NOTE = re.compile(r"\s*\([^)]*\)")  # `IAX (note: does not say "2")`
_BRACKET = re.compile(r"\[([^\]]*)\]")  # "at [@]" (a symbol hint), "saludos [temporales]"


def packages(language: str) -> tuple[str, str]:
    return f"asterisk-core-sounds-{language}-wav", f"asterisk-core-sounds-{language}"


def transcript_name(language: str) -> str:
    return f"core-sounds-{language}.txt"


def clean_text(text: str, language: str) -> str | None:
    """The words of a prompt as spoken, or None for a non-speech one (a tone, a silence).

    Bracketed hints: a symbol (`dot [.]`) is dropped, a word (`saludos [temporales]`) is kept,
    as the speaker says it; a parenthesized note is dropped.
    """
    if _WHOLE_ANNOTATION.match(text):
        return None
    text = _NOTE.sub("", text)
    text = _BRACKET.sub(lambda m: m.group(1) if re.search(r"[^\W\d_]", m.group(1)) else "", text)
    for key, words in KEY_WORDS[language].items():
        text = text.replace(key, f" {words} ")
    text = spell_numbers(text, language)
    text = " ".join(text.split())
    return text or None


def read_transcript(path: Path) -> tuple[dict[str, str], Skips]:
    """key -> raw text (the first line of a repeated key), and what was skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    prompts: dict[str, str] = {}
    skips = Skips()
    for lineno, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        key, sep, text = line.partition(":")
        key, text = key.strip(), text.strip()
        if not sep or not key or " " in key:
            skips.add("line without key: text", f"{path.name}:{lineno}")
        elif key in prompts:
            skips.add("repeated key (first kept)", f"{key}: {text!r} (kept {prompts[key]!r})")
        else:
            prompts[key] = text
    return prompts, skips


def download(language: str, debs: Path, log: Log) -> None:
    """`apt-get download` of both packages into `debs` (no root needed)."""
    debs.mkdir(parents=True, exist_ok=True)
    names = packages(language)
    log(f"asterisk: apt-get download {' '.join(names)} into {debs} ...")
    try:
        done = subprocess.run(
            ["apt-get", "download", *names], cwd=debs, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise RecipeError(
            "asterisk: apt-get not found; download the packages "
            f"{' and '.join(names)} yourself and pass their folder as root"
        ) from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("E:")] or [
            ln for ln in done.stderr.splitlines() if ln.strip()
        ]
        reason = lines[-1] if lines else f"exit {done.returncode}"
        raise RecipeError(f"asterisk: apt-get download {' '.join(names)} failed: {reason}")


def unpack(debs: list[Path], dest: Path, log: Log) -> None:
    """`dpkg-deb -x` each package into `dest` (works without root)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for deb in debs:
        try:
            done = subprocess.run(
                ["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True
            )
        except FileNotFoundError:
            raise RecipeError(
                f"asterisk: dpkg-deb not found to unpack {deb}; unpack it yourself "
                "and pass the folder as root"
            ) from None
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise RecipeError(f"asterisk: cannot unpack {deb}: {reason}")
    log(f"asterisk: unpacked {', '.join(d.name for d in debs)} into {dest}")


def find_debs(folder: Path, language: str) -> list[Path]:
    found = []
    for name in packages(language):
        found += sorted(folder.glob(f"{name}_*.deb"))[-1:]  # the newest version of each
    return found


def find_sounds(base: Path, language: str) -> Path | None:
    """The prompts folder of `language` in or under `base` (recognised by its digits/)."""
    candidates: list[Path] = []
    for parent in (base, base / "sounds", base / "usr/share/asterisk/sounds"):
        candidates += [parent / language, *sorted(parent.glob(f"{language}_*"))]
    candidates.append(base)  # base is the prompts folder itself
    return next((c for c in candidates if (c / "digits").is_dir()), None)


def find_transcript(bases: list[Path], language: str) -> Path | None:
    name = transcript_name(language)
    doc = f"asterisk-core-sounds-{language}"
    folders = [f for base in bases for f in (base, base / "usr/share/doc" / doc)]
    for folder in [*folders, SYSTEM_DOC / doc]:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def locate(root: Path | None, out: Path, language: str, log: Log) -> tuple[Path, Path]:
    """(prompts folder, transcript file), downloading and unpacking the packages if asked."""
    if root is None or str(root) == FETCH:
        debs_dir = out / "debs"
        download(language, debs_dir, log)
        unpack(find_debs(debs_dir, language), out / "unpacked", log)
        shutil.rmtree(debs_dir)
        base = out / "unpacked"
    else:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise RecipeError(f"asterisk: root folder not found: {root}")
        debs = find_debs(root, language)
        if debs:
            unpack(debs, out / "unpacked", log)
            base = out / "unpacked"
        else:
            base = root
    sounds = find_sounds(base, language)
    if sounds is None:
        raise RecipeError(
            f"asterisk: no {language} prompts (a folder with digits/) in {base}; "
            f"omit the root to download {packages(language)[0]}"
        )
    transcript = find_transcript([base, sounds], language)
    if transcript is None:
        raise RecipeError(
            f"asterisk: transcript {transcript_name(language)}.gz not found in {base} nor "
            f"{SYSTEM_DOC}/asterisk-core-sounds-{language}; omit the root to download it"
        )
    return sounds, transcript


def prepare(
    root: Path | None, out: Path, spec: RecipeSpec, language: str, log: Log = print
) -> dict[str, Path]:
    """Split -> manifest (`train`, `dev`, `test` by hash of the prompt name, and `all`)."""
    if language not in LANGUAGES:
        raise RecipeError(f"asterisk: language must be {'|'.join(LANGUAGES)} (got {language!r})")
    check_fractions(spec.dev_fraction, spec.test_fraction)
    out.mkdir(parents=True, exist_ok=True)
    sounds, transcript = locate(root, out, language, log)
    prompts, skips = read_transcript(transcript)
    # The files as named on disk: a few keys differ in case (digits/1f -> digits/1F.wav).
    wavs = {p.relative_to(sounds).with_suffix("").as_posix(): p for p in sounds.rglob("*.wav")}
    wavs_lower = {key.lower(): path for key, path in wavs.items()}

    builders = {split: ManifestBuilder(out, split) for split in (*SPLITS, "all")}
    for key, raw in prompts.items():
        if not raw:
            skips.add("empty transcript", key)
            continue
        text = clean_text(raw, language)
        if text is None:
            skips.add("non-speech (a tone or silence)", f"{key}: {raw}")
            continue
        wav = wavs.get(key) or wavs_lower.get(key.lower())
        if wav is None:
            skips.add("no audio file", f"{key}.wav")
            continue
        split = hash_split(key, spec.dev_fraction, spec.test_fraction)
        for name in (split, "all"):
            builders[name].add(wav, text, key)
    log(
        f"asterisk {language}: {len(prompts)} prompts in {transcript}, audio in {sounds}; "
        f"skipped: {skips.summary()}"
    )
    skips.log_details(log, "asterisk")
    keys = {key.lower() for key in prompts}
    untranscribed = sorted(f"{key}.wav" for key in wavs if key.lower() not in keys)
    if untranscribed:
        shown = ", ".join(untranscribed[:5])
        log(f"asterisk: {len(untranscribed)} recordings have no transcript line, e.g. {shown}")
    return finish(builders, log, "asterisk", sounds)
