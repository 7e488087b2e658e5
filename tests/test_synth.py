"""The synthetic corpus: sentences, espeak-ng wrapper, and the cached, concurrency-safe build."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import synth
from asr.data.cache import DONE_MARKER
from asr.data.espeak import Espeak, EspeakError, trim_silence
from asr.data.sentences_es import generate_sentences, number_words, sentence_key
from asr.data.synth import (
    HELD_OUT_FILE,
    HELD_OUT_MAX_WORD_SHARE,
    HELD_OUT_MIN_LENGTH,
    HELD_OUT_SHARE,
    INFO_FILE,
    SPLITS,
    VOICES_FILE,
    SynthSpec,
    build_synth_corpus,
    choose_held_out_words,
    normalized_words,
    synth_corpus_dir,
)
from asr.text import normalize, oov_rate

REPO = Path(__file__).resolve().parents[1]
TINY = SynthSpec(train_hours=0.01, dev_utterances=5, test_utterances=5)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], list[str]]:
    cache = tmp_path_factory.mktemp("cache")
    logs: list[str] = []
    manifests = build_synth_corpus(cache, TINY, log=logs.append)
    return cache, manifests, logs


# -- sentences --------------------------------------------------------------------------------


def test_generate_6000_distinct_sentences() -> None:
    sentences = generate_sentences(6000)
    assert len(sentences) == 6000
    assert len(set(sentences)) == 6000
    assert len({sentence_key(s) for s in sentences}) == 6000  # distinct even once normalised
    assert all(3 <= len(s.split()) <= 14 for s in sentences)
    words = {w.strip(",¿?¡!") for s in sentences for w in s.split()}
    assert len(words) > 1500  # a varied lexicon, not a handful of templates


def test_sentences_are_deterministic_with_prefix_property() -> None:
    assert generate_sentences(300, seed=3) == generate_sentences(300, seed=3)
    assert generate_sentences(1000, seed=3)[:300] == generate_sentences(300, seed=3)
    assert generate_sentences(300, seed=3) != generate_sentences(300, seed=4)


def test_sentences_survive_normalisation_without_dropped_characters() -> None:
    for s in generate_sentences(2000, seed=1):
        result = normalize(s, "es")
        assert not result.dropped, (s, result.dropped)
        assert result.text


def test_number_words() -> None:
    assert number_words(21, "m") == "veintiún"
    assert number_words(21, "f") == "veintiuna"
    assert number_words(231, "f") == "doscientas treinta y una"
    assert number_words(100) == "cien"
    assert number_words(1992) == "mil novecientos noventa y dos"


# -- espeak -----------------------------------------------------------------------------------


def test_espeak_synth_and_variants() -> None:
    engine = Espeak()
    assert engine.sample_rate == 22050
    variants = engine.variants()
    assert variants == sorted(variants) and {"m3", "f2", "klatt"} <= set(variants)
    audio = engine.synth("¿dónde está la estación, señor?", "es", "m3", 150, 50)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.8 < audio.size / engine.sample_rate < 5.0
    margin = int(0.1 * engine.sample_rate)
    assert np.abs(audio[: margin // 2]).max() < 0.02  # trimmed to a quiet ~0.1 s margin
    assert np.abs(audio).max() > 0.1
    with pytest.raises(EspeakError):
        engine.synth("hola", "es", "no-such-variant", 150, 50)
    with pytest.raises(EspeakError):
        engine.synth("hola", "xx-nonexistent", "", 150, 50)


def test_trim_silence_pads_to_margin() -> None:
    sr = 1000
    signal = np.concatenate([np.zeros(500), np.ones(100), np.zeros(20)]).astype(np.float32)
    out = trim_silence(signal, sr, margin_s=0.1)
    assert out.size == 100 + 2 * 100
    assert np.all(out[:100] == 0) and np.all(out[-100:] == 0)


# -- the corpus -------------------------------------------------------------------------------


def test_corpus_dir_depends_on_spec_only() -> None:
    base = synth_corpus_dir(Path("/c"), SynthSpec())
    assert base.parent == Path("/c") and base.name.startswith("synth_es-")
    assert synth_corpus_dir(Path("/c"), SynthSpec(train_hours=1)) == base  # 1 == 1.0
    assert synth_corpus_dir(Path("/c"), SynthSpec(seed=1)) != base
    assert synth_corpus_dir(Path("/c"), SynthSpec(dev_utterances=10)) != base


def test_manifests_point_at_16k_mono_flac_with_matching_durations(tiny) -> None:
    cache, manifests, logs = tiny
    assert set(manifests) == set(SPLITS)
    corpus = synth_corpus_dir(cache, TINY)
    assert (corpus / DONE_MARKER).is_file()
    assert any(line.startswith("built ") for line in logs)
    for split, path in manifests.items():
        assert path.parent == corpus and path.name == f"{split}.jsonl"
        rows = _read_jsonl(path)
        assert rows
        for row in rows:
            assert set(row) == {"audio_filepath", "text", "duration"}
            rel = Path(row["audio_filepath"])
            assert not rel.is_absolute() and rel.parts[:2] == ("audio", split)
            info = sf.info(str(path.parent / rel))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert (info.format, info.subtype) == ("FLAC", "PCM_16")
            assert row["duration"] == round(info.frames / 16000, 3)
            assert row["text"].strip()
    assert len(_read_jsonl(manifests["dev"])) == 5
    assert len(_read_jsonl(manifests["test"])) == 5
    train_seconds = sum(r["duration"] for r in _read_jsonl(manifests["train"]))
    assert 0.01 * 3600 <= train_seconds < 0.01 * 3600 + 10


def test_splits_have_disjoint_sentences(tiny) -> None:
    _, manifests, _ = tiny
    texts = {s: {sentence_key(r["text"]) for r in _read_jsonl(p)} for s, p in manifests.items()}
    assert not texts["train"] & texts["dev"]
    assert not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]


def test_test_split_uses_held_out_variants(tiny) -> None:
    cache, _, _ = tiny
    corpus = synth_corpus_dir(cache, TINY)
    info = json.loads((corpus / INFO_FILE).read_text(encoding="utf-8"))
    variants = info["variants"]
    assert variants["dev"] == variants["train"]
    assert not set(variants["test"]) & set(variants["train"])
    n_all = len(variants["train"]) + len(variants["test"])
    assert 0.15 <= len(variants["test"]) / n_all <= 0.25
    assert info["utterances"] == {
        s: len(_read_jsonl(corpus / f"{s}.jsonl")) for s in ("train", "dev", "test")
    }
    # and the utterances really were spoken that way
    lines = (corpus / VOICES_FILE).read_text(encoding="utf-8").splitlines()[1:]
    used: dict[str, set[str]] = {s: set() for s in SPLITS}
    for line in lines:
        split, _id, voice, variant, rate, pitch = line.split("\t")
        used[split].add(variant)
        assert voice in ("es", "es-419")
        assert 120 <= int(rate) <= 200 and 25 <= int(pitch) <= 75
    assert used["test"] <= set(variants["test"])
    assert not used["test"] & (used["train"] | used["dev"])


def test_held_out_words_are_rare_content_words_chosen_by_the_seed() -> None:
    sentences = generate_sentences(2000, seed=0)
    held_out = choose_held_out_words(sentences, seed=0)
    assert held_out == choose_held_out_words(sentences, seed=0)
    assert held_out != choose_held_out_words(sentences, seed=1)
    tokens = [w for s in sentences for w in normalized_words(s)]
    share = sum(w in held_out for w in tokens) / len(tokens)
    # drawn until they reach the share, so they overshoot it by at most one word
    assert HELD_OUT_SHARE <= share <= HELD_OUT_SHARE + HELD_OUT_MAX_WORD_SHARE
    assert all(len(w) >= HELD_OUT_MIN_LENGTH for w in held_out)
    assert all(tokens.count(w) <= HELD_OUT_MAX_WORD_SHARE * len(tokens) for w in held_out)


def test_train_lacks_the_held_out_words_that_dev_and_test_hold(corpus_cache: Path) -> None:
    """The shared tiny corpus (conftest): its test split has words train never says, some of
    them held out on purpose, and info.json records how many."""
    corpus = next(corpus_cache.glob("synth_es-*/info.json")).parent
    texts = {s: [r["text"] for r in _read_jsonl(corpus / f"{s}.jsonl")] for s in SPLITS}
    words = {s: [normalized_words(t) for t in ts] for s, ts in texts.items()}
    held_out = set((corpus / HELD_OUT_FILE).read_text(encoding="utf-8").split())
    assert held_out
    assert not any(held_out.intersection(ws) for ws in words["train"])
    assert any(held_out.intersection(ws) for ws in words["test"])
    keys = {s: {sentence_key(t) for t in ts} for s, ts in texts.items()}
    assert not keys["train"] & keys["dev"] and not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]

    info = json.loads((corpus / INFO_FILE).read_text(encoding="utf-8"))
    assert info["corpus_version"] == synth.CORPUS_VERSION
    assert info["held_out_words"] == len(held_out)
    known = {w for ws in words["train"] for w in ws}
    assert info["train_word_types"] == len(known)
    for split in ("dev", "test"):
        references = [" ".join(ws) for ws in words[split]]
        assert info["oov_rate"][split] == round(oov_rate(references, known), 4)
        unseen = sum(not known.issuperset(ws) for ws in words[split])
        assert info["oov_sentences"][split] == unseen
    assert 0 < info["oov_rate"]["test"] < 1 and info["oov_sentences"]["test"] >= 1


def test_second_call_reuses_the_built_corpus(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, manifests, _ = tiny
    corpus = synth_corpus_dir(cache, TINY)
    before = {p: p.stat().st_mtime_ns for p in (corpus / INFO_FILE, corpus / DONE_MARKER)}
    logs: list[str] = []

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the built corpus was synthesized again")

    monkeypatch.setattr(synth, "_build", no_rebuild)  # reuse is checked, not timed
    again = build_synth_corpus(cache, TINY, log=logs.append)
    assert again == manifests
    assert logs == []
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_failed_build_leaves_no_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_build(root: Path, spec: SynthSpec, log) -> dict:
        root.mkdir(parents=True)
        (root / "partial.txt").write_text("half a corpus")
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "_build", broken_build)
    with pytest.raises(RuntimeError, match="disk full"):
        build_synth_corpus(tmp_path, TINY, log=lambda _: None)
    assert not list(tmp_path.glob(".tmp-*"))
    assert not synth_corpus_dir(tmp_path, TINY).exists()


_BUILD_SCRIPT = """
import sys
from asr.data.synth import SynthSpec, build_synth_corpus
spec = SynthSpec(train_hours=0.02, dev_utterances=4, test_utterances=4, seed=7)
build_synth_corpus(sys.argv[1], spec, log=lambda line: print(line, flush=True))
"""


def _start_build(cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _BUILD_SCRIPT, str(cache)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _corpus_digest(corpus: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(corpus.rglob("*")):
        if path.suffix in (".flac", ".jsonl"):
            h.update(path.relative_to(corpus).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_concurrent_builds_make_one_valid_and_reproducible_corpus(tmp_path: Path) -> None:
    """Two processes racing on one cache make one corpus; a third, alone in another cache,
    writes the very same bytes (espeak's noise for breathy variants is seeded per utterance)."""
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    spec = SynthSpec(train_hours=0.02, dev_utterances=4, test_utterances=4, seed=7)
    name = synth_corpus_dir(shared, spec).name
    stale = shared / f".tmp-{name}-999999"  # left by a build that crashed earlier
    stale.mkdir(parents=True)
    (stale / "junk").write_text("x")
    procs = [_start_build(shared), _start_build(shared), _start_build(alone)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    built = [line for out in outputs[:2] for line in out.splitlines() if line.startswith("built ")]
    assert len(built) == 1, outputs  # one process built, the other reused its result
    assert sorted(p.name for p in shared.iterdir() if p.is_dir()) == [name]  # no tmp dirs
    corpus = shared / name
    assert (corpus / DONE_MARKER).is_file()
    for split in SPLITS:
        rows = _read_jsonl(corpus / f"{split}.jsonl")
        assert rows
        assert all((corpus / r["audio_filepath"]).is_file() for r in rows)
    n_files = sum(1 for _ in (corpus / "audio").rglob("*.flac"))
    assert n_files == sum(len(_read_jsonl(corpus / f"{s}.jsonl")) for s in SPLITS)
    assert _corpus_digest(corpus) == _corpus_digest(alone / name)
