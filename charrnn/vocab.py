"""The character vocabulary: characters <-> integer ids, over any amount of text, and what
becomes of a text's characters that a vocabulary lacks.

A ``Vocab`` is the sorted distinct characters (Unicode scalar values) of a text; ids are
their ranks, stored in the smallest unsigned dtype that holds them (uint8 up to 256
characters). Encoding and decoding work ``CHUNK`` characters at a time, so their temporaries
stay a few MB whatever the text's length.

A character outside the vocabulary is refused ("error": a VocabularyError naming the first
``MAX_NAMED`` of them) or left out ("skip"), as ``apply_unknown_policy`` decides.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterator, Mapping, Sequence

import numpy as np

from .errors import ConfigError, DataError, VocabularyError, option

__all__ = ["MAX_NAMED", "UNKNOWN_POLICIES", "Vocab", "apply_unknown_policy", "encode_corpus",
           "escape_char", "leave_out", "left_out_note"]

CHUNK = 1 << 20  # characters per step of encoding or decoding
MAX_CODEPOINT = 0x10FFFF
MAX_NAMED = 20  # unknown characters one error message names; the rest are counted
UNKNOWN_POLICIES = ("error", "skip")  # a character outside the vocabulary: refuse it, or drop it


def escape_char(ch: str) -> str:
    """A printable, terminal-safe display of one character: 'a', '\\n', '\\x1b', ' ', U+200B,
    or '◌́' (a combining mark on a dotted circle, as Unicode charts show it)."""
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return repr(ch)  # C0/C1 controls as Python escapes: '\n', '\t', '\x00', '\x1b'
    category = unicodedata.category(ch)
    if ch != " " and category[0] in "CZ":
        return f"U+{code:04X}"  # invisible or unsafe: format (bidi), private, unassigned, spaces
    if category in ("Mn", "Me"):  # alone it would sit on the quote mark
        return f"'\u25cc{ch}'"
    return repr(ch)


# what a terminal obeys rather than shows: bidi embeddings, overrides, isolates and marks
# (they can reorder what follows, e.g. hide code), and the line/paragraph separators
_TERMINAL_ACTING = frozenset("\u061c\u200e\u200f\u2028\u2029") | frozenset(
    chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def terminal_form(ch: str) -> str:
    """``ch`` as a terminal should get it inside text: itself, unless the terminal would act on
    it (a control other than line break and tab, a bidi control): then ``\\x1b`` or <U+202E>.
    Spaces, joiners (U+200C/D) and soft hyphens of real text are left as they are."""
    if ch in "\n\t" or not (unicodedata.category(ch) == "Cc" or ch in _TERMINAL_ACTING):
        return ch
    shown = escape_char(ch)
    return shown[1:-1] if shown.startswith("'") else f"<{shown}>"


def _named(ch: str, count: int | None = None) -> str:
    """One character in a message: 'a' (U+0061), or U+200B where its escape is the code point;
    a count goes inside the brackets: 'a' (U+0061, once), U+200B (3 times)."""
    shown = escape_char(ch)
    details = [] if shown.startswith("U+") else [f"U+{ord(ch):04X}"]
    if count is not None:
        details.append("once" if count == 1 else f"{count:,} times")
    return f"{shown} ({', '.join(details)})" if details else shown


def _listing(chars: Sequence[str], counts: Mapping[str, int] | None = None) -> str:
    """The first MAX_NAMED characters named (with their counts, if given), the rest counted:
    "'a' (U+0061), U+200B, ..., and 5 more"."""
    named = ", ".join(_named(c, None if counts is None else counts[c])
                      for c in chars[:MAX_NAMED])
    rest = len(chars) - MAX_NAMED
    return named + (f", and {rest} more" if rest > 0 else "")


def unknown_error(chars: Sequence[str]) -> VocabularyError:
    """The error for characters outside a vocabulary: "3 characters not in the vocabulary: ..."."""
    n = len(chars)
    err = VocabularyError(
        f"{n} character{'s' if n != 1 else ''} not in the vocabulary: {_listing(chars)}")
    err.unknown = list(chars)  # for callers that want the characters themselves
    return err


def apply_unknown_policy(vocab: Vocab, counts: Mapping[str, int], policy: str,
                         what: str) -> dict[str, int]:
    """The characters of a text that ``vocab`` lacks, to be left out; under ``policy`` "error"
    any such character is a VocabularyError instead, naming them with their counts.

    counts: {char: occurrences} of the text; what: its name in the message ("prime", "text").
    Returns {char: occurrences} of the unknown characters, in code point order ({} if none).
    The message's remedy is ``option("unknown", "skip")``: ``--unknown skip`` on the command line.
    """
    if policy not in UNKNOWN_POLICIES:
        raise ConfigError(f"the policy for unknown characters is one of "
                          f"{', '.join(UNKNOWN_POLICIES)}, not {policy!r}")
    missing = {c: counts[c] for c in vocab.unknown("".join(counts))}
    if missing and policy == "error":
        err = VocabularyError(
            f"the {what} has {sum(missing.values()):,} character(s) the model never saw, "
            f"{len(missing)} distinct: {_listing(list(missing), missing)}; pass "
            f"{option('unknown', 'skip')} to leave them out")
        err.unknown = list(missing)
        raise err
    return missing


def left_out_note(missing: Mapping[str, int]) -> str:
    """What leaving out unknown characters ({char: occurrences}) took from a text: how many,
    and every one of them by its escape and code point."""
    named = ", ".join(f"{escape_char(c)} (U+{ord(c):04X})" for c in missing)
    return f"left out {sum(missing.values()):,} character(s) the model never saw: {named}"


def leave_out(text: str, chars: Collection[str]) -> str:
    """``text`` without any of ``chars`` (the "skip" policy on a str)."""
    return text.translate(dict.fromkeys(map(ord, chars))) if chars else text


def id_dtype_for(size: int) -> np.dtype:
    if size <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if size <= 1 << 16 else np.uint32)


def _codepoint_chunks(text: str) -> Iterator[np.ndarray]:
    """Code points of `text`, CHUNK characters at a time, as '<u4' arrays (lone surrogates kept)."""
    for start in range(0, len(text), CHUNK):
        piece = text[start:start + CHUNK].encode("utf-32-le", "surrogatepass")
        yield np.frombuffer(piece, "<u4")


def take_chunked(table: np.ndarray, ids: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[:] = table[ids] in chunks, so numpy never casts the whole index array to intp."""
    for start in range(0, len(ids), CHUNK):
        out[start:start + CHUNK] = table[ids[start:start + CHUNK]]
    return out


def _checked_codepoints(cps: np.ndarray) -> np.ndarray:
    if cps.ndim != 1 or cps.size == 0:
        raise DataError("a vocabulary must be a non-empty 1-D list of characters")
    if cps.dtype.kind not in "iu":
        raise DataError(f"vocabulary code points must be integers, not {cps.dtype}")
    cps = cps.astype(np.int64)  # uint64 beyond 2**63 wraps negative and is caught below
    bad = (cps < 0) | (cps > MAX_CODEPOINT) | ((cps >= 0xD800) & (cps <= 0xDFFF))
    if bad.any():
        raise DataError(f"vocabulary entry {int(cps[bad][0])} is not a Unicode scalar value")
    if (np.diff(cps) <= 0).any():
        raise DataError("vocabulary characters must be sorted and distinct")
    out = cps.astype("<u4")
    out.flags.writeable = False
    return out


class Vocab:
    """The sorted distinct characters of a text; a character's id is its index, 0 .. V-1."""

    __slots__ = ("_chars", "_cps")

    def __init__(self, chars: Sequence[str]) -> None:
        chars = tuple(chars)
        if not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise DataError("a vocabulary is made of single characters")
        self._cps = _checked_codepoints(np.array([ord(c) for c in chars], dtype=np.int64))
        self._chars = chars

    @classmethod
    def from_codepoints(cls, codepoints: Sequence[int] | np.ndarray) -> Vocab:
        """The vocabulary stored in a model file: (V,) strictly increasing code points."""
        cps = _checked_codepoints(np.asarray(codepoints))
        vocab = cls.__new__(cls)
        vocab._cps, vocab._chars = cps, tuple(map(chr, cps.tolist()))
        return vocab

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """The distinct characters of `text` (any Unicode), sorted by code point."""
        seen = np.zeros(MAX_CODEPOINT + 1, dtype=bool)  # 1.1 MB, beats sorting every chunk
        for cps in _codepoint_chunks(text):
            seen[cps] = True
        return cls.from_codepoints(np.flatnonzero(seen))

    def codepoints(self) -> np.ndarray:
        """(V,) int32 code points, for storage in a model file."""
        return self._cps.astype(np.int32)

    def merged(self, other: Vocab) -> Vocab:
        """The characters of both vocabularies, sorted (so each keeps its own order within)."""
        return Vocab.from_codepoints(np.union1d(self._cps, other._cps))

    def ids_of(self, chars: Sequence[str]) -> np.ndarray:
        """The id of each character (all of them in the vocabulary), as an index array."""
        ids, known = self._lookup(np.array([ord(c) for c in chars], dtype=np.int64))
        if not known.all():
            raise unknown_error(sorted({c for c, k in zip(chars, known, strict=True) if not k}))
        return ids

    @property
    def chars(self) -> tuple[str, ...]:
        return self._chars

    @property
    def size(self) -> int:
        return len(self._chars)

    @property
    def id_dtype(self) -> np.dtype:
        """Smallest unsigned dtype for ids: uint8 up to 256 characters, then uint16, uint32."""
        return id_dtype_for(self.size)

    def __len__(self) -> int:
        return len(self._chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"Vocab(size={self.size})"

    def _lookup(self, cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The id each code point would have, and whether it is in the vocabulary at all."""
        pos = np.searchsorted(self._cps, cps)
        np.minimum(pos, self.size - 1, out=pos)
        return pos, self._cps[pos] == cps

    def encode(self, text: str, skip_unknown: bool = False) -> np.ndarray:
        """Ids of the characters of `text`, (len(text),) in `id_dtype`.

        A character outside the vocabulary raises VocabularyError naming every such character,
        or with `skip_unknown` is dropped (and the result is shorter).
        """
        out = np.empty(len(text), self.id_dtype)
        n = 0
        for cps in _codepoint_chunks(text):
            ids, known = self._lookup(cps)
            if not known.all():
                if not skip_unknown:
                    raise unknown_error(self.unknown(text))
                ids = ids[known]
            out[n:n + len(ids)] = ids
            n += len(ids)
        return out if n == len(out) else out[:n].copy()

    def unknown(self, text: str) -> list[str]:
        """The sorted distinct characters of `text` that are not in the vocabulary."""
        found: set[int] = set()
        for cps in _codepoint_chunks(text):
            _, known = self._lookup(cps)
            if not known.all():
                found.update(np.unique(cps[~known]).tolist())
        return [chr(c) for c in sorted(found)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text whose ids are `ids` (any shape, read in order)."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size == 0:
            return ""
        if ids.dtype.kind not in "iu":
            raise DataError(f"character ids must be integers, not {ids.dtype}")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.size:
            bad = low if low < 0 else high
            raise DataError(f"id {bad} is outside a vocabulary of {self.size} characters")
        # one vectorised gather + a utf-32 decode per chunk; no Python-level loop per character
        return "".join(self._cps[ids[i:i + CHUNK]].tobytes().decode("utf-32-le")
                       for i in range(0, len(ids), CHUNK))


def encode_corpus(text: str, vocab: Vocab | None = None) -> tuple[np.ndarray, Vocab]:
    """(ids, vocab) of an in-memory text; its own vocabulary unless one is given."""
    vocab = Vocab.from_text(text) if vocab is None else vocab
    return vocab.encode(text), vocab
