"""Tests for what every command shares (charrnn.cli.common): the --unknown option, how errors
become exit codes, --debug."""

import errno
import subprocess
import sys
import warnings
from collections import Counter

import click
import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import ModelNotFound
from charrnn.cli import main
from charrnn.cli.common import (
    _Command,
    apply_unknown_option,
    errors_to_exit,
    exit_status,
    given_options,
    interrupt_message,
    library_option,
)
from charrnn.errors import ConfigError, DataError, VocabularyError
from charrnn.vocab import Vocab

VOCAB = Vocab.from_text("abc \n")
CHARRNN = [sys.executable, "-m", "charrnn"]


def test_the_unknown_option_notes_what_it_leaves_out(capsys):
    missing = apply_unknown_option(VOCAB, Counter("ab\u20ac\u20ac\u202e"), "skip", "text")
    assert list(missing.items()) == [("\u202e", 1), ("\u20ac", 2)]  # in code point order
    assert capsys.readouterr() == ("", "note: left out 3 character(s) the model never saw: "
                                       "U+202E (U+202E), '\u20ac' (U+20AC)\n")


def test_the_unknown_option_is_silent_without_unknown_characters(capsys):
    assert apply_unknown_option(VOCAB, Counter("abc"), "skip", "text") == {}
    assert apply_unknown_option(VOCAB, Counter("abc"), "error", "text") == {}
    assert capsys.readouterr() == ("", "")


def test_the_unknown_option_refuses_without_a_note(capsys):
    with pytest.raises(VocabularyError, match=r"^the prime has 1 character\(s\) the model never "
                                              r"saw, 1 distinct: '€' \(U\+20AC, once\); "):
        apply_unknown_option(VOCAB, Counter("a\u20ac"), "error", "prime")
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- library options


def test_a_library_option_is_given_or_none_and_its_help_shows_the_librarys_default():
    @click.command()
    @library_option("--seq-len", type=int, shown="64", help="Window.")
    @library_option("--lr", type=float, shown="0.004, 0.0005 with --init-from", help="Rate.")
    @click.pass_context
    def command(ctx, seq_len, lr):
        click.echo(given_options(ctx, ["seq_len", "lr"]))

    runner = CliRunner()
    assert runner.invoke(command, []).output == "{}\n"
    assert runner.invoke(command, ["--lr", "0.004"]).output == "{'lr': 0.004}\n"  # given
    shown = " ".join(runner.invoke(command, ["--help"]).output.split())
    assert "Window. [default: 64]" in shown
    assert "Rate. [default: 0.004, 0.0005 with --init-from]" in shown
    assert runner.invoke(command, []).output == "{}\n"  # --help left the default None


# ---------------------------------------------------------------- errors -> exit codes


def _second_sigterm() -> KeyboardInterrupt:
    interrupt = KeyboardInterrupt()
    interrupt.exit_code = 143
    return interrupt


def test_exit_status_of_each_error():
    assert exit_status(DataError("the text is empty")) == ("the text is empty", 1)
    assert exit_status(ConfigError("bad")) == ("bad", 2)
    assert exit_status(VocabularyError("unknown")) == ("unknown", 2)
    assert exit_status(KeyboardInterrupt()) == ("interrupted", 130)
    assert exit_status(_second_sigterm()) == ("interrupted", 143)
    assert exit_status(BrokenPipeError(errno.EPIPE, "Broken pipe")) == (None, 0)
    encoding = UnicodeEncodeError("ascii", "h\u00e9", 1, 2, "ordinal not in range(128)")
    assert exit_status(encoding) == ("the output's encoding (ascii) has no character U+00E9; "
                                     "set PYTHONIOENCODING=utf-8", 1)
    full = OSError(errno.ENOSPC, "No space left on device")
    assert exit_status(full) == ("cannot write the output: No space left on device", 1)
    gone = OSError(errno.ENXIO, "No such device or address", "/dev/x")
    assert exit_status(gone) == ("No such device or address: /dev/x", 1)
    with pytest.raises(TypeError, match="no exit status for ValueError"):
        exit_status(ValueError("not ours"))


def test_an_interrupt_says_the_innermost_message():
    with pytest.raises(KeyboardInterrupt) as caught, interrupt_message("outer"), \
            interrupt_message("files are safe"):
        raise _second_sigterm()
    assert exit_status(caught.value) == ("files are safe", 143)
    with pytest.raises(DataError) as other, interrupt_message("files are safe"):
        raise DataError("not an interrupt")
    assert not hasattr(other.value, "message")


@pytest.mark.parametrize("error, line, code", [
    (DataError("the text is empty"), "Error: the text is empty\n", 1),
    (VocabularyError("unknown"), "Error: unknown\n", 2),
    (_second_sigterm(), "Error: interrupted\n", 143),
])
def test_errors_to_exit_prints_one_line_and_exits(error, line, code, capsys):
    with pytest.raises(SystemExit) as exit_, errors_to_exit():
        raise error
    assert exit_.value.code == code
    assert capsys.readouterr() == ("", line)


def test_errors_to_exit_lets_other_exceptions_through():
    with pytest.raises(ZeroDivisionError), errors_to_exit():
        raise ZeroDivisionError
    with pytest.raises(click.UsageError), errors_to_exit():  # Click shows those itself, exit 2
        raise click.UsageError("give --prime or --prime-file, not both")


def test_a_command_runs_with_numpy_warnings_off():
    seen = {}

    def command():
        seen.update(np.geterr())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            seen["overflow"] = float(np.float32(3e38) * np.float32(10))

    _Command("probe", callback=command).main([], standalone_mode=False)
    assert seen == {"over": "ignore", "invalid": "ignore", "divide": "ignore", "under": "ignore",
                    "overflow": float("inf")}
    assert np.geterr()["over"] == "warn"  # only while the command runs


# ---------------------------------------------------------------- --debug


def test_debug_shows_a_traceback_and_its_absence_one_line(tmp_path):
    missing = str(tmp_path / "none.npz")
    plain = subprocess.run([*CHARRNN, "sample", "-m", missing], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 1
    assert plain.stderr == (f"Error: no model file at {missing}; train one first, e.g. "
                            "`charrnn train corpora/sonnets.txt`\n")
    debug = subprocess.run([*CHARRNN, "sample", "-m", missing, "--debug"], capture_output=True,
                           text=True, timeout=60)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.splitlines()[-1].startswith("charrnn.checkpoint.ModelNotFound: no model")


def test_debug_is_the_option_not_a_word_anywhere_on_the_command_line(tmp_path):
    """`-p --debug` primes with the text "--debug"; each invocation has its own --debug."""
    missing = str(tmp_path / "none.npz")
    runner = CliRunner()
    r = runner.invoke(main, ["sample", "-m", missing, "-p", "--debug"])
    assert r.exit_code == 1 and r.output.startswith("Error: no model file at ")
    r = runner.invoke(main, ["eval", missing, "t.txt", "--debug"])
    assert isinstance(r.exception, ModelNotFound) and "Error:" not in r.output
    r = runner.invoke(main, ["eval", missing, "t.txt"])
    assert r.exit_code == 1 and r.output.startswith("Error: no model file at ")
