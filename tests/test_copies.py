"""The copy check: the longest verbatim span and the copied spans, exact whatever the hashes do."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import copies
from charrnn.copies import MIN_SPAN, CopyIndex

SONNETS = (Path(__file__).resolve().parents[1] / "corpora" / "sonnets.txt").read_text()


def brute_force(sample: str, corpus: str, span: int) -> tuple[int, list[tuple[int, int]]]:
    """(longest span, copied runs) from the definitions: ms[i], the longest prefix of sample[i:]
    in the corpus; the copied characters, the union of [i, i + ms[i]) where ms[i] >= span."""
    ms = []
    for i in range(len(sample)):
        length = 0
        while i + length < len(sample) and sample[i:i + length + 1] in corpus:
            length += 1
        ms.append(length)
    copied = [False] * len(sample)
    for i, length in enumerate(ms):
        if length >= span:
            copied[i:i + length] = [True] * length
    runs, start = [], None
    for k, c in enumerate([*copied, False]):
        if c and start is None:
            start = k
        elif not c and start is not None:
            runs.append((start, k))
            start = None
    return max(ms, default=0), runs


def assert_exact(report, sample: str, corpus: str, span: int) -> None:
    longest, runs = brute_force(sample, corpus, span)
    assert report.longest == longest
    assert list(report.spans) == runs
    assert report.copied_chars == sum(b - a for a, b in runs)
    if longest:  # the span claimed is where it is said to be, in the sample and in the corpus
        at, corpus_at = report.longest_start, report.longest_corpus_start
        assert report.longest_text == sample[at:at + longest]
        assert corpus[corpus_at:corpus_at + longest] == report.longest_text
    else:
        assert (report.longest_start, report.longest_corpus_start) == (-1, -1)


def test_a_verbatim_slice_is_reported_whole():
    sample = SONNETS[40_000:42_000]
    report = CopyIndex(SONNETS).check(sample)
    assert (report.longest, report.longest_start, report.longest_text) == (2000, 0, sample)
    assert report.spans == ((0, 2000),) and report.copied_share == 1.0
    assert SONNETS[report.longest_corpus_start:][:2000] == sample


def test_random_characters_over_the_alphabet_have_a_short_longest_span():
    alphabet = sorted(set(SONNETS))
    sample = "".join(np.random.default_rng(0).choice(alphabet, 5000))
    report = CopyIndex(SONNETS).check(sample)
    assert 2 <= report.longest <= 6
    assert report.spans == () and report.copied_chars == 0 and report.copied_share == 0.0
    assert report.longest_text in SONNETS and report.longest_text in sample
    assert_exact(CopyIndex(SONNETS).check(sample[:300]), sample[:300], SONNETS, MIN_SPAN)


def test_two_copied_spans_are_marked_exactly():
    first, second = SONNETS[1000:1025], SONNETS[5000:5030]  # 25 and 30 characters
    sample = "@@" + first + "##" + second + "%"  # @, # and % are not in the Sonnets
    report = CopyIndex(SONNETS).check(sample)
    assert report.spans == ((2, 27), (29, 59))
    assert report.copied_chars == 55 and report.copied_share == pytest.approx(55 / 60)
    assert (report.longest, report.longest_start, report.longest_text) == (30, 29, second)


def test_overlapping_copies_from_two_places_merge_into_one_run_but_not_one_span():
    corpus = "abcdefghijklmnopqrstuvwxy|pqrstuvwxyz0123456789ABCD"
    sample = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"  # [0, 25) and [15, 40) occur, not [0, 40)
    report = CopyIndex(corpus).check(sample)
    assert report.spans == ((0, 40),) and report.copied_chars == 40
    assert (report.longest, report.longest_start) == (25, 0)
    assert_exact(report, sample, corpus, MIN_SPAN)


def test_spans_at_the_very_start_and_end_of_the_sample():
    sample = SONNETS[:30] + "@@@" + SONNETS[-30:]
    report = CopyIndex(SONNETS).check(sample)
    assert report.spans == ((0, 30), (33, 63))
    assert report.copied_chars == 60


def test_a_span_counts_from_exactly_min_span_characters():
    corpus = "0123456789abcdefghij|klmnopqrstuvwxyz"
    index = CopyIndex(corpus, min_span=20)
    assert index.check("@" + corpus[:20] + "@").spans == ((1, 21),)
    assert index.check("@" + corpus[:19] + "@").spans == ()
    assert index.check("@" + corpus[:19] + "@").longest == 19


def test_a_corpus_shorter_than_min_span_copies_nothing():
    report = CopyIndex("hello").check("well, hello there")
    assert (report.longest, report.longest_start, report.longest_text) == (5, 6, "hello")
    assert report.spans == () and report.copied_share == 0


def test_empty_sample_and_empty_corpus():
    assert CopyIndex(SONNETS).check("").longest == 0
    report = CopyIndex("").check("some text")
    assert (report.longest, report.copied_chars, report.longest_text) == (0, 0, "")


def test_ids_give_the_same_report_as_the_text_and_unknown_characters_match_nothing():
    corpus = charrnn.Vocab.from_text(SONNETS)
    ids = corpus.encode(SONNETS)
    sample = SONNETS[3000:3100] + "\u00e9" + SONNETS[200:240] + "zq"
    by_ids = CopyIndex.from_ids(ids, corpus.chars).check(sample)
    assert by_ids == CopyIndex(SONNETS).check(sample)
    assert by_ids.spans == ((0, 100), (101, 141))


def test_a_copy_across_chunk_boundaries_is_found_whole(monkeypatch):
    monkeypatch.setattr(copies, "CHUNK", 16)
    sample = SONNETS[100:400]
    report = CopyIndex(SONNETS[:1000]).check(sample)
    assert (report.longest, report.spans) == (300, ((0, 300),))


@pytest.mark.parametrize("mask", [3, 0])  # four hash values, then one: everything collides
def test_hash_collisions_never_make_a_false_copy(monkeypatch, mask):
    exact = copies._window_hashes
    monkeypatch.setattr(copies, "_window_hashes",
                        lambda *args: exact(*args) & np.uint64(mask))
    corpus = SONNETS[:1200]
    for sample in (SONNETS[500:540] + "@" + SONNETS[1000:1025], SONNETS[1150:1250],
                   "".join(np.random.default_rng(1).choice(sorted(set(corpus)), 60))):
        assert_exact(CopyIndex(corpus).check(sample), sample, corpus, MIN_SPAN)


@settings(max_examples=300, deadline=None)
@given(corpus=st.text("ab", max_size=60) | st.text("abc", max_size=60),
       sample=st.text("abcd", max_size=40), span=st.integers(1, 8),
       chunk=st.sampled_from([3, 7, copies.CHUNK]))
def test_matches_brute_force_on_small_strings(corpus, sample, span, chunk):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(copies, "CHUNK", chunk)
        report = CopyIndex(corpus, min_span=span).check(sample)
    assert_exact(report, sample, corpus, span)


def test_the_report_is_json_ready():
    report = CopyIndex(SONNETS).check("@" + SONNETS[10:50])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["spans"] == [[1, 41]] and data["longest"] == 40
    assert data["copied_share"] == pytest.approx(40 / 41)
    assert report.summary() == ("longest verbatim span 40 characters; 97.6% of the sample in "
                                "1 span of 20+")


def test_several_samples_in_one_reading_of_the_corpus(monkeypatch):
    monkeypatch.setattr(copies, "CHUNK", 5000)
    samples = ["", "@", SONNETS[7000:7400], SONNETS[100:130] + "@" + SONNETS[9000:9100], "zq"]
    index = CopyIndex(SONNETS[:20_000])
    assert index.check_all(samples) == [index.check(s) for s in samples]
    assert [r.longest for r in index.check_all(samples)] == [0, 0, 400, 100, 1]


def test_bad_arguments_are_refused():
    with pytest.raises(charrnn.ConfigError, match="min_span"):
        CopyIndex("text", min_span=0)
    with pytest.raises(charrnn.DataError, match="from_ids"):
        CopyIndex(np.arange(3))


# ----------------------------------------------------------------- the acceptance items

POEM = ("Whose woods these are I think I know.\nHis house is in the village though;\n"
        "He will not see me stopping here\nTo watch his woods fill up with snow.\n")


def _trained(tmp_path, text: str, steps: int, **train_options):
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    out = tmp_path / "model.npz"
    model_options = {"cell": "gru", "hidden_size": 64, "num_layers": 1, "dropout": 0.0}
    for _ in charrnn.train(charrnn.read_corpus(path), out, model_options=model_options,
                           train_options={"max_steps": steps, "epochs": 0, **train_options},
                           threads=1):
        pass
    return charrnn.load(out)


def test_a_model_that_memorised_its_text_copies_most_of_its_sample(tmp_path):
    # the whole poem in one window, many passes, no dropout: about a second
    model = _trained(tmp_path, POEM, 150, val_frac=0.0, seq_len=len(POEM) - 1, batch_size=1,
                     lr=0.01)
    index = CopyIndex(POEM)
    for seed in range(3):
        sample = model.sample(len(POEM) - 6, prime="Whose ", temperature=0.5, seed=seed)
        report = index.check(sample)
        assert report.longest >= 0.8 * len(sample), sample
        assert report.copied_share >= 0.9


def test_a_model_that_learned_nothing_copies_nothing(tmp_path):
    model = _trained(tmp_path, SONNETS, 3)
    index = CopyIndex(SONNETS)
    for seed in range(3):
        report = index.check(model.sample(500, seed=seed))
        assert report.longest <= 6 and report.spans == ()
