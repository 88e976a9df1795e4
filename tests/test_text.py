"""Text normalisation and the tokenizer."""

from __future__ import annotations

import pytest

from asr.text import BLANK_ID, Tokenizer, normalize_text, train_tokenizer

SENTENCES = [
    "And so my fellow Americans, ask not what your country can do for you.",
    "IT WAS THE FIRST GREAT SORROW OF HIS LIFE",
    "Printing, in the only sense with which we are at present concerned, differs from most arts.",
    "The quick brown fox jumps over the lazy dog.",
    "Don't count your chickens before they're hatched.",
    "She sells sea-shells by the sea shore.",
] * 5


@pytest.mark.parametrize("raw,expected", [
    ("Hello, world!", "HELLO WORLD"),
    ("ask not -- what your country", "ASK NOT WHAT YOUR COUNTRY"),
    ("sea-shells and well\u2014known", "SEA SHELLS AND WELL KNOWN"),
    ("Don\u2019t stop John's car", "DON'T STOP JOHN'S CAR"),
    ("'quoted' words", "QUOTED WORDS"),
    ("caf\u00e9 na\u00efve", "CAFE NAIVE"),
    ("in 1961, at 5 p.m.", "IN 1961 AT 5 P M"),
    ("  spaces\tand\nnewlines  ", "SPACES AND NEWLINES"),
    ("", ""),
])
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_idempotent():
    for s in SENTENCES:
        assert normalize_text(normalize_text(s)) == normalize_text(s)


@pytest.mark.parametrize("model_type,size", [("unigram", 60), ("bpe", 60), ("char", 40)])
def test_tokenizer_round_trip(tmp_path, model_type, size):
    tok = train_tokenizer(SENTENCES, tmp_path, vocab_size=size, model_type=model_type)
    for s in SENTENCES:
        ids = tok.encode(s)
        assert ids and all(1 <= i <= tok.num_pieces for i in ids)
        assert tok.decode(ids) == normalize_text(s)
    # special ids: distinct, outside the pieces, and dropped by decode
    specials = {tok.blank_id, tok.mask_id, tok.sos_id}
    assert tok.blank_id == BLANK_ID == 0 and len(specials) == 3 and tok.eos_id == tok.sos_id
    assert tok.vocab_size == tok.num_pieces + 3 and tok.sos_id == tok.vocab_size - 1
    ids = tok.encode("the fox")
    assert tok.decode([tok.sos_id, tok.blank_id] + ids + [tok.mask_id, tok.eos_id]) == "THE FOX"
    assert tok.id_to_piece(tok.blank_id) == "<blank>" and tok.id_to_piece(tok.mask_id) == "<mask>"
    assert tok.encode_batch(SENTENCES[:2]) == [tok.encode(s) for s in SENTENCES[:2]]
    # reload from disk gives the same ids
    assert Tokenizer(tmp_path / "tokenizer.model").encode(SENTENCES[0]) == tok.encode(SENTENCES[0])
    assert not list(tmp_path.glob(".spm-*"))  # temporary training folder cleaned up


def test_unknown_characters_map_to_unk(tmp_path):
    tok = train_tokenizer(SENTENCES, tmp_path, vocab_size=40, model_type="char")
    ids = tok.encode("zzz 7")
    assert tok.unk_id in ids


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError):
        train_tokenizer([], tmp_path)
    with pytest.raises(ValueError):
        train_tokenizer(SENTENCES, tmp_path, model_type="word-salad")
    with pytest.raises(FileNotFoundError):
        Tokenizer(tmp_path / "missing.model")


def test_same_as_ignores_where_the_tokenizer_was_trained(tmp_path):
    """Two runs over the same text write byte-different models (the trainer records its temp paths) that
    encode alike; a model trained on other text does not."""
    a = train_tokenizer(SENTENCES, tmp_path / "a", vocab_size=40, model_type="char")
    b = train_tokenizer(SENTENCES, tmp_path / "b", vocab_size=40, model_type="char")
    c = train_tokenizer(SENTENCES[:2] + ["QUIZZICAL JAZZ"], tmp_path / "c", vocab_size=40, model_type="char")
    assert a.model_path.read_bytes() != b.model_path.read_bytes()
    assert a.same_as(b) and b.same_as(a)
    assert not a.same_as(c)


def test_decoded_text_has_one_space_between_words_when_word_starts_come_back_to_back():
    """A non-autoregressive decoder can emit the lone word-start piece twice in a row; the text keeps one space."""
    from asr.inference.model_dir import load_model

    tok = load_model("demo").tokenizer
    lone = next(i for i in range(1, tok.num_pieces + 1) if tok.id_to_piece(i) == "\u2581")
    a, b = tok.encode("HELLO"), tok.encode("WORLD")
    text = tok.decode([*a, lone, lone, lone, *b, lone])
    assert text == "HELLO WORLD"
