"""Decoders on hand-made emissions: greedy, the LM beam search, word times, and the refusals."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from asr.decoding import DecodeConfig, GreedyDecoder, make_decoder
from asr.decoding.beam import BeamDecoder, arpa_words, decoder_tokens, write_lexicon
from asr.decoding.words import words_of
from asr.lm import build
from asr.schema import ConfigError
from asr.text import SPACE, Vocabulary

VOCAB = Vocabulary()

# A hand-written bigram LM (KenLM loads bigrams and up): "la casa" is likely, "casi" is not.
ARPA = """\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.0\t<s>\t-0.5
-0.3\tcasa
-3.0\tcasi
-1.0\tla\t-0.5
-1.0\t</s>
-5.0\t<unk>

\\2-grams:
-0.1\t<s> la
-0.1\tla casa

\\end\\
"""


def emission(text: str, *, doubt: dict[int, tuple[str, float]] | None = None) -> torch.Tensor:
    """(T, C) log-probs spelling `text`: each character on one frame, then a blank frame.
    `doubt[i] = (other, p)`: character i's frame gives `other` probability p instead."""
    rows = []
    for i, c in enumerate(text):
        row = torch.full((VOCAB.n_class,), -12.0)
        label = VOCAB.encode(c)[0]
        if doubt and i in doubt:
            other, p = doubt[i]
            row[VOCAB.encode(other)[0]] = math.log(p)
            row[label] = math.log(1 - p)
        else:
            row[label] = 0.0
        blank = torch.full((VOCAB.n_class,), -12.0)
        blank[VOCAB.blank] = 0.0
        rows += [row, blank]
    return torch.stack(rows).log_softmax(-1)


@pytest.fixture
def lm(tmp_path: Path) -> Path:
    path = tmp_path / "toy.arpa"
    path.write_text(ARPA)
    return path


def beam(lm: Path, tmp_path: Path, **settings) -> BeamDecoder:
    return BeamDecoder(DecodeConfig(name="beam", lm=str(lm), **settings), VOCAB, work_dir=tmp_path)


def test_beam_search_picks_the_word_the_lm_favours(lm: Path, tmp_path: Path) -> None:
    # The acoustics say "casi" (i at 0.55 against a at 0.45); the LM says "casa".
    e = emission("la casa", doubt={6: ("i", 0.55)})
    assert GreedyDecoder(VOCAB)(e)[0].text == "la casi"
    assert beam(lm, tmp_path)(e)[0].text == "la casa"
    # With the LM weighted out, the acoustics win again.
    assert beam(lm, tmp_path, lm_weight=0.0)(e)[0].text == "la casi"


def test_beam_frames_match_greedy_on_a_clean_emission(lm: Path, tmp_path: Path) -> None:
    blank = emission("a")[1:]  # one blank frame
    e = torch.cat([blank, blank, blank, emission("la casa")])  # three frames of silence first
    greedy, best = GreedyDecoder(VOCAB)(e)[0], beam(lm, tmp_path)(e)[0]
    assert best.text == greedy.text == "la casa"
    assert best.labels == greedy.labels and best.frames == greedy.frames
    assert greedy.frames[0] == 3


def test_nbest_returns_several_hypotheses_best_first(lm: Path, tmp_path: Path) -> None:
    e = emission("la casa", doubt={6: ("i", 0.55)})
    hyps = beam(lm, tmp_path, nbest=2, word_score=0.0)(e)
    assert len(hyps) == 2 and hyps[0].score >= hyps[1].score
    assert {h.text for h in hyps} == {"la casa", "la casi"}


def test_word_times_and_confidences() -> None:
    e = emission("la casa", doubt={6: ("i", 0.3)})
    hyp = GreedyDecoder(VOCAB)(e)[0]
    words = words_of(hyp, e, VOCAB, frame_seconds=0.02)
    assert [w.word for w in words] == ["la", "casa"]
    # "la": frames 0 and 2; "casa": frames 6..12 (every other frame is a blank)
    assert words[0].start == 0.0 and words[0].end == pytest.approx(3 * 0.02)
    assert words[1].start == pytest.approx(6 * 0.02) and words[1].end == pytest.approx(13 * 0.02)
    assert words[0].confidence == pytest.approx(1.0, abs=1e-3)
    assert words[1].confidence == pytest.approx((3 + 0.7) / 4, abs=1e-3)


def test_an_lm_built_here_loads_in_kenlm_and_decodes(tmp_path: Path) -> None:
    sentences = [s.split() for s in ["la casa es grande", "la casa es roja", "el perro come"]]
    path = tmp_path / "lm.arpa"
    path.write_text(build(sentences, 3).to_arpa())
    decoder = make_decoder(
        DecodeConfig(name="beam", lm=str(path)), VOCAB, work_dir=tmp_path
    )  # KenLM parses the file here
    assert decoder(emission("la casa es roja", doubt={14: ("o", 0.6)}))[0].text == "la casa es roja"


def test_the_auto_lexicon_spells_the_lm_words_it_can(tmp_path: Path) -> None:
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA.replace("casi", "caß"))
    words = arpa_words(path)
    assert words == ["caß", "casa", "la"] or sorted(words) == sorted(["casa", "caß", "la"])
    lexicon, dropped = write_lexicon(words, VOCAB, tmp_path)
    assert dropped == 1
    assert sorted(lexicon.read_text().splitlines()) == ["casa\tc a s a", "la\tl a"]


def test_tokens_follow_a_custom_alphabet() -> None:
    vocab = Vocabulary(("a", "b", SPACE, "ñ"))
    assert decoder_tokens(vocab) == ["a", "b", "<sil>", "ñ", "<blank>"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "greedy", "lm_weight": 1.0}, "lm_weight is a beam-search setting"),
        ({"name": "beam", "lexicon": "none", "word_score": 1.0}, "word_score has no effect"),
        ({"name": "beam", "lexicon": "none", "unk_score": -5.0}, "unk_score has no effect"),
        ({"name": "beam", "lm": "none", "lm_weight": 1.0}, "lm_weight has no effect"),
        ({"name": "beam", "lm": "none"}, "lexicon=auto takes the LM's words"),
        ({"name": "beam", "lm_order": 1}, "lm_order must be >= 2"),
        ({"name": "beam", "beam_size": 0}, "beam_size must be >= 1"),
        ({"name": "beamz"}, "name must be one of greedy|beam"),
    ],
)
def test_settings_with_no_effect_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        DecodeConfig(**settings)
    assert "\n" not in str(e.value)


def test_unreadable_lm_and_missing_lm_are_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.arpa"
    garbage.write_text("this is not a language model\n")
    with pytest.raises(ConfigError, match=r"garbage\.arpa could not be loaded") as e:
        beam(garbage, tmp_path, lexicon="none")
    assert "\n" not in str(e.value) and "asr.lm build" in str(e.value)
    with pytest.raises(ConfigError, match="no such file"):
        beam(tmp_path / "missing.arpa", tmp_path)


def test_a_missing_decode_extra_names_the_fix(monkeypatch, lm: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torchaudio.models.decoder", None)  # import fails
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[decode\]"'):
        beam(lm, tmp_path)
    # greedy needs nothing extra
    assert make_decoder(DecodeConfig(), VOCAB, work_dir=tmp_path)(emission("la"))[0].text == "la"
