"""`charrnn sample`: streamed text on stdout, flushed as it comes (a closed pipe ends it
quietly: see common._Group); with --check, how much of each sample is copied verbatim from a
corpus (charrnn.copies), on stderr or in the JSON lines."""

from __future__ import annotations

import inspect
import os
import sys
from contextlib import suppress

import click

from ..blas import one_thread
from ..copies import MIN_SPAN, CopyIndex
from ..errors import flag
from ..sampling import Stream
from ..vocab import UNKNOWN_POLICIES, leave_out
from .common import (
    CONTEXT,
    ENCODING,
    apply_unknown_option,
    corpus_note,
    debug_option,
    given_options,
    library_option,
    load_checkpoint,
    main,
    normalised,
    option_range,
    read_text,
)

_STREAM = inspect.signature(Stream).parameters  # the library's defaults of sampling


def _same_file(a, b) -> bool:
    """Whether two open streams write to the same file or pipe."""
    try:
        x, y = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):  # io.StringIO & co have no descriptor
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


class _Out:
    """stdout for streamed text: flushed as it goes. On a terminal, the characters of
    ``chars`` that a terminal would obey rather than show (`data.terminal_form`) are written
    escaped, as ``\\x1b`` / <U+202E>, or as JSON's ``\\u001b`` inside ``json`` lines: a model
    trained on text with terminal escape codes cannot drive the terminal. Files and pipes get
    the exact text."""

    def __init__(self, chars=(), json: bool = False):
        from ..data import terminal_form

        self.stream = sys.stdout
        self.interactive = self.stream.isatty()
        self.shares_stderr = _same_file(self.stream, sys.stderr)  # `2>&1`: one line for both
        self.pending = 0
        self.at_line_start = True
        acting = [c for c in chars if terminal_form(c) != c] if self.interactive else []
        self.table = {ord(c): f"\\u{ord(c):04x}" if json else terminal_form(c)
                      for c in acting}  # all in the BMP: one \u escape each

    def write(self, text: str, flush: bool = False) -> None:
        if self.table:
            text = text.translate(self.table)
        was_at_line_start = self.at_line_start
        if text:  # before the write: a Ctrl-C during it leaves a line break too many at worst
            self.at_line_start = text.endswith("\n")
        try:
            self.stream.write(text)
        except UnicodeEncodeError:  # raised before anything is written
            self.at_line_start = was_at_line_start
            raise
        self.pending += len(text)
        if flush or self.interactive or self.pending >= 256:
            self.stream.flush()
            self.pending = 0

    def end_line(self) -> None:
        """On a terminal, or where stderr goes too, a line break if the text written so far
        ends without one (before an error message)."""
        if (self.interactive or self.shares_stderr) and not self.at_line_start:
            with suppress(OSError, ValueError):
                self.write("\n", flush=True)


@main.command(context_settings=CONTEXT)
@click.option("-m", "--model", "model_path", default="model.npz", show_default=True,
              envvar="CHARRNN_MODEL", show_envvar=True, help="Model file to sample from.")
@click.option("-n", "--length", type=option_range(click.IntRange, 0), default=1000,
              show_default=True, help="Characters to generate (after the prime).")
@library_option("-t", "--temperature", "--temp",
                type=option_range(click.FloatRange, 0, lo_open=True),
                shown=f"{_STREAM['temperature'].default:g}",
                help="Below 1: safer, more repetitive text; above 1: wilder.")
@click.option("--top-k", type=option_range(click.IntRange, 1), default=None,
              help="Draw only from the K likeliest characters.")
@click.option("--top-p", type=option_range(click.FloatRange, 0, 1, lo_open=True), default=None,
              help="Draw only from the likeliest characters holding this much probability.")
@click.option("--greedy", is_flag=True, help="Always take the likeliest character.")
@click.option("-p", "--prime", default="", help="Text the model reads first and continues.")
@click.option("--prime-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              default=None, help="Read the prime from a file (- for stdin).")
@click.option("--encoding", type=ENCODING, default="utf-8", show_default=True,
              help="Text encoding of --prime-file and --check (e.g. latin-1, cp1252).")
@click.option("--no-echo-prime", is_flag=True, help="Do not print the prime before the text.")
@click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error",
              show_default=True, help="Prime characters the model never saw: refuse, or drop.")
@click.option("--seed", type=option_range(click.IntRange, 0), default=None,
              help="Same seed, same text (default: a fresh random seed, shown on a terminal "
                   "and in --json).")
@click.option("--num-samples", type=option_range(click.IntRange, 1, 100_000), default=1,
              show_default=True, help="Independent samples, generated in parallel.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample on stdout.")
@click.option("--check", "check_paths", multiple=True, metavar="CORPUS",
              help="Report how much of each sample appears verbatim in this corpus (a file, a "
                   "folder, - for stdin; repeatable): on stderr, or in --json.")
@library_option("--min-span", type=option_range(click.IntRange, 1), metavar="N",
                shown=str(MIN_SPAN), help="With --check: a character counts as copied inside "
                                          "a verbatim span of at least N characters.")
@debug_option
def sample(model_path, length, temperature, top_k, top_p, greedy, prime, prime_file,
           encoding, no_echo_prime, unknown, seed, num_samples, as_json, check_paths,
           min_span):
    """Generate text from a trained model, streamed to stdout as it is produced.

    With --check CORPUS it then reports, for each sample (the generated text, not the prime),
    its longest span found verbatim in CORPUS and the share of it inside verbatim spans of at
    least --min-span characters.
    """
    import json
    from collections import Counter

    if min_span is not None and not check_paths:
        raise click.UsageError("--min-span sets the copy check's span: it needs --check")
    if prime_file == "-" and "-" in check_paths:
        raise click.UsageError("--prime-file and --check cannot both read standard input")
    drawing = given_options(click.get_current_context(), ["temperature", "top_k", "top_p"])
    if greedy:
        clash = [flag(name) for name in drawing]
        if clash:
            raise click.UsageError(f"--greedy always takes the likeliest character; "
                                   f"it cannot be combined with {', '.join(clash)}")
        if num_samples > 1:
            click.echo("note: with --greedy every sample is the same text", err=True)
    if prime_file is not None:
        if prime:
            raise click.UsageError("give --prime or --prime-file, not both")
        prime = read_text([prime_file], encoding, "prime").text
    else:
        prime = normalised(prime)
    ck = load_checkpoint(model_path)
    model = ck.model
    checker = _Checker(ck.corpus, model_path, check_paths, encoding, min_span) \
        if check_paths else None
    if seed is None:  # drawn here, so it can be shown and the text repeated
        import secrets

        seed = secrets.randbelow(2**32)
        if sys.stderr.isatty():
            click.echo(f"seed {seed} (--seed {seed} gives this text again)", err=True)
    missing = apply_unknown_option(model.vocab, Counter(prime), unknown, "prime")
    with one_thread():  # one character at a time
        stream = model.stream(length, prime=prime, greedy=greedy, seed=seed,
                              num_samples=num_samples, skip_unknown=True, **drawing)
        kept = leave_out(prime, missing)
        head = "" if no_echo_prime else kept
        out = _Out(model.vocab.chars, json=as_json)
        try:
            if as_json:
                texts = stream.texts()
                checks = checker.records(texts) if checker else [None] * len(texts)
                for i, (text, check) in enumerate(zip(texts, checks, strict=True)):
                    record = {"sample": i + 1, "prime": kept, "text": text, "seed": seed}
                    out.write(json.dumps(record if check is None else {**record, "copies": check},
                                         ensure_ascii=False) + "\n")
            elif num_samples == 1:
                out.write(head)
                generated = []
                for ch in stream:
                    out.write(ch)
                    generated.append(ch)
                texts = ["".join(generated)]
                out.write("\n", flush=True)
            else:
                texts = stream.texts()
                for i, text in enumerate(texts):
                    out.write(f"{'' if i == 0 else chr(10)}=== sample {i + 1} of {num_samples} "
                              f"===\n{head}{text}\n")
            out.write("", flush=True)
        except BaseException:
            out.end_line()  # so that a message (Ctrl-C, an error) starts on its own line
            raise
    if checker is not None and not as_json:
        checker.show(texts)


class _Checker:
    """The copy check of --check: the corpus read as every text argument is (before any
    sampling, so a bad corpus costs nothing), with a note when it is not the model's own (it
    is checked anyway); then the samples checked in one reading of it (copies.CopyIndex)."""

    def __init__(self, record, model_path: str, paths, encoding: str, min_span: int | None):
        self.corpus = read_text(paths, encoding, "corpus")
        for note in self.corpus.notes():
            click.echo(f"note: {note}", err=True)
        mismatch = corpus_note(record, self.corpus, model_path, "--check",
                               "checking against it anyway")
        if mismatch:
            click.echo(f"note: {mismatch}", err=True)
        self.matches = None if not record else mismatch is None  # None: no record to match
        self.min_span = {} if min_span is None else {"min_span": min_span}

    def reports(self, texts: list[str]) -> list:
        return CopyIndex.from_ids(self.corpus.ids, self.corpus.vocab.chars,
                                  **self.min_span).check_all(texts)

    def records(self, texts: list[str]) -> list[dict]:
        """Each sample's report for --json: copies.CopyReport.to_dict(), the corpus's name,
        and whether it is the model's (null: the model file records no corpus)."""
        return [{"corpus": self.corpus.name, "corpus_matches_model": self.matches,
                 **report.to_dict()} for report in self.reports(texts)]

    def show(self, texts: list[str]) -> None:
        """The reports on stderr, after the text."""
        from ..display import copy_lines

        for line in copy_lines(self.reports(texts), self.corpus.name):
            click.echo(line, err=True)
