"""Tests for charrnn.data: vocabulary, corpus reading and normalisation, split, stream batches."""

import hashlib
import io
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import data
from charrnn import vocab as vocab_module
from charrnn.data import (
    CorpusNotFound,
    StreamBatches,
    Vocab,
    encode_corpus,
    escape_char,
    min_chars,
    read_corpus,
    split_train_val,
    validation_chars,
)
from charrnn.errors import DataError, VocabularyError

# NUL, CR alone and in CRLF, emoji (astral), a ZWJ sequence, a combining accent, a CJK
# extension-B ideograph (astral), BOM inside the text, a noncharacter and the last code point
TRICKY = ("a\x00b\r\n\rc 😀 e\u0301 \U0001F468\u200d\U0001F469 \U00020000"
          "\ufeff\uffff\U0010FFFF z\t\x1b")
UNDECODABLE_HINT = ("is not valid utf-8; pass encoding='latin-1' (or the file's real "
                    "encoding), or convert the file to UTF-8")


def vocab_of_size(n):
    """A vocabulary of the first n Unicode scalar values (surrogates skipped)."""
    cps = np.arange(n + 2048)
    return Vocab.from_codepoints(cps[(cps < 0xD800) | (cps > 0xDFFF)][:n])


def from_stdin(raw, **kw):
    return read_corpus(["-"], stdin=io.BytesIO(raw), **kw)


@pytest.fixture
def small_chunks(monkeypatch):
    """Shrink the read/encode chunk so chunk boundaries fall inside every small test input."""
    monkeypatch.setattr(data, "CHUNK", 3)
    monkeypatch.setattr(vocab_module, "CHUNK", 3)


# ---------------------------------------------------------------- escape_char


@pytest.mark.parametrize("ch, shown", [
    ("a", "'a'"), (" ", "' '"), ("é", "'é'"), ("😀", "'😀'"), ("'", '"\'"'),
    ("\n", r"'\n'"), ("\t", r"'\t'"), ("\r", r"'\r'"), ("\x00", r"'\x00'"),
    ("\x1b", r"'\x1b'"), ("\x7f", r"'\x7f'"), ("\x85", r"'\x85'"),
    ("\u200b", "U+200B"), ("\u202e", "U+202E"), ("\xa0", "U+00A0"), ("\u2028", "U+2028"),
    ("\ue000", "U+E000"), ("\U000E0001", "U+E0001"), ("\u0301", "'\u25cc\u0301'"),
    ("\u20dd", "'\u25cc\u20dd'"),
])
def test_escape_char(ch, shown):
    assert escape_char(ch) == shown


def test_terminal_form_escapes_what_a_terminal_obeys_and_keeps_real_text():
    from charrnn.data import terminal_form

    kept = "a\n\t\u00e9\u65e5\u3000\u00a0\u202f\u200c\u200d\u00ad\U0001F600\u0301\ue000"
    assert "".join(map(terminal_form, kept)) == kept
    assert [terminal_form(c) for c in "\x1b\x07\r\x7f\x85\u202e\u2066\u200f\u2028"] == [
        "\\x1b", "\\x07", "\\r", "\\x7f", "\\x85", "<U+202E>", "<U+2066>", "<U+200F>",
        "<U+2028>"]


@given(st.characters())
def test_escape_char_is_always_printable(ch):
    assert escape_char(ch).isprintable()


# ---------------------------------------------------------------- Vocab


def test_vocab_from_tricky_text_round_trips():
    vocab = Vocab.from_text(TRICKY)
    assert vocab.chars == tuple(sorted(set(TRICKY)))
    assert len(vocab) == vocab.size == len(set(TRICKY))
    ids = vocab.encode(TRICKY)
    assert ids.dtype == np.uint8
    assert ids.tolist() == [vocab.chars.index(c) for c in TRICKY]
    assert vocab.decode(ids) == TRICKY
    assert vocab.decode(ids.tolist()) == TRICKY


@given(st.text(min_size=1))
def test_vocab_round_trip_any_text(text):
    vocab, ids = Vocab.from_text(text), None
    ids, same = encode_corpus(text, vocab)
    assert same is vocab
    assert list(vocab.chars) == sorted(set(text))
    assert vocab.decode(ids) == text


def test_vocab_round_trip_across_chunks(small_chunks):
    vocab = Vocab.from_text(TRICKY)
    assert vocab == Vocab(sorted(set(TRICKY)))
    assert vocab.decode(vocab.encode(TRICKY)) == TRICKY


def test_vocab_codepoints_round_trip():
    vocab = Vocab.from_text(TRICKY)
    cps = vocab.codepoints()
    assert cps.dtype == np.int32
    assert cps.tolist() == sorted(map(ord, set(TRICKY)))
    assert Vocab.from_codepoints(cps) == vocab
    assert hash(Vocab.from_codepoints(cps)) == hash(vocab)
    cps[0] = 99  # a copy: the vocabulary is unchanged
    assert vocab.codepoints()[0] == 0


@pytest.mark.parametrize("chars, message", [
    (("b", "a"), "sorted and distinct"),
    (("a", "a"), "sorted and distinct"),
    (("ab",), "single characters"),
    ((1,), "single characters"),
    ((), "non-empty"),
    (("\ud800",), "55296 is not a Unicode scalar value"),
])
def test_vocab_rejects_bad_chars(chars, message):
    with pytest.raises(DataError, match=message):
        Vocab(chars)


@pytest.mark.parametrize("cps, message", [
    ([[65, 66]], "non-empty 1-D"),
    ([], "non-empty 1-D"),
    ([65.0, 66.0], "must be integers, not float64"),
    ([-1, 65], "-1 is not a Unicode scalar value"),
    ([65, 0x110000], "1114112 is not a Unicode scalar value"),
    ([65, 0xDFFF], "57343 is not a Unicode scalar value"),
    ([66, 65], "sorted and distinct"),
    ([65, 65], "sorted and distinct"),
])
def test_vocab_from_codepoints_validates(cps, message):
    with pytest.raises(DataError, match=message):
        Vocab.from_codepoints(np.array(cps))


@pytest.mark.parametrize("size, dtype", [
    (1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32),
])
def test_id_dtype_is_the_smallest_that_fits(size, dtype):
    vocab = vocab_of_size(size)
    assert vocab.id_dtype == dtype
    last = vocab.chars[-1]
    ids = vocab.encode(vocab.chars[0] + last)
    assert ids.dtype == dtype and ids.tolist() == [0, size - 1]
    assert vocab.decode(ids) == vocab.chars[0] + last


def test_unknown_characters_are_listed_escaped():
    vocab = Vocab.from_text("abc")
    with pytest.raises(VocabularyError) as err:
        vocab.encode("ab\x1bé\u200bé")
    message = str(err.value)
    assert message == ("3 characters not in the vocabulary: "
                       "'\\x1b' (U+001B), 'é' (U+00E9), U+200B")
    assert "\x1b" not in message
    assert err.value.unknown == ["\x1b", "é", "\u200b"]
    assert vocab.unknown("ab\x1bé\u200bé") == ["\x1b", "é", "\u200b"]
    assert vocab.unknown("cab") == []


def test_unknown_characters_list_is_capped():
    vocab = Vocab("a")
    only_b = r"^1 character not in the vocabulary: 'b' \(U\+0062\)$"
    with pytest.raises(VocabularyError, match=only_b):
        vocab.encode("ab")
    with pytest.raises(VocabularyError, match=r"^25 characters .*'u' \(U\+0075\), and 5 more$"):
        vocab.encode("abcdefghijklmnopqrstuvwxyz")


def test_skip_unknown_drops_them():
    vocab = Vocab.from_text("abc")
    ids = vocab.encode("xa\x1bbéc\ud800", skip_unknown=True)
    assert vocab.decode(ids) == "abc"
    assert vocab.encode("", skip_unknown=True).tolist() == []


def test_decode_rejects_ids_outside_the_vocabulary():
    vocab = Vocab.from_text("abc")
    assert vocab.decode([]) == ""
    with pytest.raises(DataError, match="id 3 is outside a vocabulary of 3 characters"):
        vocab.decode([0, 3])
    with pytest.raises(DataError, match="id -1 is outside"):
        vocab.decode(np.array([-1, 0]))


def test_encode_corpus_builds_or_reuses_a_vocab():
    ids, vocab = encode_corpus("hello")
    assert vocab.chars == ("e", "h", "l", "o") and ids.tolist() == [1, 0, 2, 2, 3]
    ids, same = encode_corpus("lol", vocab)
    assert same is vocab and ids.tolist() == [2, 3, 2]


# ---------------------------------------------------------------- read_corpus


def test_read_file_drops_bom_and_normalises_crlf(tmp_path):
    raw = b"\xef\xbb\xbfab\r\ncd\re\xc3\xa9\r\n\r"
    path = tmp_path / "in.txt"
    path.write_bytes(raw)
    corpus = read_corpus([path])
    assert corpus.text == "ab\ncd\reé\n\r"
    assert corpus.name == "in.txt" and corpus.files == (str(path),)
    assert corpus.size_bytes == len(raw)
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest()
    assert corpus.vocab == Vocab.from_text(corpus.text)
    assert len(corpus) == len(corpus.text) and corpus.ids.dtype == np.uint8
    assert not corpus.ids.flags.writeable


def test_single_path_may_be_a_string(tmp_path):
    (tmp_path / "a.txt").write_text("hi")
    assert read_corpus(str(tmp_path / "a.txt")).text == "hi"


# printable ASCII, CR, LF, a BOM, 2-, 3- and 4-byte UTF-8 characters
ALPHABET = st.sampled_from(list("ab \r\n\ufeffé€😀"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(ALPHABET, max_size=20), min_size=1, max_size=3),
       st.integers(1, 9))
def test_chunked_reading_equals_whole_file_decoding(parts, chunk):
    raw = "".join(parts).encode()
    expected = raw.decode()
    expected = (expected[1:] if expected.startswith("\ufeff") else expected).replace("\r\n", "\n")
    old, data.CHUNK = data.CHUNK, chunk
    try:
        if not expected:
            with pytest.raises(DataError, match="corpus is empty: <stdin>"):
                from_stdin(raw)
            return
        corpus = from_stdin(raw)
    finally:
        data.CHUNK = old
    assert corpus.text == expected
    assert corpus.vocab == Vocab.from_text(expected)
    assert corpus.ids.tolist() == corpus.vocab.encode(expected).tolist()


@pytest.mark.parametrize("limit", [1, 4, 7, 11, 12, 50])
def test_max_chars_reads_a_prefix_and_stops(tmp_path, small_chunks, limit):
    (tmp_path / "a.txt").write_bytes("ab\r\néz".encode())  # a\r\n is one character
    (tmp_path / "b.txt").write_bytes("€xy😀qq".encode())
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    whole = read_corpus(files).text
    corpus = read_corpus(files, max_chars=limit)
    assert corpus.text == whole[:limit]
    assert corpus.vocab == Vocab.from_text(whole[:limit])  # no character of the unread rest
    if limit <= 4:  # the second file is never opened, the first not read to its end
        assert corpus.size_bytes < len("ab\r\néz".encode())


def test_large_vocab_switches_dtype_mid_stream(small_chunks):
    text = "ab\n" + "".join(map(chr, range(0x4E00, 0x4E00 + 300))) + "ba"
    corpus = from_stdin(text.encode())
    assert corpus.ids.dtype == np.uint16 and corpus.vocab.size == 303
    assert corpus.text == text


def test_stdin(monkeypatch):
    raw = b"to be\r\nor not"
    corpus = from_stdin(raw)
    assert (corpus.name, corpus.files, corpus.text) == ("<stdin>", ("<stdin>",), "to be\nor not")
    assert corpus.sources == ("-",)  # what the output guard compares with standard input
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest() and corpus.size_bytes == len(raw)
    with pytest.raises(DataError, match=r"standard input \('-'\) can be read only once"):
        read_corpus(["-", "-"], stdin=io.BytesIO(raw))


def test_directory_sorted_hidden_and_binary_skipped(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfBB\r\n")
    (tmp_path / "a.txt").write_text("AA\n")
    (tmp_path / "c.md").write_text("CC")
    (tmp_path / ".hidden").write_text("hidden")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_text("not recursed")
    (tmp_path / "img.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    corpus = read_corpus([tmp_path])
    assert corpus.text == "AA\nBB\nCC"
    assert corpus.name == "3 files (a.txt, b.txt, c.md)"
    assert corpus.files == tuple(str(tmp_path / n) for n in ("a.txt", "b.txt", "c.md"))
    assert corpus.skipped == (str(tmp_path / "img.bin"),)
    raw = b"AA\n" + b"\xef\xbb\xbfBB\r\n" + b"CC"
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest() and corpus.size_bytes == len(raw)


def test_files_and_directories_mix_in_the_order_given(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("X")
    (tmp_path / "y.txt").write_text("Y")
    corpus = read_corpus([tmp_path / "y.txt", tmp_path / "d"])
    assert corpus.text == "YX"
    assert corpus.sources == (str(tmp_path / "y.txt"), str(tmp_path / "d" / "x.txt"))


def test_sources_are_the_paths_opened_and_files_their_printable_names(tmp_path):
    path = tmp_path / "a\x1bb.txt"
    path.write_text("text")
    corpus = read_corpus([path])
    assert corpus.files == (str(tmp_path / "a\\x1bb.txt"),) and corpus.sources == (str(path),)


def test_named_file_with_nul_bytes_is_read(tmp_path):
    (tmp_path / "nul.txt").write_bytes(b"a\x00b")
    assert read_corpus([tmp_path / "nul.txt"]).text == "a\x00b"


def test_fifo_is_read(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"through a pipe\r\n"))
    writer.start()
    try:
        assert read_corpus([fifo]).text == "through a pipe\n"
    finally:
        if writer.is_alive():  # the pipe was never opened for reading: release the writer
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=5)


def test_missing_file_is_a_usage_error(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(CorpusNotFound, match=f"^corpus file not found: {path}$") as err:
        read_corpus([path])
    assert err.value.exit_code == 2 and isinstance(err.value, DataError)


def test_paths_in_messages_are_escaped(tmp_path):
    with pytest.raises(CorpusNotFound) as err:
        read_corpus([tmp_path / "evil\x1b[31m.txt"])
    assert "\x1b" not in str(err.value) and "evil\\x1b[31m.txt" in str(err.value)


def test_directory_without_text_files(tmp_path):
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "blob").write_bytes(b"\x00\x01")
    with pytest.raises(CorpusNotFound, match=f"^no text files in directory: {tmp_path}$") as err:
        read_corpus([tmp_path])
    assert err.value.exit_code == 2


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_path_that_is_neither_file_nor_directory():
    with pytest.raises(DataError, match="^not a regular file or directory: /dev/null$"):
        read_corpus(["/dev/null"])


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    for name in ("empty.txt", "bom.txt"):
        with pytest.raises(DataError, match=f"^corpus is empty: {name}$"):
            read_corpus([tmp_path / name])
    with pytest.raises(CorpusNotFound, match="no corpus files given"):
        read_corpus([])


def test_undecodable_byte_names_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("héllo wörld\n".encode() + b"\xff more")  # 14 bytes, then 0xff
    with pytest.raises(DataError) as err:
        read_corpus([path])
    assert str(err.value) == f"{path}: byte 0xff at offset 14 {UNDECODABLE_HINT}"
    assert err.value.exit_code == 1


def test_binary_file_is_named_as_such(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xb7\x00")
    with pytest.raises(DataError) as err:
        read_corpus([path])
    assert str(err.value) == (f"{path}: looks like a binary file, not text (NUL bytes; "
                              "byte 0xb7 at offset 16 is not valid utf-8); if it is text, pass "
                              "its encoding (e.g. utf-16)")
    assert err.value.exit_code == 1


def test_utf16_text_read_as_utf8_is_pointed_to_its_encoding(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("Shall I compare thee\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"pass its encoding \(e\.g\. utf-16\)"):
        read_corpus([path])
    assert read_corpus([path], encoding="utf-16").text == "Shall I compare thee\n"


@settings(max_examples=60, deadline=None)
@given(st.text(ALPHABET, max_size=12), st.sampled_from([b"\xfe", b"\xc3", b"\xe2\x82"]),
       st.integers(1, 6))
def test_undecodable_offset_is_exact_across_chunks(prefix, bad, chunk):
    raw = prefix.encode()  # then a byte that is never valid, or a character cut short by ASCII
    old, data.CHUNK = data.CHUNK, chunk
    try:
        with pytest.raises(DataError) as err:
            from_stdin(raw + bad + b" tail")
    finally:
        data.CHUNK = old
    assert str(err.value) == (f"<stdin>: byte 0x{bad[:1].hex()} at offset {len(raw)} "
                              f"{UNDECODABLE_HINT}")


def test_truncated_character_at_end_of_file():
    with pytest.raises(DataError, match=r"^<stdin>: byte 0xe2 at offset 2 is not valid utf-8"):
        from_stdin(b"ab\xe2\x82")


def test_latin1_and_utf16(small_chunks):
    assert from_stdin(b"caf\xe9\r\n\xff", encoding="latin-1").text == "café\nÿ"
    assert from_stdin("hé\r\n😀".encode("utf-16"), encoding="utf-16").text == "hé\n😀"
    assert from_stdin("\ufeffhé".encode("utf-16-le"), encoding="utf-16-le").text == "hé"


def test_unknown_encoding():
    with pytest.raises(DataError, match="^unknown text encoding: 'klingon'$"):
        from_stdin(b"x", encoding="klingon")
    with pytest.raises(DataError, match="^not a text encoding: 'rot13'$"):
        from_stdin(b"x", encoding="rot13")


def test_corpus_encode_onto_a_model_vocabulary():
    corpus = from_stdin(b"cab\xc3\xa9a")
    model = Vocab("abcd")
    assert corpus.encode(corpus.vocab) is corpus.ids
    with pytest.raises(VocabularyError, match="^1 character not in the vocabulary: 'é'"):
        corpus.encode(model)
    assert model.decode(corpus.encode(model, skip_unknown=True, stop=4)) == "cab"  # é left out
    ids = corpus.encode(model, skip_unknown=True)
    assert ids.tolist() == [2, 0, 1, 0] and ids.dtype == np.uint8
    wide = vocab_of_size(300)
    assert wide.decode(from_stdin(b"cab").encode(wide)) == "cab"


# ---------------------------------------------------------------- split and batches


def test_split_train_val_is_a_tail_of_views():
    ids = np.arange(100, dtype=np.uint32)
    train, val = split_train_val(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    assert np.shares_memory(train, ids) and np.shares_memory(val, ids)
    assert split_train_val(ids, 0.29)[1].size == 29  # rounded, not floored from 28.999...
    assert split_train_val(ids, 0)[1].size == 0
    for bad in (1.0, -0.1):
        with pytest.raises(DataError, match="^val_frac must be at least 0 and below 1"):
            split_train_val(ids, bad)


def test_validation_chars_rounds_half_up():
    assert validation_chars(100, 0.1) == 10
    assert validation_chars(100, 0.29) == 29  # 28.999... rounds to 29
    assert validation_chars(10, 0.25) == 3  # 2.5 rounds up (round() would give 2)
    assert validation_chars(10, 0.24) == 2
    assert validation_chars(6000, 0.1) == 600
    assert validation_chars(0, 0.5) == validation_chars(7, 0.0) == 0


@given(n=st.integers(0, 10_000), val_frac=st.floats(0, 0.99))
def test_the_split_holds_out_validation_chars(n, val_frac):
    train, val = split_train_val(np.zeros(n, np.uint8), val_frac)
    assert len(val) == validation_chars(n, val_frac) and len(train) + len(val) == n


def test_stream_batches_small_example():
    ids = np.arange(23, dtype=np.uint8)
    batches = StreamBatches(ids, batch_size=2, seq_len=3)  # per = 11, 3 windows
    assert len(batches) == batches.steps_per_epoch == 3
    assert np.shares_memory(batches.inputs, ids) and np.shares_memory(batches.targets, ids)
    x, y = batches.window(0)
    assert x.tolist() == [[0, 1, 2], [11, 12, 13]] and y.tolist() == [[1, 2, 3], [12, 13, 14]]
    x, y = batches.window(2)
    assert x.tolist() == [[6, 7, 8], [17, 18, 19]] and y.tolist() == [[7, 8, 9], [18, 19, 20]]
    assert x.flags.c_contiguous and y.flags.c_contiguous and x.dtype == np.uint8
    assert len(list(batches)) == 3
    with pytest.raises(IndexError):
        batches.window(3)


def test_stream_batches_too_little_text():
    assert min_chars(2, 3) == 7
    assert len(StreamBatches(np.arange(7), 2, 3)) == 1
    with pytest.raises(DataError, match=r"^the training text has 6 characters, but one batch "
                                        r"of 2 x 3 needs 7; lower batch_size or seq_len$"):
        StreamBatches(np.arange(6), 2, 3)
    with pytest.raises(DataError, match="has 0 characters"):
        StreamBatches(np.arange(0), 1, 1)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 400), B=st.integers(1, 9), T=st.integers(1, 12),
       val_frac=st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5]))
def test_windows_tile_the_streams(n, B, T, val_frac):
    ids = np.arange(n, dtype=np.uint32)  # each id is its position in the text
    train, val = split_train_val(ids, val_frac)
    assert np.array_equal(np.concatenate([train, val]), ids)
    if len(train) < min_chars(B, T):
        with pytest.raises(DataError, match="lower batch_size or seq_len"):
            StreamBatches(train, B, T)
        return
    batches = StreamBatches(train, B, T)
    per = (len(train) - 1) // B
    assert len(batches) == per // T >= 1
    xs, ys = zip(*batches, strict=True)
    assert all(x.shape == y.shape == (B, T) for x, y in zip(xs, ys, strict=True))
    x, y = np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)
    for b in range(B):  # row b of the windows, side by side, is stream b: no gap, no overlap
        start = b * per
        assert x[b].tolist() == list(range(start, start + len(batches) * T))
    assert np.array_equal(y, x + 1)  # targets are the inputs shifted by one
    assert y.max() < len(train)  # validation text never reaches training, not even as a target
    assert len(np.unique(x)) == x.size
