"""The one error hierarchy of charrnn; every message is a sentence fit for a user."""


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
# line has asked for its flags (``--max-time``); set once per process by ``charrnn.cli``.
_SPEAK_IN_FLAGS = [False]


def speak_in_flags(on: bool = True) -> None:
    """Make messages name options as command-line flags (the command line calls this once)."""
    _SPEAK_IN_FLAGS[0] = on


def option(name: str) -> str:
    """An option as a message names it: ``max_time`` for the library, ``--max-time`` on the
    command line."""
    return "--" + name.replace("_", "-") if _SPEAK_IN_FLAGS[0] else name
