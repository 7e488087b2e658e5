"""The default corpus `synth_es`: generated Spanish sentences spoken by espeak-ng voices.

Why: the project must train and be evaluated out of the box, with no download and no licence
question. An hour of synthetic speech is enough for a DeepSpeech2-style model to learn
something measurable in minutes, and the held-out voice variants in the test split measure
whether it generalises to voices it never heard.

Held-out vocabulary: some rare content words never occur in train (a train sentence that
contains one is skipped), while dev and test take their sentences unfiltered. Their transcripts
then hold words that an LM built from the training transcripts never saw, at a stable rate, as
a real corpus's do; without it the generator's lexicon is covered by a few hours of train, and
decoding would never be measured on unseen words. The held-out words depend on the seed alone.

Layout of a built corpus (`<cache_dir>/synth_es-<hash>/`):

    audio/{train,dev,test}/<id>.flac   16 kHz mono PCM_16 FLAC
    {train,dev,test}.jsonl             NeMo-style manifests, audio paths relative to the corpus
    info.json                          spec, variants per split, counts, hours, OOV rates,
                                       timings, versions
    held_out_words.txt                 the normalized words kept out of train, one a line
    voices.tsv                         voice, variant, rate and pitch of every utterance
    DONE                               written last: the corpus is complete

The directory name hashes the spec and the generator versions, so a changed spec or generator
builds a new corpus instead of reusing a stale one. Building is atomic and safe under
concurrency (several sweep jobs starting at once): an exclusive `flock` on
`<cache_dir>/<name>.lock` guards check-and-build, the corpus is built in a temporary sibling
directory and renamed into place once complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as F

from asr.data import sentences_es
from asr.data.cache import build_once
from asr.data.espeak import Espeak
from asr.text import normalize, oov_rate

CORPUS_NAME = "synth_es"
CORPUS_VERSION = "3"  # bump when the corpus recipe changes, so caches rebuild
SPLITS = ("train", "dev", "test")
VOICES = ("es", "es-419")
RATE_RANGE = (120, 200)  # words per minute
PITCH_RANGE = (25, 75)  # espeak pitch, 0..100
TEST_VARIANT_FRACTION = 0.2
INFO_FILE = "info.json"
VOICES_FILE = "voices.tsv"  # how each utterance was spoken: split, id, voice, variant, rate, pitch
HELD_OUT_FILE = "held_out_words.txt"
# Held-out words are drawn until they make up this share of the word tokens of the reference
# sentences, so dev and test hold them at about that rate. The generator's rarer words are
# already unseen in an hour of train (6.2% of test tokens, measured); 3% more keeps the default
# corpus's test OOV rate within 5-10% (8.4%), and leaves a floor when train_hours grows and
# covers the rest of the lexicon.
HELD_OUT_SHARE = 0.03
# Candidates are rarer than this share of tokens: real unseen words are rare ones, and holding
# out a common word ("comprar", "semana") would skip a whole kind of sentence in train.
HELD_OUT_MAX_WORD_SHARE = 0.001
HELD_OUT_MIN_LENGTH = 4  # shorter words are mostly function words: a, el, de, que, mis, muy
# The sentences whose word counts choose the held-out words: a fixed number, so that the choice
# depends on the seed alone, not on how many utterances the spec asks for.
HELD_OUT_REFERENCE = 5000


@dataclass
class SynthSpec:
    """What to build. Every field goes into the corpus directory's hash."""

    train_hours: float = 1.0  # about an hour of training audio by default
    dev_utterances: int = 300
    test_utterances: int = 300
    sample_rate: int = 16000
    seed: int = 0

    def canonical(self) -> dict:
        """Fields with fixed types, so 1 and 1.0 (from a YAML file or a CLI) hash alike."""
        return {
            "train_hours": float(self.train_hours),
            "dev_utterances": int(self.dev_utterances),
            "test_utterances": int(self.test_utterances),
            "sample_rate": int(self.sample_rate),
            "seed": int(self.seed),
        }


def _versions() -> dict[str, str]:
    return {
        "corpus_version": CORPUS_VERSION,
        "sentences_generator_version": sentences_es.GENERATOR_VERSION,
    }


def synth_corpus_dir(cache_dir: Path, spec: SynthSpec) -> Path:
    """`cache_dir / synth_es-<hash>`: the hash covers the spec and the recipe versions."""
    payload = json.dumps({**spec.canonical(), **_versions()}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    return Path(cache_dir).expanduser() / f"{CORPUS_NAME}-{digest}"


def _manifests(corpus: Path) -> dict[str, Path]:
    return {split: corpus / f"{split}.jsonl" for split in SPLITS}


def build_synth_corpus(
    cache_dir: str | Path, spec: SynthSpec, log: Callable[[str], None] = print
) -> dict[str, Path]:
    """Split -> manifest path of the `synth_es` corpus for `spec`, building it on first use.

    Returns at once when the corpus is already complete. Otherwise takes the cache lock,
    builds it through `asr.data.cache.build_once` (lock, temporary folder, `DONE`, rename).
    """
    final = synth_corpus_dir(Path(cache_dir).expanduser(), spec)
    info: dict = {}

    def build(tmp: Path) -> None:
        log(f"building {CORPUS_NAME} corpus (first use) into {final} ...")
        info.update(_build(tmp, spec, log))

    if not build_once(final, build, log):
        return _manifests(final)
    counts, hours = info["utterances"], info["hours"]
    log(
        f"built {counts['train']} train / {counts['dev']} dev / {counts['test']} test "
        f"utterances, {hours['train']:.2f} h train audio, test OOV rate "
        f"{info['oov_rate']['test']:.1%} ({info['held_out_words']} held-out words) "
        f"in {info['build_seconds']:.1f} s"
    )
    return _manifests(final)


def split_variants(variants: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(train/dev variants, held-out test variants): ~20% held out, chosen by `seed`."""
    if len(variants) < 2:
        raise ValueError("need at least two espeak voice variants to hold some out")
    shuffled = sorted(variants)
    random.Random(f"{CORPUS_NAME}-variants-{seed}").shuffle(shuffled)
    n_test = max(1, round(TEST_VARIANT_FRACTION * len(shuffled)))
    return sorted(shuffled[n_test:]), sorted(shuffled[:n_test])


def normalized_words(text: str) -> list[str]:
    """The words of `text` as an LM sees them (`asr.text.normalize`, Spanish, seed alphabet):
    held-out words and OOV rates are about those, so "está" and "esta" are one word."""
    return normalize(text, "es").text.split()


def choose_held_out_words(sentences: Sequence[str], seed: int) -> frozenset[str]:
    """The words (normalized) that train never holds, chosen by `seed` among rare content words.

    Candidates are words of at least HELD_OUT_MIN_LENGTH letters rarer than
    HELD_OUT_MAX_WORD_SHARE of the tokens of `sentences`; in a seeded order, they are taken
    until they make up HELD_OUT_SHARE of those tokens. Counting tokens rather than words keeps
    the OOV rate steady whatever mix of rare and very rare words the seed happens to draw.
    """
    counts = Counter(w for s in sentences for w in normalized_words(s))
    total = sum(counts.values())
    candidates = sorted(
        w
        for w, n in counts.items()
        if len(w) >= HELD_OUT_MIN_LENGTH and n <= HELD_OUT_MAX_WORD_SHARE * total
    )
    random.Random(f"{CORPUS_NAME}-held-out-{seed}").shuffle(candidates)
    held_out: set[str] = set()
    covered = 0
    for word in candidates:
        if covered >= HELD_OUT_SHARE * total:
            break
        held_out.add(word)
        covered += counts[word]
    return frozenset(held_out)


def oov_stats(texts: dict[str, list[str]], *, splits: Sequence[str] = ("dev", "test")) -> dict:
    """Per split of `splits`, how much of it train's words miss: the token OOV rate and the
    number of sentences with an unseen word; and how many distinct words train has. `texts`
    maps each split (and "train") to its raw transcripts; words are compared normalized, as an
    LM built from train would see them."""
    known = {w for t in texts["train"] for w in normalized_words(t)}
    rates, sentences = {}, {}
    for split in splits:
        references = [normalize(t, "es").text for t in texts[split]]
        rates[split] = round(oov_rate(references, known), 4)
        sentences[split] = sum(not known.issuperset(r.split()) for r in references)
    return {"oov_rate": rates, "oov_sentences": sentences, "train_word_types": len(known)}


def resample(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """`torchaudio.functional.resample`, with the input zero-padded to whole seconds.

    The result is the same (torchaudio pads with zeros itself), but the convolution then sees
    a handful of distinct input lengths instead of one per utterance: with arbitrary lengths
    each call builds a new convolution plan, which made the build twice as slow and grew the
    process to 1.5 GB.
    """
    n = audio.shape[0]
    padded = -(-n // orig_sr) * orig_sr
    wav = torch.from_numpy(np.pad(audio.astype(np.float32), (0, padded - n)))
    out = F.resample(wav, orig_sr, new_sr)
    return out[: -(-n * new_sr // orig_sr)].numpy()


class _SplitWriter:
    """Synthesizes utterances of one split into FLAC files and collects manifest rows."""

    def __init__(
        self, root: Path, split: str, engine: Espeak, variants: list[str], spec: SynthSpec
    ) -> None:
        self.root, self.split, self.engine, self.spec = root, split, engine, spec
        self.variants = variants
        self.rng = random.Random(f"{CORPUS_NAME}-voices-{split}-{spec.seed}")
        self.audio_dir = root / "audio" / split
        self.audio_dir.mkdir(parents=True)
        self.rows: list[dict] = []
        self.voices: list[tuple[str, str, str, int, int]] = []  # id, voice, variant, rate, pitch
        self.seconds = 0.0

    def add(self, text: str) -> None:
        voice = self.rng.choice(VOICES)
        variant = self.rng.choice(self.variants)
        rate = self.rng.randint(*RATE_RANGE)
        pitch = self.rng.randint(*PITCH_RANGE)
        noise_seed = self.rng.randrange(2**31)
        audio = self.engine.synth(text, voice, variant, rate, pitch, seed=noise_seed)
        if audio.size == 0:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} ({voice}+{variant})")
        if self.spec.sample_rate != self.engine.sample_rate:
            audio = resample(audio, self.engine.sample_rate, self.spec.sample_rate)
        pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
        utt_id = f"{len(self.rows):06d}"
        rel = Path("audio") / self.split / f"{utt_id}.flac"
        sf.write(self.root / rel, pcm, self.spec.sample_rate, format="FLAC", subtype="PCM_16")
        duration = pcm.shape[0] / self.spec.sample_rate
        self.seconds += duration
        self.rows.append(
            {"audio_filepath": rel.as_posix(), "text": text, "duration": round(duration, 3)}
        )
        self.voices.append((utt_id, voice, variant, rate, pitch))

    def write_manifest(self) -> None:
        with open(self.root / f"{self.split}.jsonl", "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _build(root: Path, spec: SynthSpec, log: Callable[[str], None]) -> dict:
    """Builds the whole corpus into `root` (which must not exist) and returns its info."""
    if spec.train_hours <= 0 or spec.dev_utterances < 1 or spec.test_utterances < 1:
        raise ValueError(f"invalid synth spec {spec}: need train_hours > 0 and >= 1 dev/test")
    start = time.perf_counter()
    root.mkdir(parents=True)
    engine = Espeak()
    train_variants, test_variants = split_variants(engine.variants(), spec.seed)
    variants = {"train": train_variants, "dev": train_variants, "test": test_variants}
    writers = {s: _SplitWriter(root, s, engine, variants[s], spec) for s in SPLITS}

    # One pool of distinct sentences: dev, then test, then train take consecutive slices, so
    # the splits never share a sentence. ~3 s per utterance; the pool grows if that is low, or
    # when train skips many sentences for their held-out words (~20% of them by default).
    n_eval = spec.dev_utterances + spec.test_utterances
    pool_size = n_eval + max(100, int(spec.train_hours * 3600 / 1.5))
    pool = sentences_es.generate_sentences(max(pool_size, HELD_OUT_REFERENCE), spec.seed)
    held_out = choose_held_out_words(pool[:HELD_OUT_REFERENCE], spec.seed)  # prefix property
    for text in pool[: spec.dev_utterances]:
        writers["dev"].add(text)
    for text in pool[spec.dev_utterances : n_eval]:
        writers["test"].add(text)
    log(f"  dev/test done ({n_eval} utterances), synthesizing {spec.train_hours:g} h of train")

    target_s = spec.train_hours * 3600
    next_index = n_eval
    next_report = 0.25
    train = writers["train"]
    while train.seconds < target_s:
        if next_index == len(pool):
            pool = sentences_es.generate_sentences(2 * len(pool), spec.seed)  # same prefix
        text = pool[next_index]
        next_index += 1
        if held_out.isdisjoint(normalized_words(text)):
            train.add(text)
        if train.seconds >= next_report * target_s and train.seconds < target_s:
            log(f"  train {train.seconds / 3600:.2f} / {spec.train_hours:g} h")
            next_report += 0.25

    for writer in writers.values():
        writer.write_manifest()
    with open(root / VOICES_FILE, "w", encoding="utf-8") as f:
        f.write("split\tid\tvoice\tvariant\trate\tpitch\n")
        for split, writer in writers.items():
            for row in writer.voices:
                f.write("\t".join(map(str, (split, *row))) + "\n")
    (root / HELD_OUT_FILE).write_text("".join(f"{w}\n" for w in sorted(held_out)), "utf-8")
    texts = {split: [row["text"] for row in w.rows] for split, w in writers.items()}
    info = {
        "corpus": CORPUS_NAME,
        "spec": asdict(spec),
        **_versions(),
        "espeak_ng_version": engine.version,
        "espeakng_loader_version": _package_version("espeakng-loader"),
        "voices": list(VOICES),
        "rate_range": list(RATE_RANGE),
        "pitch_range": list(PITCH_RANGE),
        "variants": variants,
        "n_variants": len(train_variants) + len(test_variants),
        "utterances": {s: len(w.rows) for s, w in writers.items()},
        "hours": {s: round(w.seconds / 3600, 4) for s, w in writers.items()},
        "held_out_words": len(held_out),
        **oov_stats(texts),
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    with open(root / INFO_FILE, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return info


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Build (or find) the {CORPUS_NAME} corpus.")
    parser.add_argument("--cache-dir", required=True, help="directory holding built corpora")
    defaults = SynthSpec()
    parser.add_argument("--train-hours", type=float, default=defaults.train_hours)
    parser.add_argument("--dev-utterances", type=int, default=defaults.dev_utterances)
    parser.add_argument("--test-utterances", type=int, default=defaults.test_utterances)
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    spec = SynthSpec(
        args.train_hours, args.dev_utterances, args.test_utterances, args.sample_rate, args.seed
    )
    for split, path in build_synth_corpus(args.cache_dir, spec).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
