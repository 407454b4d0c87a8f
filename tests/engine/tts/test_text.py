"""Text before synthesis: cleaned of control characters and markup, bounded, cut at sentences."""

from __future__ import annotations

import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.tts.text import MAX_CHUNK_CHARS, clean_text, scripts_used, split_sentences


def test_sentences_are_split_at_their_ends_and_kept_in_order():
    text = 'Hello there. How are you? "Fine!" she said… Next line\nNew paragraph; really. 你好。世界！'
    assert split_sentences(text) == [
        "Hello there.",
        "How are you?",
        '"Fine!"',
        "she said…",
        "Next line",
        "New paragraph;",
        "really.",
        "你好。",
        "世界！",
    ]


def test_numbers_and_abbreviations_without_a_space_stay_whole():
    assert split_sentences("It costs 3.50 dollars. Version 2.1.3 is out.") == [
        "It costs 3.50 dollars.",
        "Version 2.1.3 is out.",
    ]


def test_a_sentence_longer_than_a_chunk_is_cut_at_clauses_then_spaces():
    long = ", ".join(f"clause number {i} with a few words" for i in range(40)) + "."
    chunks = split_sentences(long)
    assert len(chunks) > 1 and all(len(c) <= MAX_CHUNK_CHARS for c in chunks)
    assert " ".join(chunks) == long
    unbroken = "x" * (2 * MAX_CHUNK_CHARS + 5)
    assert "".join(split_sentences(unbroken)) == unbroken


def test_pure_punctuation_pieces_are_not_synthesised():
    assert split_sentences("Hello... !!! ?") == ["Hello..."]


@pytest.mark.parametrize("text", ["", "   \n\t ", "<b></b>", "... !!! ---", "\x00\x07"])
def test_empty_text_is_refused_with_what_to_do(text):
    with pytest.raises(SonicInputError, match=r"^text: the text is (empty|nothing but punctuation)"):
        clean_text(text)


def test_100000_characters_are_refused_with_the_limit_at_once():
    with pytest.raises(SonicInputError) as err:
        clean_text("Hello world. " * 7693)
    assert str(err.value) == (
        "text: the text is too long (100,009 characters; the limit is 20,000); "
        "split it into several jobs (or raise SONIC_TTS_MAX_CHARS)"
    )


def test_the_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("SONIC_TTS_MAX_CHARS", "10")
    with pytest.raises(SonicInputError, match="the limit is 10"):
        clean_text("Hello, world!")


def test_control_characters_are_removed_and_counted():
    text, notes = clean_text("Hel\x00lo\u200b wor\x07ld\x1b[0m!\r\nBye.")
    assert text == "Hello world[0m!\nBye."
    assert notes == ["4 control character(s) were removed from the text"]


def test_markup_is_removed_and_the_words_between_tags_kept():
    text, notes = clean_text(
        '<speak><p>Hello <b>there</b> &amp; welcome!</p><script>alert("x")</script>'
        '<!-- a note --><break time="1s"/>Bye.</speak>'
    )
    assert text == "Hello there & welcome! Bye."
    assert notes == ["markup tags were removed from the text (only the words are spoken)"]


def test_a_less_than_sign_in_prose_is_not_markup():
    assert clean_text("Prices < 5 dollars and 3 > 2.")[0] == "Prices < 5 dollars and 3 > 2."


def test_scripts_are_counted_per_letter():
    assert scripts_used("Hi Привет 你好 ｈｉ") == {"Latin": 4, "Cyrillic": 6, "Han": 2}
