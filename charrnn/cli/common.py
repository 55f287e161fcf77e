"""What every command shares: the `charrnn` group, option types, error handling, loading
a model, reading a text argument."""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

import click
from click.core import ParameterSource

from .. import __version__
from ..errors import CharRNNError, DataError
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


def given_options(ctx: click.Context, names) -> dict:
    """The options the user set explicitly (command line or environment), by field name."""
    return {n: ctx.params[n] for n in names
            if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)}


@contextmanager
def errors_to_exit(debug: bool, interrupted: str = "interrupted"):
    """Turn charrnn's errors into a one-line `Error: ...` and the error's exit code; Ctrl-C
    into `Error: <interrupted>` and 130 (or the interrupt's own ``exit_code``). NumPy's
    floating-point warnings are off: a model whose weights overflow shows it in its figures
    (inf, nan), not in warnings between them."""
    import numpy as np

    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            yield
    except CharRNNError as e:
        if debug:
            raise
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        if debug:
            raise
        click.echo(f"Error: {interrupted}", err=True)
        sys.exit(getattr(e, "exit_code", 130))  # 143 for a second SIGTERM (cli.train)


def silence(stream) -> None:
    """Point a standard stream's file descriptor at /dev/null: after its reader has gone (or
    its disk is full), later writes and the interpreter's last flush pass quietly."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _Group(click.Group):
    """The command group, where every command's output failures end:
    - the reader went away (`charrnn sample | head`): stop quietly, exit 0;
    - the output's encoding cannot hold a character (`PYTHONIOENCODING=ascii`): one line,
      exit 1;
    - Ctrl-C outside a command's own handling (e.g. while it starts): one line, exit 130;
    - any other OSError that gets here is almost always the output failing (a full disk, a
      vanished device: files charrnn reads and writes have their own messages): one line,
      exit 1, not a traceback (unless --debug)."""

    def invoke(self, ctx):
        debug = "--debug" in sys.argv[1:]
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # caught here, before Click's own handler exits 1
            silence(sys.stdout)
            sys.exit(0)
        except UnicodeEncodeError as e:
            if debug:
                raise
            ch = e.object[e.start:e.start + 1]
            click.echo(f"Error: the output's encoding ({e.encoding}) has no character "
                       f"U+{ord(ch):04X}; set PYTHONIOENCODING=utf-8", err=True)
            sys.exit(1)
        except KeyboardInterrupt:  # before Click's own handler says "Aborted!" and exits 1
            if debug:
                raise
            click.echo("Error: interrupted", err=True)
            sys.exit(130)

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except OSError as e:
            if "--debug" in sys.argv[1:]:
                raise
            silence(sys.stdout)
            what = (f"{e.strerror}: {e.filename}" if e.filename
                    else f"cannot write the output: {e.strerror or e}")
            click.echo(f"Error: {what}", err=True)
            sys.exit(1)


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


def apply_unknown_option(vocab, counts, policy: str, what: str) -> dict[str, int]:
    """The --unknown option on a text ({char: occurrences}): `vocab.apply_unknown_policy`,
    and a note on stderr naming what it leaves out."""
    missing = apply_unknown_policy(vocab, counts, policy, what)
    if missing:
        click.echo(f"note: {left_out_note(missing)}", err=True)
    return missing
