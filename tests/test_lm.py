"""asr.lm: interpolated modified Kneser-Ney, checked as a distribution."""

from __future__ import annotations

import math

import pytest

from asr.lm import BOS, UNK, build

TEXT = [
    "la casa es grande",
    "la casa es roja",
    "el perro es grande",
    "la casa del perro",
    "el perro come en la casa",
    "la niña come",
    "la casa es grande y roja",
]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_is_a_distribution(order):
    model = build([s.split() for s in TEXT], order)
    words = [g[0] for g in model.logprob[0] if g[0] != BOS]
    contexts = [()] + [g for n in range(1, order) for g in model.logprob[n - 1]]
    contexts += [("nunca", "visto")]  # an unseen context backs off all the way
    for context in contexts:
        total = sum(model.prob(w, context) for w in words)
        assert math.isclose(total, 1.0, rel_tol=1e-6), (context, total)
    assert UNK in words


def test_seen_continuations_beat_unseen_ones():
    model = build([s.split() for s in TEXT], 3)
    assert model.prob("casa", ("la",)) > model.prob("perro", ("la",)) > 0
    assert model.prob("es", ("la", "casa")) > model.prob("come", ("la", "casa"))


def test_arpa_layout():
    arpa = build([s.split() for s in TEXT], 2).to_arpa()
    head = arpa.splitlines()
    assert head[0] == "\\data\\" and head[1].startswith("ngram 1=") and arpa.endswith("\\end\\\n")
    rows = [line.split("\t") for line in head if line.count("\t") >= 1]
    assert all(len(r) in (2, 3) for r in rows)  # logprob, words[, backoff], tab-separated


def test_the_command_builds_from_text_normalised_as_transcripts(tmp_path):
    from asr.lm.cli import main

    text = tmp_path / "corpus.txt"
    text.write_text("¡La niña come!\n\nLa casa, es GRANDE.\n", encoding="utf-8")
    out = tmp_path / "lm" / "lm.arpa"
    assert main(["build", "--text", str(text), "--order", "2", "--out", str(out)]) == 0
    arpa = out.read_text(encoding="utf-8")
    assert "\tnini\ta" not in arpa and "la nini" in arpa.replace("\t", " ")  # ñ -> ni, lower case
    assert "¡" not in arpa and "," not in arpa


def test_the_command_refuses_what_has_no_words(tmp_path, capsys):
    from asr.lm.cli import main

    empty = tmp_path / "empty.txt"
    empty.write_text("¿?\n", encoding="utf-8")
    assert main(["build", "--text", str(empty), "--out", str(tmp_path / "x.arpa")]) == 2
    assert main(["build", "--text", str(tmp_path / "missing.txt"), "--out", "x"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
    assert "no words" in errors[0] and "missing.txt" in errors[1]
