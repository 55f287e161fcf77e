"""The command line: parse options into configs, call one library function, render the result."""

from __future__ import annotations

import re
import shlex
import signal
import sys
from contextlib import contextmanager

import click
from click.core import ParameterSource

from . import __version__
from .config import CELLS, LR_SCHEDULES, OPTIMIZERS, ModelConfig, TrainConfig
from .errors import CharRNNError, DataError, VocabularyError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_MD, _TD = ModelConfig(), TrainConfig()


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


def _range(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    return kind(min=lo, max=hi, min_open=lo_open, max_open=hi_open)


def _given(ctx: click.Context, names) -> dict:
    """The options the user set explicitly (command line or environment), by field name."""
    return {n: ctx.params[n] for n in names
            if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)}


@contextmanager
def _errors(debug: bool):
    """Turn charrnn's errors into a one-line `Error: ...` and the error's exit code."""
    try:
        yield
    except CharRNNError as e:
        if debug:
            raise
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        click.echo("Error: interrupted; files are as they were at the last save", err=True)
        sys.exit(130)


@click.group(context_settings=CONTEXT)
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


# ----------------------------------------------------------------------------- train

@main.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, metavar="CORPUS...")
@click.option("-o", "--output", default="model.npz", show_default=True,
              help="Model file to write (atomically, at every evaluation).")
@click.option("--cell", type=click.Choice(CELLS), default=_MD.cell, show_default=True,
              help="Recurrent cell.")
@click.option("--hidden-size", type=_range(click.IntRange, 1, 16384), default=_MD.hidden_size,
              show_default=True, help="Units per layer.")
@click.option("--num-layers", type=_range(click.IntRange, 1, 64), default=_MD.num_layers,
              show_default=True, help="Stacked recurrent layers.")
@click.option("--dropout", type=_range(click.FloatRange, 0, 1, hi_open=True),
              default=_MD.dropout, show_default=True,
              help="Dropout rate between layers and before the output (training only).")
@click.option("--seq-len", type=_range(click.IntRange, 1), default=_TD.seq_len,
              show_default=True, help="Characters per backpropagation-through-time window.")
@click.option("--batch-size", type=_range(click.IntRange, 1), default=_TD.batch_size,
              show_default=True, help="Parallel streams per step.")
@click.option("--lr", type=_range(click.FloatRange, 0, lo_open=True), default=_TD.lr,
              show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_TD.optimizer,
              show_default=True, help="Optimizer.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=_TD.lr_schedule,
              show_default=True,
              help="constant (with --lr-decay steps), or cosine: decay to 5% of --lr by the end "
                   "of the run (--max-steps, --epochs or --max-time).")
@click.option("--lr-decay", type=_range(click.FloatRange, 0, 1, lo_open=True),
              default=_TD.lr_decay, show_default=True,
              help="Multiply the learning rate by this every --lr-decay-every steps.")
@click.option("--lr-decay-every", type=_range(click.IntRange, 0), default=_TD.lr_decay_every,
              show_default=True, help="Steps between learning-rate decays (0: never).")
@click.option("--grad-clip", type=_range(click.FloatRange, 0), default=_TD.grad_clip,
              show_default=True, help="Clip the global gradient norm to this (0: off).")
@click.option("--epochs", type=_range(click.FloatRange, 0), default=_TD.epochs,
              show_default=True, help="Passes over the training text (0: no limit).")
@click.option("--max-steps", type=_range(click.IntRange, 0), default=_TD.max_steps,
              show_default=True, help="Total steps of the run, resumes included (0: no limit).")
@click.option("--max-time", type=Duration(), default=_TD.max_time,
              help="Stop after this much training time in this invocation: 90s, 10m, 1h.")
@click.option("--patience", type=_range(click.IntRange, 0), default=_TD.patience,
              show_default=True,
              help="Stop after this many evaluations without a better validation loss (0: off).")
@click.option("--val-frac", type=_range(click.FloatRange, 0, 1, hi_open=True),
              default=_TD.val_frac, show_default=True,
              help="Fraction of the text (its end) held out for validation.")
@click.option("--eval-every", type=_range(click.IntRange, 1), default=_TD.eval_every,
              show_default=True, help="Steps between validation + checkpoint.")
@click.option("--sample-every", type=_range(click.IntRange, 0), default=_TD.sample_every,
              show_default=True, help="Steps between progress samples (0: none).")
@click.option("--sample-length", type=_range(click.IntRange, 1), default=_TD.sample_length,
              show_default=True, help="Characters per progress sample.")
@click.option("--seed", type=_range(click.IntRange, 0, 2**63 - 1), default=_TD.seed,
              show_default=True, help="Seed for initialisation, dropout and samples.")
@click.option("--resume", is_flag=True, help="Continue training the model in --output.")
@click.option("--force", is_flag=True, help="Overwrite an existing --output.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Text encoding of the corpus files (e.g. latin-1, cp1252).")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def train(ctx, corpus, output, resume, force, encoding, no_color, debug, **options):
    """Train a model on CORPUS (files, a directory of text files, or - for stdin).

    Shows live progress on stderr and writes the model to --output at every evaluation, at
    the end, and on Ctrl-C (then resume with --resume). Training stops after --epochs passes,
    or when the validation loss has not improved for --patience evaluations; --max-steps and
    --max-time stop it earlier. The saved weights are those with the best validation loss.
    """
    from . import display, training
    from .data import read_corpus

    # a new model takes every option; a resumed one only those set explicitly (the rest come
    # from the model file)
    pick = (lambda names: _given(ctx, names)) if resume else \
        (lambda names: {n: ctx.params[n] for n in names})
    model_options = pick(("cell", "hidden_size", "num_layers", "dropout"))
    train_options = pick([f for f in TrainConfig.__dataclass_fields__ if f in ctx.params])
    console = display.make_console(no_color=no_color)
    stop = _StopFlag(console)
    with _errors(debug):
        text = read_corpus(corpus, encoding=encoding, stdin=sys.stdin.buffer)
        run = training.train(text, output, model_options=model_options,
                             train_options=train_options, resume=resume, force=force,
                             should_stop=stop)
        with stop.installed(), _reader_may_leave(), display.TrainingView(console) as view:
            last = None
            for report in run:
                last = report
                with _reader_may_leave():
                    view.update(report)
        hint = f"charrnn sample -m {shlex.quote(output)}" if output != "model.npz" else \
            "charrnn sample"
        if last.info.get("stopped") == "interrupted":
            again = " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
            hint = f"resume with: charrnn {again} --resume"
        with _reader_may_leave():
            console.print(display.training_summary(last, hint))
        if last.info.get("stopped") == "interrupted":
            sys.exit(130)


@contextmanager
def _reader_may_leave():
    """Progress on stderr is a courtesy: if its reader goes away (`2>&1 | head`), training
    goes on silently and still saves, instead of dying on a broken pipe."""
    try:
        yield
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


# ----------------------------------------------------------------------------- sample

def _load_checkpoint(path: str, resume: bool = False):
    from .checkpoint import ModelNotFound, load

    try:
        return load(path, resume=resume)
    except ModelNotFound:
        raise ModelNotFound(f"no model file at {path}; train one first, e.g. "
                            "`charrnn train corpora/sonnets.txt`") from None


def _load_model(path: str):
    return _load_checkpoint(path).model


class _Out:
    """stdout for streamed text: flushed as it goes; a closed pipe ends the command quietly."""

    def __init__(self):
        self.stream = sys.stdout
        self.interactive = self.stream.isatty()
        self.pending = 0

    def write(self, text: str, flush: bool = False) -> None:
        self.stream.write(text)
        self.pending += len(text)
        if flush or self.interactive or self.pending >= 256:
            self.stream.flush()
            self.pending = 0


@contextmanager
def _closed_pipe_is_fine():
    try:
        yield
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly; point stdout at /dev/null so the
        # interpreter's final flush does not complain either
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


@main.command(context_settings=CONTEXT)
@click.option("-m", "--model", "model_path", default="model.npz", show_default=True,
              envvar="CHARRNN_MODEL", show_envvar=True, help="Model file to sample from.")
@click.option("-n", "--length", type=_range(click.IntRange, 0), default=1000, show_default=True,
              help="Characters to generate (after the prime).")
@click.option("-t", "--temperature", "--temp", type=_range(click.FloatRange, 0, lo_open=True),
              default=1.0, show_default=True,
              help="Below 1: safer, more repetitive text; above 1: wilder.")
@click.option("--top-k", type=_range(click.IntRange, 1), default=None,
              help="Draw only from the K likeliest characters.")
@click.option("--top-p", type=_range(click.FloatRange, 0, 1, lo_open=True), default=None,
              help="Draw only from the likeliest characters holding this much probability.")
@click.option("--greedy", is_flag=True, help="Always take the likeliest character.")
@click.option("-p", "--prime", default="", help="Text the model reads first and continues.")
@click.option("--prime-file", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the prime from a file.")
@click.option("--no-echo-prime", is_flag=True, help="Do not print the prime before the text.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="Prime characters the model never saw: refuse, or drop.")
@click.option("--seed", type=_range(click.IntRange, 0), default=None,
              help="Same seed, same text (default: a fresh random seed).")
@click.option("--num-samples", type=_range(click.IntRange, 1, 100_000), default=1,
              show_default=True, help="Independent samples, generated in parallel.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def sample(model_path, length, temperature, top_k, top_p, greedy, prime, prime_file,
           no_echo_prime, unknown, seed, num_samples, as_json, debug):
    """Generate text from a trained model, streamed to stdout as it is produced."""
    import json

    with _errors(debug), _closed_pipe_is_fine():
        if greedy:
            source = click.get_current_context().get_parameter_source("temperature")
            clash = [name for name, given in (
                ("--temperature", source is not click.core.ParameterSource.DEFAULT),
                ("--top-k", top_k is not None), ("--top-p", top_p is not None)) if given]
            if clash:
                raise click.UsageError(f"--greedy always takes the likeliest character; "
                                       f"it cannot be combined with {', '.join(clash)}")
        if prime_file is not None:
            if prime:
                raise click.UsageError("give --prime or --prime-file, not both")
            try:
                prime = prime_file.read()
            except UnicodeDecodeError as e:
                raise DataError(f"{prime_file.name}: byte at offset {e.start} is not valid "
                                "utf-8; convert the prime file to UTF-8") from None
        # the same normalisation as a corpus: no byte-order mark, \r\n as \n
        prime = prime.removeprefix("\ufeff").replace("\r\n", "\n")
        model = _load_model(model_path)
        try:
            stream = model.stream(length, prime=prime, temperature=temperature, top_k=top_k,
                                  top_p=top_p, greedy=greedy, seed=seed,
                                  num_samples=num_samples, skip_unknown=unknown == "skip")
        except VocabularyError as e:
            raise VocabularyError(f"the prime has {e}; pass --unknown skip to drop them") \
                from None
        if stream.dropped:
            shown = ", ".join(_escaped(c) for c in stream.dropped)
            click.echo(f"note: dropped prime characters the model does not know: {shown}",
                       err=True)
        dropped = set(stream.dropped)
        kept = "".join(c for c in prime if c not in dropped) if dropped else prime
        head = "" if no_echo_prime else kept
        out = _Out()
        if as_json:
            for i, text in enumerate(stream.texts()):
                out.write(json.dumps({"sample": i + 1, "prime": kept, "text": text},
                                     ensure_ascii=False) + "\n")
        elif num_samples == 1:
            out.write(head)
            for ch in stream:
                out.write(ch)
            out.write("\n", flush=True)
        else:
            for i, text in enumerate(stream.texts()):
                out.write(f"{'' if i == 0 else chr(10)}=== sample {i + 1} of {num_samples} "
                          f"===\n{head}{text}\n")
        out.write("", flush=True)


# ----------------------------------------------------------------------------- inspect

TEXT_VIEW_CHARS = 2000  # default --max-chars: characters of --text/--prime shown


def _read_text(paths, encoding: str, what: str):
    """Text files (or - for stdin) as one data.Corpus, with errors that name it as `what`."""
    from pathlib import Path

    from .data import CorpusNotFound, read_corpus
    from .errors import DataError

    for path in paths:
        if path != "-" and not Path(path).exists():
            raise CorpusNotFound(f"{what} file not found: {click.format_filename(path)}")
    try:
        return read_corpus(list(paths), encoding=encoding,
                           stdin=sys.stdin.buffer)
    except DataError as e:
        if not str(e).startswith("corpus is empty"):
            raise
        raise DataError(f"the {what} is empty: {str(e).split(': ', 1)[-1]}") from None


def _note_left_out(missing) -> None:
    click.echo(f"note: left out {sum(u['count'] for u in missing):,} character(s) the model "
               "never saw: " + ", ".join(_escaped(u["char"]) for u in missing), err=True)


def _unknown_message(unknown, what: str) -> str:
    def times(n: int) -> str:
        return "once" if n == 1 else f"{n:,} times"

    shown = ", ".join(f"{u['escaped']} (" + ("" if u["escaped"].startswith("U+") else
                                            f"U+{u['codepoint']:04X}, ") + f"{times(u['count'])})"
                      for u in unknown[:20])
    more = f", and {len(unknown) - 20} more" if len(unknown) > 20 else ""
    n = sum(u["count"] for u in unknown)
    return (f"the {what} has {n:,} character(s) the model never saw, {len(unknown)} distinct: "
            f"{shown}{more}; pass --unknown skip to leave them out")


def _encode(model, text: str, unknown: str, what: str):
    """(kept text, ids) of a str over the model's vocabulary; unknowns refused or dropped."""
    from collections import Counter

    from .diagnostics import unknown_chars

    missing = unknown_chars(model.vocab, Counter(text))
    if missing and unknown == "error":
        raise VocabularyError(_unknown_message(missing, what))
    if missing:
        drop = {u["char"] for u in missing}
        text = "".join(c for c in text if c not in drop)
        _note_left_out(missing)
    return text, model.vocab.encode(text)


@main.command(context_settings=CONTEXT,
              short_help="What is inside a model: parameters, history, diagnostics, text.")
@click.argument("model_path", default="model.npz", envvar="CHARRNN_MODEL", metavar="[MODEL]",
                required=False)
@click.option("--text", "text_file", default=None, metavar="FILE",
              help="Show this text (a file, or - for stdin) through the model's eyes.")
@click.option("-p", "--prime", default=None, metavar="TEXT",
              help="Show this text through the model's eyes.")
@click.option("--neuron", type=_range(click.IntRange, 0), multiple=True, metavar="K",
              help="Color the text by hidden unit K's activation (repeatable).")
@click.option("--layer", type=_range(click.IntRange, 0), default=None, metavar="L",
              help="Layer of --neuron/--top-neurons, from 0 (default: the last).")
@click.option("--top-neurons", type=_range(click.IntRange, 0, 1000), default=0, metavar="N",
              help="Color the text by the N units whose activation varies most on it.")
@click.option("--max-chars", type=_range(click.IntRange, 2, 100_000), default=TEXT_VIEW_CHARS,
              metavar="N", show_default=True,
              help="Characters of the text to read and show (at most 100,000).")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="Text characters the model never saw: refuse, or drop.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of --text.")
@click.option("--json", "as_json", is_flag=True,
              help="Everything as one JSON document on stdout (no colored text).")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def inspect(model_path, text_file, prime, neuron, layer, top_neurons, max_chars, unknown,
            encoding, as_json, no_color, debug):
    """Show what is inside a model file: architecture, parameters, training history,
    diagnostics, vocabulary, and (with --text or --prime) text colored by the model's
    surprise and by hidden units' activations.

    MODEL defaults to model.npz (or $CHARRNN_MODEL).
    """
    import json
    import os

    from . import diagnostics, display
    from .errors import DataError

    if text_file is not None and prime is not None:
        raise click.UsageError("give --text or --prime, not both")
    if (neuron or top_neurons or layer is not None) and text_file is None and prime is None:
        raise click.UsageError("--neuron, --top-neurons and --layer need --text or --prime")
    with _errors(debug):
        ck = _load_checkpoint(model_path, resume=True)
        cfg = ck.model.config
        if layer is not None and layer >= cfg.num_layers:
            raise click.BadParameter(f"the model has layers 0 to {cfg.num_layers - 1}",
                                     param_hint="--layer")
        bad = [k for k in neuron if k >= cfg.hidden_size]
        if bad:
            raise click.BadParameter(f"unit {bad[0]} does not exist; layers have units 0 to "
                                     f"{cfg.hidden_size - 1}", param_hint="--neuron")
        report = diagnostics.model_report(ck, os.path.getsize(model_path))
        text_rep = None
        if text_file is not None or prime is not None:
            what = "prime" if prime is not None else "text"
            text = prime if prime is not None else _read_text([text_file], encoding, what).text
            if len(text) > max_chars:
                click.echo(f"note: showing the first {max_chars:,} of {len(text):,} characters "
                           "(--max-chars)", err=True)
                text = text[:max_chars]
            given = len(text)
            text, ids = _encode(ck.model, text, unknown, what)
            if not len(ids):
                raise DataError(f"the {what} is empty" if not given else
                                f"the {what} has no characters the model knows")
            text_rep = diagnostics.text_report(ck.model, text, ids, layer=layer,
                                               neurons=neuron, top_neurons=top_neurons)
        if as_json:
            doc = dict(report, text=text_rep)
            click.echo(json.dumps(diagnostics.plain(doc), indent=2, allow_nan=False))
            return
        console = display.make_console(stderr=False, no_color=no_color)
        display.render_inspect(console, report)
        if text_rep is not None:
            color = console.color_system is not None and not console.no_color
            for item in display.text_views(text_rep, min(console.width, 120), color):
                console.print(item)


# ----------------------------------------------------------------------------- eval

EVAL_PROGRESS_CHARS = 20_000  # texts at least this long get a progress bar (on a terminal)


@main.command("eval", context_settings=CONTEXT,
              short_help="Loss, perplexity and bits/char of a model on held-out text.")
@click.argument("model_path", metavar="MODEL")
@click.argument("texts", nargs=-1, required=True, metavar="TEXT...")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="Characters the model never saw: refuse, or leave out.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Text encoding of the files (e.g. latin-1, cp1252).")
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object.")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def evaluate(model_path, texts, unknown, encoding, as_json, no_color, debug):
    """Loss, perplexity and bits per character of MODEL on held-out TEXT (files, a directory,
    or - for stdin).

    Scores every character after the first exactly as training scores its validation text,
    so the validation tail of a corpus gives exactly the validation loss training reported.
    """
    import json

    from . import diagnostics, display, training
    from .errors import DataError

    with _errors(debug):
        model = _load_model(model_path)
        corpus = _read_text(texts, encoding, "text")
        missing = diagnostics.unknown_chars(model.vocab, diagnostics.char_counts(corpus))
        if missing and unknown == "error":
            raise VocabularyError(_unknown_message(missing, "text"))
        ids = corpus.encode(model.vocab, skip_unknown=True)
        if missing:
            _note_left_out(missing)
        if len(ids) < 2:
            raise DataError(f"the text has {len(ids)} character(s)"
                            + (" the model knows" if missing else "")
                            + "; at least 2 are needed to predict one")
        console = display.make_console(no_color=no_color)
        big = len(ids) >= EVAL_PROGRESS_CHARS
        with display.eval_progress(console if big else None, len(ids) - 1) as on_progress:
            loss = training.evaluate(model, ids, on_progress)  # exactly as training scores
        result = {"model": model_path, "text": corpus.name, "files": list(corpus.files),
                  "characters": int(len(ids)), "predictions": int(len(ids) - 1),
                  **diagnostics.figures(loss),
                  "unknown": {"policy": unknown, "count": sum(u["count"] for u in missing),
                              "chars": missing}}
        if as_json:
            click.echo(json.dumps(diagnostics.plain(result), ensure_ascii=True))
        else:
            click.echo(display.eval_lines(result))


def _escaped(ch: str) -> str:
    from .data import escape_char

    return f"{escape_char(ch)} (U+{ord(ch):04X})"


class _StopFlag:
    """Ctrl-C once: finish the step, save, exit 130. Twice: stop at once (the file stays safe)."""

    def __init__(self, console):
        self.console = console
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        with _reader_may_leave():
            self.console.print("[yellow]stopping after this step and saving "
                               "(Ctrl-C again to quit without saving)[/]")

    @contextmanager
    def installed(self):
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. embedded): no handler
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":  # pragma: no cover
    main()

