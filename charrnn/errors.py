"""The one error hierarchy of charrnn; every message is a sentence fit for a user, and names an
option as its reader calls it (``option``): a parameter in the library, a flag on the command
line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class CharRNNError(Exception):
    """Base of every error charrnn raises on purpose; the CLI prints it as `Error: ...`."""

    #: exit code the command line uses for this error (1 runtime, 2 usage)
    exit_code = 1


class ConfigError(CharRNNError, ValueError):
    """A configuration value is out of range or inconsistent."""

    exit_code = 2


class DataError(CharRNNError):
    """A corpus cannot be read, decoded or cut into batches."""


class CheckpointError(CharRNNError):
    """A model file is missing, broken, hostile, or cannot be written."""


class VocabularyError(CharRNNError):
    """Text contains characters the model's vocabulary does not have."""

    exit_code = 2


class DivergenceError(CharRNNError):
    """Training produced a NaN or infinite loss or gradient."""


class UsageError(CharRNNError):
    """A problem with a command's arguments, found before any work starts."""

    exit_code = 2


# How a message names an option: the library's parameter name (``max_time``) unless the command
# line has asked for its flags (``--max-time``); the command line does, for each invocation.
_SPEAK_IN_FLAGS = [False]
#: the parameters whose flag is not "--" and the name with dashes
FLAGS = {"output": "-o/--output"}
_NO_VALUE = object()


def speak_in_flags(on: bool = True) -> bool:
    """Make messages name options as command-line flags (on) or as parameters (off); returns
    the setting it replaces."""
    before, _SPEAK_IN_FLAGS[0] = _SPEAK_IN_FLAGS[0], on
    return before


@contextmanager
def speaking_in_flags(on: bool = True) -> Iterator[None]:
    """Messages made inside name options as flags (on) or as parameters (off)."""
    before = speak_in_flags(on)
    try:
        yield
    finally:
        speak_in_flags(before)


def flag(name: str) -> str:
    """The command line's flag for a parameter: ``--max-time`` for ``max_time``, and the
    exceptions in FLAGS (``-o/--output``)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def option(name: str, value: Any = _NO_VALUE) -> str:
    """An option as a message names it, with a value if given: ``max_time``, ``seq_len=10``,
    ``force=True`` for the library; ``--max-time``, ``--seq-len 10``, ``--force`` on the
    command line."""
    if not _SPEAK_IN_FLAGS[0]:
        return name if value is _NO_VALUE else f"{name}={value!r}"
    if value is _NO_VALUE or value is True:
        return flag(name)
    return f"{flag(name).split('/')[-1]} {value}"
