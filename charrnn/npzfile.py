"""A zip of ``.npy`` members (what ``np.savez`` writes), read defensively and written atomically.

Reading bounds everything before anything is allocated: the zip directory (its size,
duplicate names, encryption, compression ratios, the declared sizes against the file's) and
each member's npy header (at most ``MAX_HEADER`` bytes, no Fortran order); a member's data is
then read into an array of exactly the checked size. Any problem is an ``Invalid`` with a
one-line message; the model file's own rules (which members, dtypes and shapes) live in
``checkpoint``.

Writing goes through ``atomic.replace_file``: a temporary file in the target's folder,
flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import replace_file, short_message
from .errors import CheckpointError

MAX_HEADER = 10_000  # bytes of an npy header
MAX_TOTAL_BYTES = 16 << 30  # all members, uncompressed
MAX_RATIO, RATIO_FREE = 1000, 1 << 20  # uncompressed / compressed, for members above 1 MiB
FILE_RATIO, FILE_FREE = 100, 64 << 20  # all members / file size, for archives above 64 MiB
MAX_DIRECTORY = 4 << 20  # bytes of the zip's central directory (a real one: ~100 KB at most)
_CHUNK = 1 << 22  # bytes read at a time


class Invalid(Exception):
    """A problem with the contents; load and save prefix it with the file name."""


def check(ok: bool, message: str | Callable[[], str]) -> None:
    """Raise Invalid(message) unless ok; a message showing a value from the file is best a
    function, formatted only on failure (showing a long list costs its length)."""
    if not ok:
        raise Invalid(message() if callable(message) else message)


def shown(v: Any) -> str:
    """A value from the file, fit for a one-line message: ASCII, escaped, short."""
    s = ascii(v)
    return s if len(s) <= 60 else s[:57] + "..."


def dtype_name(dt: np.dtype) -> str:
    if dt.hasobject or dt.names or dt.subdtype:
        return "object" if dt.hasobject else f"structured {shown(dt.str)}"
    return dt.name + (" big-endian" if dt.byteorder == ">" else "")


def _read_exact(f, n: int, what: str) -> bytes:
    data = f.read(n)
    check(len(data) == n, f"{what} is truncated")
    return data


def open_zip(f) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """Check the archive's directory; return it and its members by file name."""
    size = os.fstat(f.fileno()).st_size
    check(size > 0, "the file is empty")
    # the stdlib's own reader of the end record: bound the directory before zipfile parses it
    end = getattr(zipfile, "_EndRecData", lambda f: [0] * 6)(f)
    if end is None:
        f.seek(0)
        zip_start = f.read(4) == b"PK\x03\x04"  # a zip whose end (its directory) is missing
        raise Invalid("truncated or damaged: a zip archive without its end (its directory)"
                      if zip_start else "not a charrnn model file (not a zip/.npz archive)")
    check(end[4] <= 65535 and end[5] <= MAX_DIRECTORY,  # entries, bytes of the directory
           f"the archive directory is too large ({end[4]:,} entries, {end[5]:,} bytes)")
    zf = zipfile.ZipFile(f)
    infos = {i.filename: i for i in zf.infolist()}
    if len(infos) < len(zf.filelist):
        dup = next(n for n, k in Counter(zf.namelist()).items() if k > 1)
        raise Invalid(f"member {shown(dup)} appears more than once")
    for name, i in infos.items():
        stored = i.compress_type == zipfile.ZIP_STORED
        check(not i.flag_bits & 1 and (stored or i.compress_type == zipfile.ZIP_DEFLATED),
               f"member {shown(name)} is encrypted or uses an unsupported compression")
        check((not stored or i.file_size == i.compress_size)
               and i.file_size <= max(RATIO_FREE, MAX_RATIO * i.compress_size),
               f"member {shown(name)} declares {i.file_size:,} bytes from {i.compress_size:,} "
               "stored (compression ratio too high)")
    total = sum(i.file_size for i in infos.values())
    packed = sum(i.compress_size for i in infos.values())  # overlapping members count twice
    check(packed <= size and total <= min(MAX_TOTAL_BYTES, max(FILE_FREE, FILE_RATIO * size)),
           f"the archive declares {total:,} bytes ({packed:,} stored) in a {size:,}-byte file")
    return zf, infos


def member_header(zf, info, key: str) -> tuple[np.dtype, tuple, int]:
    """(dtype, shape, header length) of a member, reading at most MAX_HEADER bytes of it."""
    with zf.open(info) as f:
        magic = f.read(8)
        check(magic[:6] == b"\x93NUMPY" and magic[6:] in (b"\1\0", b"\2\0"),
               f"member {key!r} is not a .npy array of version 1 or 2")
        fmt = "<H" if magic[6] == 1 else "<I"
        raw = _read_exact(f, struct.calcsize(fmt), f"member {key!r} header")
        (n,) = struct.unpack(fmt, raw)
        check(n <= MAX_HEADER, f"member {key!r} has a {n:,}-byte header (limit {MAX_HEADER:,})")
        raw += _read_exact(f, n, f"member {key!r} header")
    npy = np.lib.format
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = npy.read_array_header_1_0 if magic[6] == 1 else npy.read_array_header_2_0
            shape, fortran, dtype = read(io.BytesIO(raw), max_header_size=MAX_HEADER)
    except Exception as e:  # numpy's parser meeting hostile text raises all kinds
        raise Invalid(f"member {key!r} has an unreadable npy header ({short_message(e)})") from None
    check(not fortran, f"member {key!r} is in Fortran order")
    return dtype, shape, 8 + len(raw)


def read_member(zf, info, dtype, shape, hlen) -> np.ndarray:
    """Read a checked member's data into an array of exactly the checked size."""
    arr = np.empty(shape, dtype)
    buf, pos = memoryview(arr.reshape(-1).view(np.uint8)), 0
    with zf.open(info) as f:
        _read_exact(f, hlen, "header")
        while pos < len(buf):
            n = f.readinto(buf[pos:pos + _CHUNK])
            check(n > 0, f"member {info.filename!r} is truncated")
            pos += n
        check(not f.read(1), f"member {info.filename!r} has trailing data")  # and CRC checked
    return arr


def write_atomic(path: Path, meta: bytes, arrays: dict[str, np.ndarray]) -> None:
    """The archive written by ``atomic.replace_file``: a temporary file in the same folder,
    flushed and fsynced, renamed over the target (a link followed, permissions kept)."""
    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, a in {"meta": np.frombuffer(meta, np.uint8), **arrays}.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as m:
                    np.lib.format.write_array(m, a, version=(1, 0), allow_pickle=False)

    replace_file(path, write, CheckpointError)
