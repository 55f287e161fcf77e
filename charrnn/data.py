"""Corpora in, integer ids out: reading text, the character vocabulary, train/val split, batches.

The pipeline, for a corpus of n characters:

    corpus = read_corpus(["input.txt"])            # corpus.ids (n,), corpus.vocab
    train, val = split_train_val(corpus.ids, 0.1)  # views of corpus.ids
    batches = StreamBatches(train, batch_size=32, seq_len=64)
    x, y = batches.window(k)                       # (B, T) inputs, targets; k < len(batches)

Memory: `read_corpus` never holds the text as one Python string, nor its raw bytes. It reads
1 MiB at a time, turns each chunk into code points (straight from the bytes when they are ASCII)
and appends ids to one array of the smallest unsigned dtype (uint8 up to 256 distinct
characters); the vocabulary is discovered on the way and the ids renumbered into sorted order at
the end. A corpus therefore peaks at about n * itemsize bytes plus a few MB. `Corpus.text`
decodes on demand; `Corpus.encode(vocab)` maps the ids onto another vocabulary (a model's).
For text already held as a str, `Vocab.encode` / `encode_corpus` work in chunks of 1M characters.

Normalisation, per file: a byte-order mark (U+FEFF) at its start is dropped and "\\r\\n" becomes
"\\n" (a lone "\\r" stays). Files are concatenated as they are, with nothing in between.
"""

from __future__ import annotations

import codecs
import hashlib
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import DataError, option
from .vocab import (
    MAX_CODEPOINT,
    Vocab,
    encode_corpus,
    escape_char,
    id_dtype_for,
    take_chunked,
    terminal_form,
    unknown_error,
)

__all__ = [
    "Corpus", "CorpusNotFound", "StreamBatches", "Vocab", "corpus_files", "encode_corpus",
    "escape_char", "is_text_codec", "min_chars", "read_corpus", "split_train_val",
    "terminal_form", "validation_chars",
]

CHUNK = 1 << 20  # characters (or bytes read) per step: bounds the temporaries to a few MB
SNIFF_BYTES = 8192  # a directory member with a NUL byte in its first 8 KB is taken as binary
_CR, _LF, _BOM = 0x0D, 0x0A, 0xFEFF
# codecs in which a byte below 0x80 is always that ASCII character: such chunks skip decoding
_ASCII_COMPATIBLE = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252"})


COUNT_CHUNK = 1 << 22  # characters counted at a time (bounds memory on large corpora)

class CorpusNotFound(DataError):
    """A corpus path does not exist or names a directory without text files (a usage error)."""

    exit_code = 2


def _printable(s: str) -> str:
    """`s` with non-printable characters escaped, so a path cannot carry a terminal escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A corpus read from files or stdin: its text as ids over its own vocabulary, and origin."""

    name: str  # for display: the file name, "N files" or "<stdin>"
    files: tuple[str, ...]  # every file read, in order (printable)
    size_bytes: int  # raw bytes read, before decoding
    sha256: str  # hex digest of those raw bytes, file after file
    ids: np.ndarray  # (n,) read-only, vocab.id_dtype: the whole normalised text
    vocab: Vocab  # the sorted distinct characters of the text
    skipped: tuple[str, ...] = ()  # directory members left out because they look binary
    sources: tuple[str, ...] = ()  # every file read, as opened ("-": standard input)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def text(self) -> str:
        """The normalised text, decoded on demand (1, 2 or 4 bytes per character)."""
        return self.vocab.decode(self.ids)

    @cached_property
    def char_counts(self) -> np.ndarray:
        """(V,) int64, read-only: how often each character of the vocabulary occurs, counted
        once."""
        counts = np.zeros(len(self.vocab), np.int64)
        for start in range(0, len(self.ids), COUNT_CHUNK):  # bincount widens ids to int64
            counts += np.bincount(self.ids[start:start + COUNT_CHUNK], minlength=len(counts))
        counts.flags.writeable = False
        return counts

    def notes(self) -> list[str]:
        """What the reading of the files left out or repeated, worth a word to the user."""
        notes = []
        if self.skipped:
            shown = ", ".join(self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
            notes.append(f"left out {len(self.skipped)} file(s) that look binary: {shown}")
        twice = sorted({f for f in self.files if self.files.count(f) > 1})
        if twice:
            notes.append("read more than once (named twice?): " + ", ".join(twice[:5]))
        return notes

    def encode(self, vocab: Vocab, skip_unknown: bool = False,
               stop: int | None = None) -> np.ndarray:
        """The ids of the text's first ``stop`` characters (all by default) over another
        vocabulary (a model's); the whole text's unknowns as in Vocab.encode."""
        ids = self.ids if stop is None else self.ids[:stop]
        if vocab == self.vocab:
            return ids
        mapped, known = vocab._lookup(self.vocab._cps)  # per character of our vocabulary
        table = mapped.astype(vocab.id_dtype)
        if not known.all():  # every character of our vocabulary occurs in the text
            if not skip_unknown:
                raise unknown_error([self.vocab.chars[i] for i in np.flatnonzero(~known)])
            ids = ids[take_chunked(known, ids, np.empty(len(ids), bool))]
        return take_chunked(table, ids, np.empty(len(ids), vocab.id_dtype))


class _IdsBuilder:
    """Appends code points as ids over a vocabulary found on the way; sorted ids at the end."""

    def __init__(self, capacity: int) -> None:
        self._lut = np.full(MAX_CODEPOINT + 1, -1, np.int32)  # code point -> provisional id
        self._seen: list[int] = []  # provisional id -> code point, in order of first use
        self.ids = np.empty(max(capacity, 1), np.uint8)  # pages untouched until written
        self.count = 0

    def add(self, cps: np.ndarray) -> None:
        ids = self._lut[cps]
        if (ids < 0).any():
            new = np.unique(cps[ids < 0])
            self._lut[new] = np.arange(len(self._seen), len(self._seen) + len(new))
            self._seen.extend(new.tolist())
            ids = self._lut[cps]
            if id_dtype_for(len(self._seen)) != self.ids.dtype:  # rare: past 256 or 65536
                self.ids = self.ids.astype(id_dtype_for(len(self._seen)))
        end = self.count + len(cps)
        if end > len(self.ids):  # realloc, which can usually grow without copying
            self.ids.resize(max(end, 2 * len(self.ids)), refcheck=False)
        self.ids[self.count:end] = ids
        self.count = end

    def finish(self) -> tuple[np.ndarray, Vocab]:
        self.ids.resize(self.count, refcheck=False)  # give back the unused tail
        seen = np.array(self._seen, np.int64)
        order = np.argsort(seen)
        if (order != np.arange(len(order))).any():
            rank = np.empty(len(order), self.ids.dtype)
            rank[order] = np.arange(len(order))
            take_chunked(rank, self.ids, out=self.ids)  # in place, chunk by chunk
        self.ids.flags.writeable = False
        return self.ids, Vocab.from_codepoints(seen[order])


class _Normaliser:
    """Drops a leading BOM and turns CRLF into LF across chunk boundaries of one file."""

    def __init__(self) -> None:
        self.at_start, self.held_cr = True, False

    def feed(self, cps: np.ndarray) -> np.ndarray:
        if self.held_cr:  # a CR that ended the previous chunk: keep it unless an LF follows
            cps = np.concatenate((np.array([_CR], cps.dtype), cps))
        if self.at_start and len(cps):
            self.at_start = False
            if int(cps[0]) == _BOM:
                cps = cps[1:]
        self.held_cr = bool(len(cps)) and int(cps[-1]) == _CR
        if self.held_cr:
            cps = cps[:-1]
        crlf = (cps[:-1] == _CR) & (cps[1:] == _LF)
        if crlf.any():
            cps = cps[~np.append(crlf, False)]
        return cps

    def close(self) -> np.ndarray:
        return np.array([_CR] if self.held_cr else [], np.uint32)


def is_text_codec(info: codecs.CodecInfo) -> bool:
    """Whether a codec turns bytes into text (rot13, base64, zlib and the like do not)."""
    return getattr(info, "_is_text_encoding", True)


def _codec(encoding: str) -> codecs.CodecInfo:
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise DataError(f"unknown text encoding: {_printable(str(encoding))!r}") from None
    if not is_text_codec(info):
        raise DataError(f"not a text encoding: {_printable(encoding)!r}")
    return info


def _file_codepoints(chunks: Iterator[bytes], name: str, codec: codecs.CodecInfo,
                     encoding: str) -> Iterator[np.ndarray]:
    """Code points of one file's normalised text, chunk by chunk."""
    decoder = codec.incrementaldecoder("strict")
    fed = 0  # bytes handed over so far, so a decoding error can name its file offset

    def pending() -> int:  # bytes of an unfinished character the decoder is holding
        return len(decoder.getstate()[0])

    def decode(raw: bytes, final: bool = False) -> np.ndarray:
        before = fed - pending()  # e.start counts from the held bytes, not from `raw`
        try:
            text = decoder.decode(raw, final)
        except UnicodeDecodeError as e:
            byte = e.object[e.start:e.start + 1].hex() or "end"
            if b"\x00" in raw:  # text files hardly ever hold NUL bytes; binary ones do
                raise DataError(f"{name}: looks like a binary file, not text (NUL bytes; "
                                f"byte 0x{byte} at offset {before + e.start} is not valid "
                                f"{_printable(encoding)}); if it is text, pass its "
                                f"{option('encoding')} (e.g. utf-16)") from None
            raise DataError(
                f"{name}: byte 0x{byte} at offset {before + e.start} is not valid "
                f"{_printable(encoding)}; pass {option('encoding', 'latin-1')} (or the file's "
                "real encoding), or convert the file to UTF-8") from None
        except UnicodeError as e:
            raise DataError(f"{name}: not valid {_printable(encoding)}: {e}") from None
        return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")

    fast = codec.name in _ASCII_COMPATIBLE
    normaliser = _Normaliser()
    for raw in chunks:
        data = np.frombuffer(raw, np.uint8)
        # pure ASCII: the bytes are the code points, no str is built
        cps = data if fast and data.max() < 0x80 and not pending() else decode(raw)
        fed += len(raw)
        yield normaliser.feed(cps)
    yield normaliser.feed(decode(b"", final=True))
    yield normaliser.close()


class _Tally:
    def __init__(self) -> None:
        self.digest, self.size = hashlib.sha256(), 0


def _raw_chunks(source: Path | str, name: str, stdin: BinaryIO | None,
                tally: _Tally) -> Iterator[bytes]:
    """The raw bytes of a file or of stdin ('-'), CHUNK bytes at a time, counted and hashed."""
    try:
        # stdin belongs to the caller: read it, do not close it
        with open(source, "rb") if source != "-" else nullcontext(stdin or sys.stdin.buffer) as f:
            while chunk := f.read(CHUNK):
                tally.digest.update(chunk)
                tally.size += len(chunk)
                yield chunk
    except OSError as e:
        raise DataError(f"cannot read {name}: {e.strerror or e}") from None


def _expand(paths: Sequence[str | Path]) -> tuple[list[Path | str], list[str], int]:
    """Files to read in order ('-' is stdin), directory members skipped, total size if known."""
    files: list[Path | str] = []
    skipped: list[str] = []
    size = 0
    for given in paths:
        if str(given) == "-":
            files.append("-")
            continue
        path, shown = Path(given), _printable(str(given))
        try:
            mode = path.stat().st_mode
            if stat.S_ISDIR(mode):
                members = sorted((p for p in path.iterdir()
                                  if not p.name.startswith(".") and p.is_file()),
                                 key=lambda p: p.name)
                found = []
                for member in members:
                    with open(member, "rb") as f:  # binary files have NULs near the start
                        binary = b"\0" in f.read(SNIFF_BYTES)
                    (skipped if binary else found).append(member)
                if not found:
                    raise CorpusNotFound(f"no text files in directory: {shown}")
            elif stat.S_ISREG(mode) or stat.S_ISFIFO(mode):  # a FIFO: `train <(zcat x.gz)`
                found = [path]
            else:
                raise DataError(f"not a regular file or directory: {shown}")
            size += sum(p.stat().st_size for p in found)
        except FileNotFoundError:
            raise CorpusNotFound(f"corpus file not found: {shown}") from None
        except OSError as e:
            raise DataError(f"cannot read {_printable(str(e.filename or given))}: "
                            f"{e.strerror or e}") from None
        files.extend(found)
    return files, [_printable(str(p)) for p in skipped], size


def corpus_files(paths: Sequence[str | Path]) -> list[Path | str]:
    """The files `read_corpus` reads for these paths, in order ('-' for stdin)."""
    return _expand([paths] if isinstance(paths, str | Path) else list(paths))[0]


def read_corpus(paths: Sequence[str | Path], encoding: str = "utf-8",
                stdin: BinaryIO | None = None, max_chars: int | None = None) -> Corpus:
    """Read, decode and normalise files ('-' is stdin, a directory its text files) into ids.

    With ``max_chars``, reading stops after that many characters (size_bytes and sha256 are
    then those of the chunks read, which may go past the characters kept).
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise CorpusNotFound("no corpus files given")
    if sum(str(p) == "-" for p in paths) > 1:
        raise DataError("standard input ('-') can be read only once")
    codec = _codec(encoding)
    files, skipped, size = _expand(paths)
    names = tuple("<stdin>" if f == "-" else _printable(str(f)) for f in files)
    if len(files) > 1:  # a few are named (a folder's files are not on the command line)
        shown = [n if n == "<stdin>" else _printable(Path(n).name) for n in names]
        name = f"{len(files)} files" + (f" ({', '.join(shown)})" if len(files) <= 4 else "")
    else:
        name = "<stdin>" if files[0] == "-" else _printable(Path(files[0]).name)
    capacity = size or CHUNK  # chars <= bytes for any sane encoding: no regrowth
    builder = _IdsBuilder(capacity if max_chars is None else min(capacity, max_chars))
    tally = _Tally()
    chunks = (cps for source, shown in zip(files, names, strict=True)
              for cps in _file_codepoints(_raw_chunks(source, shown, stdin, tally), shown,
                                          codec, encoding))
    for cps in chunks:
        if max_chars is not None:
            cps = cps[:max_chars - builder.count]
        builder.add(cps)
        if builder.count == max_chars:
            break
    if builder.count == 0:
        raise DataError(f"corpus is empty: {name}")
    ids, vocab = builder.finish()
    return Corpus(name, names, tally.size, tally.digest.hexdigest(), ids, vocab, tuple(skipped),
                  tuple(map(str, files)))


def validation_chars(n: int, val_frac: float) -> int:
    """Characters of an n-character text held out for validation: n * val_frac, rounded half up.

        n_val = floor(n * val_frac + 1/2),   n_train = n - n_val
    """
    return int(n * val_frac + 0.5)


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) views of `ids`: the last validation_chars(n, val_frac) ids are the tail."""
    if not 0 <= val_frac < 1:
        raise DataError(f"{option('val_frac')} must be at least 0 and below 1, not {val_frac!r}")
    split = len(ids) - validation_chars(len(ids), val_frac)
    return ids[:split], ids[split:]


def min_chars(batch_size: int, seq_len: int) -> int:
    """Fewest training characters for one batch: B streams of T inputs, plus the last target."""
    return batch_size * seq_len + 1


class StreamBatches:
    """Training ids cut into B contiguous streams and read in windows of T steps.

    With n ids and per = (n - 1) // B, `inputs` (B, per) is ids[:B*per] row by row and `targets`
    the same shifted by one (both views). Window k is columns [k*T, (k+1)*T) of every row, so row
    b of window k+1 continues row b of window k: the hidden state carries from one to the next.
    The last per % T columns of each row are not used in an epoch.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int) -> None:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise DataError("training ids must be a 1-D integer array")
        if batch_size < 1 or seq_len < 1:
            raise DataError(f"{option('batch_size')} and {option('seq_len')} must be positive")
        self.batch_size, self.seq_len = B, T = batch_size, seq_len
        per = max(len(ids) - 1, 0) // B
        self.steps_per_epoch = per // T
        if self.steps_per_epoch == 0:
            raise DataError(
                f"the training text has {len(ids):,} characters, but one batch of {B} x {T} needs "
                f"{min_chars(B, T):,}; lower {option('batch_size')} or {option('seq_len')}")
        self.inputs = ids[:B * per].reshape(B, per)
        self.targets = ids[1:B * per + 1].reshape(B, per)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of window k: (B, T) contiguous inputs and their targets (the next characters)."""
        if not 0 <= k < self.steps_per_epoch:
            raise IndexError(f"window {k} outside 0..{self.steps_per_epoch - 1}")
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        x, y = self.inputs[:, cols], self.targets[:, cols]
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return (self.window(k) for k in range(self.steps_per_epoch))
