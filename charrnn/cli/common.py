"""What every command shares: the `charrnn` group, option types, error handling, loading
a model, reading a text argument."""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from contextvars import ContextVar

import click

from .. import __version__
from ..errors import CharRNNError, DataError, speaking_in_flags
from ..vocab import apply_unknown_policy, left_out_note

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Duration(click.ParamType):
    """A time span: 90, 90s, 10m, 1.5h, 1h30m -> seconds."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value, param, ctx):
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
        if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
            self.fail(f"{value!r} is not a duration (examples: 90s, 10m, 1h30m)", param, ctx)
        return float(sum(float(n) * self._UNITS[u] for n, u in parts))


def option_range(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    return kind(min=lo, max=hi, min_open=lo_open, max_open=hi_open)


class Encoding(click.ParamType):
    """A text encoding Python knows (utf-8, latin-1, cp1252, ...); anything else is a usage
    error, before any file is read."""

    name = "encoding"

    def convert(self, value, param, ctx):
        import codecs

        from ..data import is_text_codec

        try:
            codec = codecs.lookup(value)
        except LookupError:
            self.fail(f"unknown text encoding {value!r} (e.g. utf-8, latin-1, cp1252)", param,
                      ctx)
        if not is_text_codec(codec):
            self.fail(f"{value!r} is not a text encoding (e.g. utf-8, latin-1, cp1252)", param,
                      ctx)
        return codec.name


ENCODING = Encoding()


class _LibraryDefault(click.Option):
    """An option whose default is None, so that the library applies its own; --help shows
    that default, ``shown``, in words."""

    def __init__(self, param_decls, *, shown: str, **attrs):
        super().__init__(param_decls, default=None, show_default=True, **attrs)
        self.shown = shown

    def get_help_record(self, ctx):
        self.default = self.shown  # only while its line of --help is written
        try:
            return super().get_help_record(ctx)
        finally:
            self.default = None


def library_option(*param_decls: str, shown: str, **attrs):
    """A Click option for a library parameter (a config field): None unless given, so that
    `given_options` passes on only what the user gave; ``shown`` is the library's default."""
    return click.option(*param_decls, cls=_LibraryDefault, shown=shown, **attrs)


def given_options(ctx: click.Context, names) -> dict:
    """The options the user set (on the command line or in the environment), by field name:
    those not None, as such an option's default is None and its library's default applies."""
    return {n: ctx.params[n] for n in names if ctx.params.get(n) is not None}


_DEBUG = ContextVar("charrnn_debug", default=False)  # this invocation's --debug


def _remember_debug(ctx, param, value: bool) -> bool:
    _DEBUG.set(value)
    return value


#: --debug, as every command takes it: a traceback instead of the one-line error
debug_option = click.option("--debug", is_flag=True, expose_value=False, callback=_remember_debug,
                            help="Show tracebacks.")


@contextmanager
def interrupt_message(message: str):
    """A Ctrl-C inside the block ends the command with `Error: <message>` rather than
    `Error: interrupted` (the innermost block's message wins)."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if not hasattr(interrupt, "message"):
            interrupt.message = message
        raise


def exit_status(error: BaseException) -> tuple[str | None, int]:
    """The line after `Error: ` (None: say nothing) and the exit code an error ends a command with:

    - a CharRNNError: its message, its ``exit_code`` (1 runtime, 2 usage);
    - Ctrl-C: "interrupted" (or the block's `interrupt_message`), 130 (or the interrupt's own
      ``exit_code``: 143 for a second SIGTERM in `charrnn train`);
    - the reader went away (`charrnn sample | head`): nothing, 0;
    - the output's encoding cannot hold a character (`PYTHONIOENCODING=ascii`): 1;
    - any other OSError is almost always the output failing (a full disk, a vanished device:
      files charrnn reads and writes have their own messages): 1.
    """
    if isinstance(error, CharRNNError):
        return str(error), error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return getattr(error, "message", "interrupted"), getattr(error, "exit_code", 130)
    if isinstance(error, BrokenPipeError):
        return None, 0
    if isinstance(error, UnicodeEncodeError):
        ch = error.object[error.start:error.start + 1]
        return (f"the output's encoding ({error.encoding}) has no character U+{ord(ch):04X}; "
                "set PYTHONIOENCODING=utf-8"), 1
    if isinstance(error, OSError):
        return (f"{error.strerror}: {error.filename}" if error.filename
                else f"cannot write the output: {error.strerror or error}"), 1
    raise TypeError(f"no exit status for {type(error).__name__}")


@contextmanager
def errors_to_exit():
    """Errors inside end the program as `exit_status` says, or, with --debug, go on as a
    traceback (a closed pipe always ends quietly)."""
    try:
        yield
    except (CharRNNError, KeyboardInterrupt, UnicodeEncodeError, OSError) as error:
        if _DEBUG.get() and not isinstance(error, BrokenPipeError):
            raise
        message, code = exit_status(error)
        if isinstance(error, OSError):
            silence(sys.stdout)  # its later writes and the interpreter's last flush pass quietly
        if message is not None:
            click.echo(f"Error: {message}", err=True)
        sys.exit(code)


def silence(stream) -> None:
    """Point a standard stream's file descriptor at /dev/null: after its reader has gone (or
    its disk is full), later writes and the interpreter's last flush pass quietly."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _Command(click.Command):
    """A charrnn command: it runs with NumPy's floating-point warnings off, as a model whose
    weights overflow shows it in its figures (inf, nan), not in warnings between them."""

    def invoke(self, ctx):
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return super().invoke(ctx)


class _Group(click.Group):
    """The command group: the one place where errors become exit codes (`errors_to_exit`),
    for what a command raises, caught before Click's own handlers (which say "Aborted!" to
    Ctrl-C and exit 1 on a closed pipe), and for output failing outside any command
    (`charrnn --help` into a full disk); and where messages start naming options as flags
    (`--max-time`, not the library's `max_time`), for the invocation."""

    command_class = _Command

    def invoke(self, ctx):
        with errors_to_exit():
            return super().invoke(ctx)

    def main(self, *args, **kwargs):
        token = _DEBUG.set(False)
        try:
            with speaking_in_flags(), errors_to_exit():
                return super().main(*args, **kwargs)
        finally:
            _DEBUG.reset(token)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="charrnn")
def main():
    """Train character-level RNN, GRU and LSTM language models on any text, sample from them,
    and look inside them.

    \b
      charrnn train corpora/sonnets.txt     # -> model.npz
      charrnn sample --temp 0.8             # text to stdout
      charrnn inspect model.npz             # what is inside
      charrnn eval model.npz held-out.txt   # loss, perplexity, bits/char
    """


def load_checkpoint(path: str, resume: bool = False):
    from ..checkpoint import ModelNotFound, load

    try:
        return load(path, resume=resume)
    except ModelNotFound:
        raise ModelNotFound(f"no model file at {path}; train one first, e.g. "
                            "`charrnn train corpora/sonnets.txt`") from None


def load_model(path: str):
    return load_checkpoint(path).model


def normalised(text: str) -> str:
    """Text given on the command line, read as a file would be: no byte-order mark, and
    ``\r\n`` as ``\n``."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def read_text(paths, encoding: str, what: str, max_chars: int | None = None):
    """Text files (or - for stdin) as one data.Corpus, with errors that name it as `what`;
    at most ``max_chars`` characters of them."""
    from pathlib import Path

    from ..data import CorpusNotFound, read_corpus

    for path in paths:
        if path != "-" and not Path(path).exists():
            raise CorpusNotFound(f"{what} file not found: {click.format_filename(path)}")
    try:
        return read_corpus(list(paths), encoding=encoding, stdin=sys.stdin.buffer,
                           max_chars=max_chars)
    except DataError as e:
        if not str(e).startswith("corpus is empty"):
            raise
        raise DataError(f"the {what} is empty: {str(e).split(': ', 1)[-1]}") from None


def corpus_note(record: dict | None, corpus, model_path: str, given: str,
                going_on: str) -> str | None:
    """A note when a corpus given to a command (``given``: how, e.g. "--check") is not the
    one the model file records (by sha256, as a resumed run compares them), saying what the
    command does anyway; None when it is, or when the file records no corpus."""
    from ..display.base import one_line

    if not record or record.get("sha256") == corpus.sha256:
        return None
    return (f"{given} {one_line(corpus.name)} (sha256 {corpus.sha256[:12]}...) is not the "
            f"corpus {one_line(model_path)} was trained on ({one_line(record.get('name'))}, "
            f"sha256 {one_line(record.get('sha256'))[:12]}...); {going_on}")


def apply_unknown_option(vocab, counts, policy: str, what: str) -> dict[str, int]:
    """The --unknown option on a text ({char: occurrences}): `vocab.apply_unknown_policy`,
    and a note on stderr naming what it leaves out."""
    missing = apply_unknown_policy(vocab, counts, policy, what)
    if missing:
        click.echo(f"note: {left_out_note(missing)}", err=True)
    return missing
