"""Tests for what every command shares (charrnn.cli.common): the --unknown option."""

from collections import Counter

import pytest

from charrnn.cli.common import apply_unknown_option
from charrnn.errors import VocabularyError
from charrnn.vocab import Vocab

VOCAB = Vocab.from_text("abc \n")


def test_the_unknown_option_notes_what_it_leaves_out(capsys):
    missing = apply_unknown_option(VOCAB, Counter("ab\u20ac\u20ac\u202e"), "skip", "text")
    assert list(missing.items()) == [("\u202e", 1), ("\u20ac", 2)]  # in code point order
    assert capsys.readouterr() == ("", "note: left out 3 character(s) the model never saw: "
                                       "U+202E (U+202E), '\u20ac' (U+20AC)\n")


def test_the_unknown_option_is_silent_without_unknown_characters(capsys):
    assert apply_unknown_option(VOCAB, Counter("abc"), "skip", "text") == {}
    assert apply_unknown_option(VOCAB, Counter("abc"), "error", "text") == {}
    assert capsys.readouterr() == ("", "")


def test_the_unknown_option_refuses_without_a_note(capsys):
    with pytest.raises(VocabularyError, match=r"^the prime has 1 character\(s\) the model never "
                                              r"saw, 1 distinct: '€' \(U\+20AC, once\); "):
        apply_unknown_option(VOCAB, Counter("a\u20ac"), "error", "prime")
    assert capsys.readouterr() == ("", "")
