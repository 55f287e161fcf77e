"""Replacing a file atomically: readers see the old file or the new one, never a part.

The new contents go to a temporary file in the target's folder (``.<name>.tmp-<pid>-<tag>``),
flushed and fsynced, then renamed over the target; the folder is fsynced so the rename itself
survives a crash. Temporary files left by crashed writers of the same target are swept first.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from .errors import CharRNNError
from .output_guard import not_a_file

__all__ = ["replace_file", "short_message"]


def short_message(e: BaseException) -> str:
    """An exception as one line of at most 200 characters, for an error message."""
    s = " ".join(str(e).split()) or type(e).__name__
    return s if len(s) <= 200 else s[:197] + "..."


def _clean_stale(path: Path) -> None:
    """Remove temporary files of crashed writes to this target: our pattern, process gone."""
    prefix = f".{path.name}.tmp-"
    with suppress(OSError):
        for entry in os.scandir(path.parent):
            pid, _, tag = entry.name.removeprefix(prefix).partition("-")
            if (entry.name.startswith(prefix) and pid.isascii() and pid.isdigit() and len(tag) == 8
                    and set(tag) <= set("0123456789abcdef") and os.name == "posix"):
                try:
                    os.kill(int(pid), 0)  # signal 0 only asks: does the process exist?
                except (ProcessLookupError, OverflowError):
                    with suppress(OSError):
                        os.unlink(entry.path)
                except OSError:  # EPERM: alive, someone else's
                    pass


def replace_file(path: str | Path, write: Callable[[BinaryIO], None],
                 error: type[CharRNNError] = CharRNNError) -> None:
    """Write a file through ``write(f)`` (f: the temporary file, opened for binary writing)
    and rename it over ``path``; any failure is an ``error`` saying "cannot write PATH: why".

    A symbolic link is followed (its target is replaced, the link stays), an existing file's
    permissions carry over to the new one, and a directory, device, pipe or socket is never
    replaced (renamed over, /dev/null would become a plain file).
    """
    path = Path(os.path.realpath(path))
    try:
        st = os.stat(path)
    except OSError:
        mode = None
    else:
        if problem := not_a_file(st.st_mode):
            raise error(f"cannot write {os.fspath(path)}: {problem}")
        mode = stat.S_IMODE(st.st_mode) & 0o777  # permissions, not setuid & co
    _clean_stale(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:  # Ctrl-C too: never leave the temporary file behind
        with suppress(OSError):
            os.chmod(tmp, 0o600)  # a read-only copy of the mode would keep Windows from deleting
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise error(f"cannot write {os.fspath(path)}: "
                        f"{e.strerror or short_message(e)}") from None
        raise
    with suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
