from asr.text import SEED_SYMBOLS, SPACE, Vocabulary, normalize, oov_rate


def test_seed_vocabulary_layout():
    v = Vocabulary()
    assert v.symbols == SEED_SYMBOLS
    assert v.encode("'") == [0]
    assert v.encode(" ") == [1] and v.symbols[1] == SPACE
    assert v.encode("az") == [2, 27]
    assert v.blank == 28 and v.n_class == 29


def test_encode_decode_round_trip():
    v = Vocabulary()
    text = "el nino come pan y dice 'hola'"
    assert v.decode(v.encode(text)) == text
    assert v.decode([v.blank, 2, v.blank]) == "a"  # blanks are skipped


def test_spanish_normalization_maps_enie_and_strips_accents_and_punctuation():
    n = normalize("¿El Niño comió PAN? ¡Sí, Güemes!", "es")
    assert n.text == "el ninio comio pan si guemes"
    assert not n.dropped


def test_english_normalization_keeps_apostrophes_and_n_tilde_is_plain_n():
    assert normalize("Don't  stop — the café's", "en").text == "don't stop the cafe's"
    assert normalize("piñata", "en").text == "pinata"


def test_out_of_alphabet_characters_are_dropped_and_counted():
    n = normalize("tengo 25 años", "es")
    assert n.text == "tengo anios"
    assert n.dropped == {"2": 1, "5": 1}


def test_unknown_language_is_refused():
    try:
        normalize("x", "fr")
    except ValueError as e:
        assert "language" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_encode_refuses_unnormalized_text():
    try:
        Vocabulary().encode("ñ")
    except ValueError as e:
        assert "'ñ'" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_vocabulary_round_trips_through_dict():
    v = Vocabulary()
    assert Vocabulary.from_dict(v.to_dict()) == v


def test_oov_rate_counts_unknown_word_tokens():
    texts = ["el perro come", "el gato come pan", ""]
    assert oov_rate(texts, {"el", "come", "pan", "perro"}) == 1 / 7  # "gato", once
    assert oov_rate(texts, ["el", "come"]) == 3 / 7  # any iterable of known words
    assert oov_rate(["la la la casa"], {"casa"}) == 3 / 4  # tokens, not types
    assert oov_rate(iter(texts), set()) == 1.0
    assert oov_rate([], {"el"}) == 0.0 and oov_rate([" "], {"el"}) == 0.0
