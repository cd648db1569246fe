"""Secrets masked in text: exact copies in any case, near copies (an edit or two, a long piece), nothing else."""
from __future__ import annotations

import pytest

from extractor.teachers.http.config import Secret
from extractor.teachers.http.redact import Redactor, is_near, within_edits

TOKEN = "sk-live-0123456789abcdef"


@pytest.fixture
def redact() -> Redactor:
    return Redactor([Secret(f"Bearer {TOKEN}"), Secret("abc")])


@pytest.mark.parametrize("echoed", [
    TOKEN,
    TOKEN.upper(),
    TOKEN.lower().capitalize(),
    TOKEN[:-1],  # one character dropped
    TOKEN[1:],
    TOKEN[:10] + "X" + TOKEN[11:],  # one character changed
    TOKEN[:5] + TOKEN[6:-1],  # two edits
    TOKEN[:17] + "...",  # cut short by the server
    f"prefix{TOKEN[:18]}",  # a long piece glued to other text
])
def test_near_copies_are_masked(redact, echoed) -> None:
    text = f'{{"error": "invalid credentials {{\'Authorization\': \'Bearer {echoed}\'}}"}}'
    clean = redact(text)
    assert "***" in clean and TOKEN[:12].lower() not in clean.lower()
    assert clean.startswith('{"error": "invalid credentials') and "Authorization" in clean


def test_the_whole_value_and_its_words_are_masked_in_any_case(redact) -> None:
    assert redact(f"got BEARER {TOKEN.upper()} here") == "got *** here"
    assert redact(f"apikey={TOKEN}&x=1") == "apikey=***&x=1"


def test_short_secrets_only_where_copied_exactly(redact) -> None:
    assert redact("key ABC, key abd, abcd") == "key ***, key abd, ***d"


def test_unrelated_text_is_left_alone(redact) -> None:
    text = "teacher http://127.0.0.1:8080/v2/models/emotion answered HTTP 401 Unauthorized: bearer token rejected"
    assert redact(text) == text


def test_a_secret_made_of_words_does_not_mask_those_words() -> None:
    redact = Redactor([Secret("not-for-elsewhere")])
    assert redact("redirect to http://127.0.0.1:9/elsewhere") == "redirect to http://127.0.0.1:9/elsewhere"
    assert redact("key not-for-elsewher") == "key ***"


def test_repr_names_no_secret(redact) -> None:
    assert TOKEN not in repr(redact) and "abc" not in repr(redact)


def test_edit_distance_and_pieces() -> None:
    assert within_edits("kitten", "sitting", 3) and not within_edits("kitten", "sitting", 2)
    assert within_edits("", "ab", 2) and not within_edits("", "abc", 2)
    assert is_near("0123456789abcdeX", "0123456789abcdef")
    assert is_near("zz0123456789abzz", "0123456789abcdef")  # 12 of its 16 characters: over two thirds
    assert not is_near("zzzzzz0123456789", "0123456789abcdef")  # 10: under, and no near copy either
