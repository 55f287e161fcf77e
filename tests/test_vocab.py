"""Tests for charrnn.vocab's policy on characters a vocabulary lacks: which they are, how a
message names them, refusing them ("error") or leaving them out ("skip")."""

from collections import Counter

import pytest

from charrnn.errors import ConfigError, VocabularyError, speaking_in_flags
from charrnn.vocab import (
    MAX_NAMED,
    UNKNOWN_POLICIES,
    Vocab,
    apply_unknown_policy,
    leave_out,
    left_out_note,
    unknown_error,
)

VOCAB = Vocab.from_text("abc \n")


def test_the_policies_are_refuse_and_leave_out():
    assert UNKNOWN_POLICIES == ("error", "skip")
    assert MAX_NAMED == 20


def test_skip_returns_the_unknown_characters_with_counts_in_code_point_order():
    counts = Counter("a\u202ebé\x1bé c\u202e\u202e")
    missing = apply_unknown_policy(VOCAB, counts, "skip", "text")
    assert missing == {"\x1b": 1, "é": 2, "\u202e": 3}
    assert list(missing) == ["\x1b", "é", "\u202e"]
    assert apply_unknown_policy(VOCAB, Counter("cab"), "skip", "text") == {}
    assert apply_unknown_policy(VOCAB, Counter("cab"), "error", "text") == {}


def test_error_names_each_unknown_character_with_its_count():
    with pytest.raises(VocabularyError) as err:
        apply_unknown_policy(VOCAB, Counter("a\u202ebé\x1bé c\u202e\u202e"), "error", "prime")
    assert str(err.value) == (
        "the prime has 6 character(s) the model never saw, 3 distinct: '\\x1b' (U+001B, once), "
        "'é' (U+00E9, 2 times), U+202E (3 times); pass unknown='skip' to leave them out")
    assert err.value.exit_code == 2
    assert err.value.unknown == ["\x1b", "é", "\u202e"]
    with pytest.raises(VocabularyError) as err, speaking_in_flags():  # the command line's words
        apply_unknown_policy(VOCAB, Counter("é"), "error", "prime")
    assert str(err.value).endswith("'é' (U+00E9, once); pass --unknown skip to leave them out")


def test_error_names_the_first_twenty_and_counts_the_rest():
    text = "".join(chr(0x100 + i) * (i + 1) for i in range(MAX_NAMED + 5)) + "x" * 1234
    with pytest.raises(VocabularyError) as err:
        apply_unknown_policy(VOCAB, Counter(text), "error", "text")
    message = str(err.value)
    assert message.startswith("the text has 1,559 character(s) the model never saw, 26 distinct: "
                              "'x' (U+0078, 1,234 times), 'Ā' (U+0100, once), "
                              "'ā' (U+0101, 2 times), ")
    assert message.endswith(", 'Ē' (U+0112, 19 times), and 6 more; pass unknown='skip' to "
                            "leave them out")
    assert message.count(" (U+") == MAX_NAMED


def test_vocab_encode_words_its_error_with_the_same_naming_and_cap():
    err = unknown_error(["\x1b", "é", "\u200b"])
    assert str(err) == "3 characters not in the vocabulary: '\\x1b' (U+001B), 'é' (U+00E9), U+200B"
    err = unknown_error([chr(0x100 + i) for i in range(MAX_NAMED + 1)])
    assert str(err).startswith("21 characters not in the vocabulary: 'Ā' (U+0100), ")
    assert str(err).endswith("'ē' (U+0113), and 1 more")
    assert str(unknown_error(["b"])) == "1 character not in the vocabulary: 'b' (U+0062)"


def test_an_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^the policy for unknown characters is one of error, "
                                          r"skip, not 'drop'$"):
        apply_unknown_policy(VOCAB, Counter("a"), "drop", "text")


def test_the_note_counts_every_occurrence_and_names_every_character():
    missing = {chr(0x100 + i): 2 for i in range(MAX_NAMED + 5)} | {"\u202e": 1}
    note = left_out_note(missing)
    assert note.startswith("left out 51 character(s) the model never saw: 'Ā' (U+0100), ")
    assert note.endswith("'Ę' (U+0118), U+202E (U+202E)")
    assert note.count("U+") == MAX_NAMED + 5 + 2 and "more" not in note


def test_leave_out_drops_only_the_given_characters():
    assert leave_out("a\x1bbé\udcffé", {"é": 2, "\udcff": 1}) == "a\x1bb"
    assert leave_out("abc", {}) == "abc"
    assert leave_out("", ["a"]) == ""
