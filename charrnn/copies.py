"""Copy check: how much of a sample appears verbatim in a corpus ("is it memorising my text?").

    index = CopyIndex(corpus_text)            # or CopyIndex.from_ids(corpus.ids, vocab.chars)
    report = index.check(sample)              # a CopyReport; report.to_dict() is JSON-ready
    reports = index.check_all(samples)        # several: the corpus is read once for all
    report.longest, report.longest_start      # the longest span of the sample found verbatim
    report.copied_share, report.spans         # the sample inside verbatim spans of >= N chars

Definitions, for a sample y of m characters and a corpus x of n. The longest span is the largest
L such that some window y[i:i+L] occurs in x (exact for any L; 0 when no character of y is in
x). A character of y is *copied* when it lies in a window of at least N = MIN_SPAN characters
that occurs in x. Every part of an occurring window occurs too, so the copied characters are
exactly the union of the occurring windows of length N:

    copied = U { [i, i + N) : y[i:i+N] occurs in x },     copied_share = |copied| / m

and ``spans`` are the maximal runs of that union: each is one verbatim span, or overlapping
verbatim spans (all >= N long) that may come from different places of the corpus.

Hashing. Windows are compared by a polynomial hash mod 2^64 (NumPy's uint64 wraps):

    h(w_0 .. w_{L-1}) = sum_t w_t A^t,     prefix sums P[j] = sum_{t<j} x_t A^t  (j = 0..n)
    h(x[i:i+L]) = (P[i+L] - P[i]) * A^-i             (A is odd, so A^-1 mod 2^64 exists)

so after one cumulative sum, the hashes of all windows of any length cost two vector operations.
A probe, "which windows y[i:i+L] occur in this part of the corpus?", hashes its windows, keeps
those whose hash is one of the sample's (a bit table on the top bits, then a binary search) and
then compares every claimed match character by character: a hash collision can cost time, never
report a false copy, and a match whose hash collided with another is still found (the other
candidates are tried, one window at a time: slow, but only after a collision, which real text
hardly ever meets). Claimed matches on one diagonal (corpus start - sample start) with
consecutive starts are compared as one run, so verifying a long copy costs O(m + L), not O(m L).

Streaming. The corpus is read in chunks of CHUNK characters that overlap by m - 1, so every
window of the sample that occurs lies whole in some chunk. In each chunk the longest span is
searched by galloping then bisection upwards from the longest found so far (one probe, at
best + 1, when the chunk holds nothing longer: the usual case), and once best >= N, by one probe
at L = N for the windows not yet found. Several samples share each chunk's hashing.

Cost, per sample: O(n) vector work per probe and about 1-3 probes per chunk (more in the first
chunks, while the longest span grows: O(log m) probes each time it does), plus O(m log m) for the
sample's own hashes. Measured on ids (benchmarks/bench_trust.py, 2 cores): 0.1-0.2 s for 1 MB
and a 10,000-character sample, 1.6-2.8 s for 100 MB (a str corpus, hashed from code points:
about 1.5 times as long). Memory: O(CHUNK + m) whatever n is, at most about 70 bytes per chunk
character (34 MB); the corpus is the caller's, a str or ids of 1-4 bytes per character, and is
never copied whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["CHUNK", "MIN_SPAN", "CopyIndex", "CopyReport"]

MIN_SPAN = 20  # N: a character is "copied" inside a verbatim span of at least this many
CHUNK = 1 << 19  # corpus characters hashed at a time (plus the overlap): bounds the memory
_BASE = 0x9E3779B97F4A7C15  # A: odd, so invertible mod 2^64
_VERIFY_BLOCK = 1 << 18  # characters compared per batch when verifying (~15 MB)


@dataclass(frozen=True)
class CopyReport:
    """What of one sample appears verbatim in the corpus; plain numbers (see the module)."""

    sample_chars: int  # m
    min_span: int  # N
    longest: int  # length of the longest span of the sample found verbatim (0: none)
    longest_start: int  # its start in the sample (-1 when longest is 0)
    longest_corpus_start: int  # where it occurs in the corpus, one occurrence (-1: none)
    longest_text: str  # the span itself
    spans: tuple[tuple[int, int], ...]  # (start, end) in the sample of the copied runs
    copied_chars: int  # characters inside them

    @property
    def copied_share(self) -> float:
        """The share of the sample's characters inside verbatim spans of >= N characters."""
        return self.copied_chars / self.sample_chars if self.sample_chars else 0.0

    def to_dict(self) -> dict:
        """JSON-ready: every field, spans as [start, end] lists, and copied_share."""
        return {**asdict(self), "spans": [list(s) for s in self.spans],
                "copied_share": self.copied_share}

    def summary(self) -> str:
        """One line: "longest verbatim span 143 characters; 12.3% in 3 spans of 20+"."""
        return (f"longest verbatim span {self.longest:,} character"
                f"{'' if self.longest == 1 else 's'}; {self.copied_share:.1%} of the sample in "
                f"{len(self.spans)} span{'' if len(self.spans) == 1 else 's'} of "
                f"{self.min_span}+")


def _powers(base: int, count: int) -> np.ndarray:
    """(count,) uint64: base^0, base^1, ... mod 2^64."""
    out = np.full(count, base, np.uint64)
    out[:1] = 1
    return np.cumprod(out, out=out)  # uint64 products wrap mod 2^64, as intended


class _Hashed:
    """A text's codes and its prefix sums P (len + 1,), for window hashes of any length."""

    def __init__(self, codes: np.ndarray, up: np.ndarray, down: np.ndarray) -> None:
        self.codes, self.down = codes, down
        terms = codes.astype(np.uint64)
        terms *= up[:len(codes)]  # in place: one temporary of 8 bytes a character, not two
        self.prefix = np.zeros(len(codes) + 1, np.uint64)
        np.cumsum(terms, out=self.prefix[1:])

    def __len__(self) -> int:
        return len(self.codes)


def _window_hashes(text: _Hashed, length: int, starts: np.ndarray | None = None) -> np.ndarray:
    """h(text[i:i+length]) for each i in starts (default: every window), uint64."""
    if starts is None:
        count = len(text) - length + 1
        hashes = text.prefix[length:] - text.prefix[:count]
        hashes *= text.down[:count]
        return hashes
    return (text.prefix[starts + length] - text.prefix[starts]) * text.down[starts]


def _verify(corpus: np.ndarray, sample: np.ndarray, corpus_starts: np.ndarray,
            sample_starts: np.ndarray, length: int) -> np.ndarray:
    """Whether corpus[p:p+length] == sample[i:i+length] for each pair (p, i), pairs in order
    of i; consecutive i on one diagonal p - i form a run compared once, run_windows + length - 1
    characters. Returns a (pairs,) bool mask."""
    ok = np.zeros(len(sample_starts), bool)
    if not len(ok):
        return ok
    diagonal = corpus_starts - sample_starts
    new_run = np.ones(len(ok), bool)
    new_run[1:] = (np.diff(sample_starts) != 1) | (np.diff(diagonal) != 0)
    first = np.flatnonzero(new_run)  # each run's first pair
    windows = np.diff(np.append(first, len(ok)))  # pairs per run
    chars = windows + length - 1  # characters each run compares
    batch = (np.cumsum(chars) - chars) // _VERIFY_BLOCK  # runs batched to bound the memory
    for runs in np.split(np.arange(len(first)), np.flatnonzero(np.diff(batch)) + 1):
        run_chars, run_windows = chars[runs], windows[runs]
        offset = np.cumsum(run_chars) - run_chars  # each run's start in the batch
        step = np.arange(run_chars.sum()) - np.repeat(offset, run_chars)
        in_sample = np.repeat(sample_starts[first[runs]], run_chars) + step
        in_corpus = in_sample + np.repeat(diagonal[first[runs]], run_chars)
        mismatches = np.zeros(len(step) + 1, np.int64)
        np.cumsum(corpus[in_corpus] != sample[in_sample], out=mismatches[1:])
        window_offset = np.cumsum(run_windows) - run_windows
        begin = (np.repeat(offset, run_windows) + np.arange(run_windows.sum())
                 - np.repeat(window_offset, run_windows))
        pairs = slice(first[runs[0]], first[runs[0]] + run_windows.sum())
        ok[pairs] = mismatches[begin + length] == mismatches[begin]
    return ok


def _probe(chunk: _Hashed, sample: _Hashed, length: int,
           starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which windows sample[i:i+length], i in starts (ascending), occur in the chunk:
    (their starts, a verified start of each in the chunk)."""
    none = np.zeros(0, np.int64)
    if length > len(chunk) or not len(starts):
        return none, none
    wanted = _window_hashes(sample, length, starts)
    keys = np.unique(wanted)
    hashes = _window_hashes(chunk, length)
    bits = int(np.clip(np.ceil(np.log2(32 * len(keys))), 10, 24))  # ~3% false hits at most
    shift = np.uint64(64 - bits)
    table = np.zeros(1 << bits, bool)
    table[keys >> shift] = True
    hits = np.flatnonzero(table[hashes >> shift])
    key_of_hit = np.minimum(np.searchsorted(keys, hashes[hits]), len(keys) - 1)
    exact = keys[key_of_hit] == hashes[hits]
    hits, key_of_hit = hits[exact], key_of_hit[exact]
    witness = np.full(len(keys), -1, np.int64)
    witness[key_of_hit] = hits  # one candidate per hash, any: it is verified below
    key_of_wanted = np.searchsorted(keys, wanted)
    corpus_at = witness[key_of_wanted]
    has = corpus_at >= 0
    starts, corpus_at, key_of_wanted = starts[has], corpus_at[has], key_of_wanted[has]
    ok = _verify(chunk.codes, sample.codes, corpus_at, starts, length)
    for k in np.flatnonzero(~ok):  # a hash collision: try every other candidate of that hash
        others = hits[key_of_hit == key_of_wanted[k]]
        good = _verify(chunk.codes, sample.codes, others, np.full(len(others), starts[k]), length)
        if good.any():
            ok[k], corpus_at[k] = True, others[good][0]
    return starts[ok], corpus_at[ok]


def _longer_in(chunk: _Hashed, sample: _Hashed, best: int) -> tuple[int, tuple[int, int] | None]:
    """The longest window of the sample in the chunk, if longer than ``best``: (length,
    (sample start, chunk start)), else (best, None). Gallops up from best + 1, then bisects;
    a length found present or absent bounds every other, since each part of a match matches."""
    low, high = best, min(len(sample), len(chunk)) + 1  # present (or already known), absent
    starts, found, galloping, step = np.arange(len(sample)), None, True, 1
    while low + 1 < high:
        length = min(low + step, high - 1) if galloping else (low + high) // 2
        at, corpus_at = _probe(chunk, sample, length, starts[starts <= len(sample) - length])
        if len(at):
            low, found, step = length, (int(at[0]), int(corpus_at[0])), 2 * step
            starts = at  # a longer match starts where this one does
        else:
            high, galloping = length, False
    return low, found


def _runs(found: np.ndarray, m: int, span: int) -> list[tuple[int, int]]:
    """The maximal runs of the union of [i, i + span) over the starts i where found is set."""
    starts = np.flatnonzero(found)
    depth = np.cumsum(np.bincount(starts, minlength=m + 1)
                      - np.bincount(starts + span, minlength=m + 1))[:m]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], (depth > 0).astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class _Search:
    """One sample's search through the corpus, chunk after chunk: the longest span so far and
    the windows of length N found so far."""

    def __init__(self, codes: np.ndarray, up: np.ndarray, down: np.ndarray, span: int) -> None:
        self.sample, self.span = _Hashed(codes, up, down), span
        self.best, self.where = 0, (-1, -1)  # longest; (its start in sample, in corpus)
        self.found = np.zeros(max(len(codes) - span + 1, 0), bool)

    def scan(self, chunk: _Hashed, offset: int) -> None:
        """Take in a chunk of the corpus that starts at ``offset``."""
        if not len(self.sample):
            return
        self.best, longer = _longer_in(chunk, self.sample, self.best)
        if longer is not None:
            self.where = (longer[0], offset + longer[1])
        if self.best >= self.span and not self.found.all():  # else no N-window is here
            at, _ = _probe(chunk, self.sample, self.span, np.flatnonzero(~self.found))
            self.found[at] = True

    def report(self, sample: str) -> CopyReport:
        spans = _runs(self.found, len(sample), self.span)
        at = self.where[0]
        return CopyReport(len(sample), self.span, self.best, at, self.where[1],
                          sample[at:at + self.best], tuple(spans), sum(b - a for a, b in spans))


class CopyIndex:
    """A corpus to check samples against; holds the corpus by reference (no copy of it)."""

    def __init__(self, corpus: str, min_span: int = MIN_SPAN) -> None:
        if not isinstance(corpus, str):
            raise DataError("CopyIndex takes the corpus as a str; for ids, CopyIndex.from_ids")
        if not isinstance(min_span, int) or min_span < 1:
            raise ConfigError(f"min_span must be an integer of at least 1, not {min_span!r}")
        self.min_span, self._text, self._ids, self._lookup = min_span, corpus, None, None

    @classmethod
    def from_ids(cls, ids: np.ndarray, chars: Sequence[str],
                 min_span: int = MIN_SPAN) -> CopyIndex:
        """A corpus held as ids (n,), id k standing for chars[k] (a Vocab's ``chars``)."""
        index = cls("", min_span)
        index._ids, index._lookup = np.asarray(ids), {c: k for k, c in enumerate(chars)}
        return index

    def __len__(self) -> int:
        return len(self._text) if self._ids is None else len(self._ids)

    def _codes(self, text: str) -> np.ndarray:
        """A sample's codes, comparable with the corpus's (an unknown character matches none)."""
        if self._lookup is None:
            return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")
        unknown = len(self._lookup)  # above every id of the corpus
        return np.array([self._lookup.get(c, unknown) for c in text], np.int64)

    def _chunks(self, overlap: int) -> Iterator[tuple[int, np.ndarray]]:
        """(offset, codes) of chunks of CHUNK + overlap characters, CHUNK apart."""
        for start in range(0, len(self), CHUNK):
            stop = start + CHUNK + overlap
            if self._ids is not None:
                yield start, self._ids[start:stop]
            else:
                yield start, self._codes(self._text[start:stop])
            if stop >= len(self):
                break

    def check(self, sample: str) -> CopyReport:
        """The copy report of one sample against the corpus (see the module)."""
        return self.check_all([sample])[0]

    def check_all(self, samples: Sequence[str]) -> list[CopyReport]:
        """The copy report of each sample; the corpus is read and hashed once for all."""
        codes = [self._codes(sample) for sample in samples]
        m = max(map(len, codes), default=0)  # chunks overlap by m - 1 for the longest
        size = max(min(len(self), CHUNK + m), m) + 1  # the longest text hashed, plus one
        up, down = _powers(_BASE, size), _powers(pow(_BASE, -1, 1 << 64), size)
        searches = [_Search(c, up, down, self.min_span) for c in codes]
        for offset, chunk_codes in self._chunks(m - 1) if m else ():
            chunk = _Hashed(chunk_codes, up, down)
            for search in searches:
                search.scan(chunk, offset)
        return [search.report(sample) for search, sample in zip(searches, samples, strict=True)]
