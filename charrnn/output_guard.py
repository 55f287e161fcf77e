"""The files charrnn may write: the rules that keep an output path from destroying something.

An output is refused when it is a folder, a device, a pipe or a socket (renamed over, /dev/null
would become a plain file), a file the corpus reads, or another user's file in a sticky folder
such as /tmp. An existing model file is replaced only with ``force`` or continued with
``resume``; a page (``charrnn inspect --html``) never replaces a file it is made from, and another
existing file only with ``force``. ``atomic.replace_file`` applies the first rule at every
write too, so a library ``save`` is covered as well.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import UsageError, option

__all__ = ["check_output", "check_page_output", "check_writable", "is_corpus_file", "may_replace",
           "not_a_file"]


def not_a_file(mode: int) -> str | None:
    """Why an existing path of this ``st_mode`` may not be written over, or None for a file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "it is a directory"
    return "not a regular file (a device, a pipe or a socket)"


def may_replace(target: Path) -> bool:
    """Whether a new file may be renamed over ``target``: not in a sticky folder (/tmp) unless
    we own the file or the folder (or are root)."""
    if not hasattr(os, "geteuid"):
        return True
    me, folder = os.geteuid(), target.parent.stat()
    return (not folder.st_mode & stat.S_ISVTX) or me in (0, folder.st_uid, target.stat().st_uid)


def is_corpus_file(output: str | Path, sources: Sequence[str | Path]) -> bool:
    """Whether ``output`` is a file that the corpus ``sources`` read ("-": standard input)."""
    try:
        target = os.stat(output)
    except OSError:
        return False  # a new file: nothing reads it
    for source in sources:
        try:
            found = os.fstat(sys.stdin.fileno()) if source == "-" else os.stat(source)
        except (OSError, ValueError):
            continue
        if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def check_writable(path: Path) -> None:
    """Raise a UsageError unless a file may be written at ``path``: its folder exists and is
    writable, and the path is not a folder, a device, a pipe or a socket, nor another user's
    file in a sticky folder."""
    target = Path(os.path.realpath(path))  # a symbolic link is written through to its target
    folder = target.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"cannot write {path}: {folder} {what}")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if target.exists() and (problem := not_a_file(target.stat().st_mode)):
        raise UsageError(f"cannot write {path}: {problem}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {folder} is not writable")
    if target.exists() and not may_replace(target):
        raise UsageError(f"cannot write {path}: it belongs to another user, in a folder "
                         "where only a file's owner may replace it (sticky, like /tmp)")


def check_output(path: Path, *, resume: bool, force: bool,
                 sources: Sequence[str | Path] = ()) -> None:
    """Raise a UsageError unless training may write the model file ``path``: never over a file
    of the corpus, whose ``sources`` (``Corpus.sources``; "-": standard input) it reads, even
    with ``force``; over an existing file only with ``resume`` or ``force``, not both."""
    check_writable(path)
    if is_corpus_file(path, sources):
        raise UsageError(f"cannot write {path}: it is a file of the corpus; choose another "
                         f"{option('output')}")
    if path.exists() and not (resume or force):
        raise UsageError(f"{path} already exists; pass {option('resume', True)} to continue "
                         f"training it or {option('force', True)} to overwrite it")
    if resume and not path.exists():
        raise UsageError(f"cannot resume: {path} does not exist")
    if resume and force:
        raise UsageError(f"{option('resume', True)} continues a model and "
                         f"{option('force', True)} starts a new one; pass one of them")


def check_page_output(path: Path, *, force: bool, inputs: Sequence[str | Path]) -> None:
    """Raise a UsageError unless a page made from ``inputs`` (the model file, a text, a
    corpus; "-": standard input) may be written at ``path``: never over one of them, even
    with ``force``, and over another existing file only with ``force``."""
    check_writable(path)
    if is_corpus_file(path, inputs):
        raise UsageError(f"cannot write {path}: the page is made from that file")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass {option('force', True)} to overwrite it")
