"""Decoders on hand-made emissions: greedy, the LM beam search, word times, and the refusals."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from asr.decoding import DecodeConfig, GreedyDecoder, make_decoder
from asr.decoding.beam import BeamDecoder, decoder_tokens, write_lexicon
from asr.decoding.tuning import make_tuning_report
from asr.decoding.words import words_of
from asr.lm import arpa_unigrams, build, build_lm, known_words, write_lm
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
    """A beam search with the word LM `lm` (the lexicon mode) unless `settings` say otherwise."""
    settings = {"unit": "word", **settings}
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
        DecodeConfig(name="beam", unit="word", lm=str(path)), VOCAB, work_dir=tmp_path
    )  # KenLM parses the file here
    assert decoder(emission("la casa es roja", doubt={14: ("o", 0.6)}))[0].text == "la casa es roja"


def test_the_auto_lexicon_spells_the_lm_words_it_can(tmp_path: Path) -> None:
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA.replace("casi", "caß"))
    words = arpa_unigrams(path)
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
        ({"name": "beam", "word_score": 1.0}, "word_score has no effect with unit=char"),
        ({"name": "beam", "unk_score": -5.0}, "unk_score has no effect with unit=char"),
        ({"name": "beam", "lexicon": "auto"}, "a lexicon keeps the output to its words"),
        ({"name": "beam", "unit": "word", "lexicon": "none"}, "needs a lexicon"),
        ({"name": "beam", "unit": "phone"}, "unit must be word|char"),
        ({"name": "beam", "lm": "none", "lm_weight": 1.0}, "lm_weight has no effect"),
        ({"name": "beam", "unit": "word", "lm": "none"}, "lexicon=auto takes the LM's words"),
        ({"name": "beam", "lm_order": 1}, r"lm_order must be in 2\.\.6"),
        ({"name": "beam", "lm_order": 7}, r"lm_order must be in 2\.\.6"),
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
        beam(garbage, tmp_path, unit="char")
    assert "\n" not in str(e.value) and "asr.lm build" in str(e.value)
    with pytest.raises(ConfigError, match="no such file"):
        beam(tmp_path / "missing.arpa", tmp_path)


def test_a_missing_decode_extra_names_the_fix(monkeypatch, lm: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torchaudio.models.decoder", None)  # import fails
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[decode\]"'):
        beam(lm, tmp_path)
    # greedy needs nothing extra
    assert make_decoder(DecodeConfig(), VOCAB, work_dir=tmp_path)(emission("la"))[0].text == "la"


# Sentences an LM is built from: "azul" is not among their words.
LM_TEXT = [
    "la casa es roja", "la casa es grande", "el perro es grande", "la mesa es roja",
    "el perro come", "la casa come", "el gato es negro", "la mesa es grande",
]  # fmt: skip


def lms(tmp_path: Path) -> dict[str, Path]:
    """A word 3-gram and a character 6-gram of `LM_TEXT`, as `asr.lm build` writes them."""
    sentences = [s.split() for s in LM_TEXT]
    out = {}
    for unit, order in (("word", 3), ("char", 6)):
        model = build_lm(sentences, order=order, unit=unit)
        out[unit] = write_lm(model, tmp_path / f"{unit}.arpa", unit=unit, sentences=sentences)
    return out


def test_open_vocabulary_decoding_spells_a_word_the_lm_never_saw(tmp_path: Path) -> None:
    """The acoustics spell "azul", which no sentence of the LM's text holds. The lexicon mode
    cannot spell it and puts a known word in its place; the lexicon-free mode with a character
    LM spells it, while still correcting a doubtful character of a word it knows."""
    paths = lms(tmp_path)
    e = emission("la casa es azul", doubt={6: ("i", 0.55)})  # the acoustics lean to "casi"
    assert GreedyDecoder(VOCAB)(e)[0].text == "la casi es azul"
    lexicon = BeamDecoder(
        DecodeConfig(name="beam", unit="word", lm=str(paths["word"])), VOCAB, work_dir=tmp_path
    )
    assert "azul" not in lexicon(e)[0].text.split()
    chars = BeamDecoder(DecodeConfig(name="beam", lm=str(paths["char"])), VOCAB, work_dir=tmp_path)
    assert chars.settings["unit"] == "char" and chars.lexicon_path is None
    assert chars(e)[0].text == "la casa es azul"


def test_the_character_lm_scores_each_character_as_itself(tmp_path: Path) -> None:
    """With a strong LM weight a clean emission of known text still decodes to itself: the
    decoder is given its tokens as the LM's dictionary, in label order (without it, torchaudio
    orders that dictionary by hash and scores every character as another)."""
    paths = lms(tmp_path)
    chars = BeamDecoder(
        DecodeConfig(name="beam", lm=str(paths["char"]), lm_weight=3.0), VOCAB, work_dir=tmp_path
    )
    for text in ("el perro come", "la mesa es roja"):
        assert chars(emission(text))[0].text == text


def test_an_lm_of_the_other_unit_is_refused_in_one_line(tmp_path: Path) -> None:
    paths = lms(tmp_path)
    with pytest.raises(ConfigError, match=r"word\.arpa is a word LM and decode\.unit is char"):
        BeamDecoder(DecodeConfig(name="beam", lm=str(paths["word"])), VOCAB, work_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"is a char LM and decode\.unit is word"):
        beam(paths["char"], tmp_path)


def test_what_each_lm_knows(tmp_path: Path) -> None:
    paths = lms(tmp_path)
    words = {w for s in LM_TEXT for w in s.split()}
    assert known_words(paths["word"]) == words  # its 1-grams
    assert known_words(paths["char"]) == words  # its .words file
    assert "<sil>" in arpa_unigrams(paths["char"]) and "a" in arpa_unigrams(paths["char"])


def tuning_job(tmp_path: Path, name: str, decode: DecodeConfig, wer: float, cer: float) -> None:
    """An eval.json as a tuning sweep's job writes it (greedy: WER 0.3, CER 0.05)."""
    folder = tmp_path / name
    folder.mkdir()
    result = {"ckpt": "run/best.pt", "source": "synth_es:dev", "decode": decode.to_json()}
    result |= {"wer": wer, "cer": cer, "greedy_wer": 0.3, "greedy_cer": 0.05, "oov_rate": 0.088}
    result |= {"guarded_wer": wer if cer <= 0.05 else 1 + wer, "objective": "guarded_wer"}
    (folder / "eval.json").write_text(json.dumps(result))


def test_the_tuning_report_ranks_by_guarded_wer_and_marks_worse_cer(tmp_path: Path) -> None:
    """The lowest WER loses to greedy on CER (a lexicon replacing unseen words): it is marked,
    and the best is the lowest WER among settings whose CER is no worse than greedy's."""
    for i, (weight, wer, cer) in enumerate(
        [(3.0, 0.15, 0.06), (1.0, 0.2, 0.04), (2.0, 0.25, 0.03)]
    ):
        decode = DecodeConfig(name="beam", unit="word", lm_weight=weight, word_score=float(i))
        tuning_job(tmp_path, f"job{i}", decode, wer, cer)
    summary = make_tuning_report(tmp_path, plots=False)
    assert "greedy on the same split: WER 0.3000 CER 0.0500; words new to the LM: 8.8%" in summary
    assert "settings with a worse CER than greedy: 1 of 3" in summary
    assert "best by guarded_wer: WER 0.2000 CER 0.0400 in job1" in summary
    # the lexicon mode is not the default: the command says so
    command = "split=test decode=beam decode.unit=word decode.lm_weight=1.0 decode.word_score=1.0"
    assert command in summary
    rows = (tmp_path / "tuning.md").read_text().splitlines()
    assert [r for r in rows if "worse" in r and r.startswith("| 3.0")]  # marked in its row


def test_the_tuning_report_says_when_greedy_is_better(tmp_path: Path) -> None:
    decode = DecodeConfig(name="beam", unit="word", lm_weight=2.0)
    tuning_job(tmp_path, "job0", decode, 0.2, 0.07)
    assert "greedy is the better choice" in make_tuning_report(tmp_path, plots=False)
