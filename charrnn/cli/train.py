"""`charrnn train`: options -> configs, `training.train`, the live view, Ctrl-C or SIGTERM ->
save -> 130 or 143."""

from __future__ import annotations

import re
import shlex
import signal
import sys
from contextlib import contextmanager

import click

from ..choice import (
    BASE,
    BASE_TRAINED_CHARS,
    BIG_BUDGET,
    BRISK_LR,
    CELL,
    DEEP_BUDGET,
    DROPOUT_FROM,
    MAX_CHARS,
    MAX_DROPOUT,
    MAX_PASSES,
    MIN_BASE_COVERAGE,
    MODELS,
    UNLIKE_BASE_LOSS,
)
from ..config import (
    CELLS,
    FINETUNE_DEFAULTS,
    LR_SCHEDULES,
    MAX_BATCH_SIZE,
    MAX_HIDDEN_SIZE,
    MAX_LAYERS,
    MAX_SEED,
    MAX_SEQ_LEN,
    MAX_THREADS,
    OPTIMIZERS,
    TrainConfig,
)
from ..errors import flag
from .common import (
    CONTEXT,
    ENCODING,
    Duration,
    debug_option,
    given_options,
    interrupt_message,
    library_option,
    main,
    option_range,
    silence,
)

_TD = TrainConfig()
# the widest, wide, deep and base models
(_, WIDE, _), (_, _, DEEP), (_, NARROW, LAYERS) = MODELS


_BRISK_LR = f"{BRISK_LR:g} on a text the base scores over {UNLIKE_BASE_LOSS:g} nats a character"


def _millions(chars: int) -> str:
    return f"{round(chars / 1_000_000)}M"


def _default(name: str) -> str:
    """A TrainConfig field's default as --help shows it, and fine-tuning's where it differs."""
    def text(value) -> str:
        return value if isinstance(value, str) else f"{value:g}"

    shown = text(getattr(_TD, name))
    if name in FINETUNE_DEFAULTS:
        shown += f", {text(FINETUNE_DEFAULTS[name])} when fine-tuning"
    if name == "lr":
        shown += f" ({_BRISK_LR})"
    return shown


class _Threads(click.ParamType):
    """A BLAS thread count from 1 to MAX_THREADS, or auto."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return text
        if re.fullmatch(r"[0-9]{1,6}", text) and 1 <= int(text) <= MAX_THREADS:
            return int(text)
        self.fail(f"{value!r} is not a thread count from 1 to {MAX_THREADS} or auto", param, ctx)


@main.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, metavar="CORPUS...")
@click.option("-o", "--output", default="model.npz", show_default=True,
              help="Model file to write (atomically, at every evaluation).")
@library_option("--cell", type=click.Choice(CELLS), shown=f"chosen: {CELL}",
                help="Recurrent cell.")
@library_option("--hidden-size", type=option_range(click.IntRange, 1, MAX_HIDDEN_SIZE),
                shown=f"chosen: {NARROW}, or {WIDE} where the run can train on "
                      f"{_millions(BIG_BUDGET)} characters or more at the {NARROW}'s speed",
                help="Units per layer.")
@library_option("--num-layers", type=option_range(click.IntRange, 1, MAX_LAYERS),
                shown=f"chosen: {LAYERS}, or {DEEP} where the run can train on "
                      f"{_millions(DEEP_BUDGET)} to {_millions(BIG_BUDGET)} characters",
                help="Stacked recurrent layers.")
@library_option("--dropout", type=option_range(click.FloatRange, 0, 1, hi_open=True),
                shown=f"chosen: {MAX_DROPOUT:g} x the passes the run allows / {MAX_PASSES:g}, "
                      f"at most {MAX_DROPOUT:g}; 0 below {DROPOUT_FROM} passes",
                help="Dropout rate between layers and before the output (training only).")
@library_option("--seq-len", type=option_range(click.IntRange, 1, MAX_SEQ_LEN),
                shown=_default("seq_len"),
                help="Characters per backpropagation-through-time window.")
@library_option("--batch-size", type=option_range(click.IntRange, 1, MAX_BATCH_SIZE),
                shown=_default("batch_size"), help="Parallel streams per step.")
@library_option("--lr", type=option_range(click.FloatRange, 0, lo_open=True),
                shown=_default("lr"), help="Learning rate.")
@library_option("--optimizer", type=click.Choice(OPTIMIZERS), shown=_default("optimizer"),
                help="Optimizer.")
@library_option("--lr-schedule", type=click.Choice(LR_SCHEDULES), shown=_default("lr_schedule"),
                help="constant (with --lr-decay steps), or cosine: decay to 5% of --lr by the "
                     "end of the run (--max-steps, --epochs or --max-time).")
@library_option("--lr-decay", type=option_range(click.FloatRange, 0, 1, lo_open=True),
                shown=_default("lr_decay"),
                help="Multiply the learning rate by this every --lr-decay-every steps.")
@library_option("--lr-decay-every", type=option_range(click.IntRange, 0),
                shown=_default("lr_decay_every"),
                help="Steps between learning-rate decays (0: never).")
@library_option("--grad-clip", type=option_range(click.FloatRange, 0),
                shown=_default("grad_clip"), help="Clip the global gradient norm to this (0: off).")
@library_option("--weight-decay", type=option_range(click.FloatRange, 0),
                shown=_default("weight_decay"),
                help="Shrink the weight matrices by lr x this each step (decoupled, AdamW).")
@library_option("--epochs", type=option_range(click.FloatRange, 0),
                shown=f"chosen: {MAX_PASSES:g} (at most {_millions(MAX_CHARS)} characters "
                      f"without --max-time or --max-steps), {FINETUNE_DEFAULTS['epochs']:g} when "
                      "fine-tuning",
                help="Passes over the training text (0: no limit).")
@library_option("--max-steps", type=option_range(click.IntRange, 0), shown=_default("max_steps"),
                help="Total steps of the run, resumes included (0: no limit).")
@library_option("--max-time", type=Duration(), shown=_default("max_time"),
                help="Stop after this much training time in this invocation: 90s, 10m, 1h (0: no "
                     "limit).")
@library_option("--patience", type=option_range(click.IntRange, 0), shown=_default("patience"),
                help="Stop after this many evaluations without a better validation loss "
                     "(0: off).")
@library_option("--val-frac", type=option_range(click.FloatRange, 0, 1, hi_open=True),
                shown=_default("val_frac"),
                help="Fraction of the text (its end) held out for validation.")
@library_option("--eval-every", type=option_range(click.IntRange, 0), shown=_default("eval_every"),
                help="Steps between validation + checkpoint (0: at least 60, more where the "
                     "validation text is long, so that validation costs at most ~4% of the "
                     "time).")
@library_option("--sample-every", type=option_range(click.IntRange, 0),
                shown=_default("sample_every"), help="Steps between progress samples (0: none).")
@library_option("--sample-length", type=option_range(click.IntRange, 1),
                shown=_default("sample_length"), help="Characters per progress sample.")
@library_option("--seed", type=option_range(click.IntRange, 0, MAX_SEED), shown=_default("seed"),
                help="Seed for initialisation, dropout and samples.")
@click.option("--resume", is_flag=True, help="Continue training the model in --output.")
@click.option("--init-from", default=None, metavar="MODEL",
              help="Fine-tune: start from this trained model's best weights, its shape and its "
                   "vocabulary, grown by the corpus's new characters. Unless given, "
                   + ", ".join(f"{flag(k)} is {v:g}" for k, v in FINETUNE_DEFAULTS.items())
                   + f" ({flag('lr')} {_BRISK_LR}).")
@click.option("--from-scratch", is_flag=True,
              help=f"Train a new model even where charrnn would fine-tune the built-in "
                   f"{BASE} base, which it does by default for a text at least "
                   f"{MIN_BASE_COVERAGE:.0%} in the base's characters, in a run that can "
                   f"train on fewer than {_millions(BASE_TRAINED_CHARS)} characters.")
@click.option("--force", is_flag=True, help="Overwrite an existing --output.")
@click.option("--encoding", type=ENCODING, default="utf-8", show_default=True,
              help="Text encoding of the corpus files (e.g. latin-1, cp1252).")
@click.option("--threads", type=_Threads(), default=None, metavar="N|auto",
              help="BLAS threads for the matrix products. Default: follow the machine's load "
                   "(NumPy's count, or one while other programs keep the cores busy), where "
                   "that cannot change the model. A number pins the count; auto follows the "
                   "load even where the model then depends on it in its last bits.")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@debug_option
@click.pass_context
def train(ctx, corpus, output, resume, force, init_from, from_scratch, encoding, threads,
          no_color, **options):
    """Train a model on CORPUS (files, a directory of text files, or - for stdin).

    Shows live progress on stderr and writes the model to --output at every evaluation, at
    the end, and on Ctrl-C or SIGTERM (then resume with --resume). Training stops after
    --epochs passes, or when the validation loss has not improved for --patience evaluations;
    --max-steps and --max-time stop it earlier. The saved weights are those with the best
    validation loss. A new model's cell, width, layers, dropout and --epochs, unless given, are
    chosen for the text and the time (--max-time), at this machine's speed, timed at the start
    (at most 2% of the time); the start line says what was chosen. A text at least half in
    the characters of the built-in english base, in a run shorter than the base's training,
    fine-tunes the base instead, unless --from-scratch or the network's shape is given.
    """
    from pathlib import Path

    from .. import display, training
    from ..data import corpus_files, read_corpus
    from ..output_guard import check_output

    # only the options set explicitly: the rest are chosen for a new model (charrnn.choice),
    # come from the model file of a resumed one, or are the fine-tuning defaults
    model_options = given_options(ctx, ("cell", "hidden_size", "num_layers", "dropout"))
    train_options = given_options(ctx, [f for f in TrainConfig.__dataclass_fields__
                                        if f in ctx.params])
    console = display.make_console(no_color=no_color)
    stop = _StopFlag(console)
    if from_scratch and (init_from is not None or resume):
        other = f"{flag('init_from')} fine-tunes one" if init_from is not None else \
            f"{flag('resume')} continues the one in {flag('output')}"
        raise click.UsageError(f"{flag('from_scratch')} trains a new model and {other}; give "
                               "one of them")
    with interrupt_message("interrupted; files are as they were at the last save"):
        # a base or an output that cannot serve is refused before the corpus is read
        base = None if init_from is None else training.finetune_base(
            init_from, model_options, resume=resume, output=output)
        if not resume and base is None and training.considers_base(model_options, from_scratch):
            training.builtin_base()  # the default base too, if it is broken
        check_output(Path(output), resume=resume, force=force, sources=corpus_files(corpus))
        text = read_corpus(corpus, encoding=encoding, stdin=sys.stdin.buffer)
        run = training.train(text, output, model_options=model_options,
                             train_options=train_options, resume=resume, force=force,
                             should_stop=stop, threads=threads, init_from=base,
                             from_scratch=from_scratch)
        with stop.installed(), _reader_may_leave(), display.TrainingView(console) as view:
            last = None
            for report in run:
                last = report
                with _reader_may_leave():
                    view.update(report)
        hint = f"next: charrnn sample -m {shlex.quote(output)}" if output != "model.npz" else \
            "next: charrnn sample"
        if last.info.get("stopped") == "interrupted":
            hint = f"resume with: charrnn {_resume_command(sys.argv[1:])}"
        with _reader_may_leave():
            console.print(display.training_summary(last))
            # one line however long, so that it can be copied (the terminal wraps it)
            console.print(hint, soft_wrap=True, markup=False, highlight=False)
        if last.info.get("stopped") == "interrupted":
            sys.exit(stop.exit_code)


def _resume_command(args: list[str]) -> str:
    """The arguments of the command that resumes this one: without --force, --init-from and
    --from-scratch (the file now holds the run), with --resume."""
    kept, skip = [], False
    for a in args:
        if skip or a in ("--resume", "--force", "--from-scratch") \
                or a.startswith("--init-from="):
            skip = False
            continue
        if a == "--init-from":
            skip = True  # and its value
            continue
        kept.append(a)
    return " ".join(shlex.quote(a) for a in [*kept, "--resume"])


@contextmanager
def _reader_may_leave():
    """Progress on stderr is a courtesy: if its reader goes away (`2>&1 | head`), training
    goes on silently and still saves, instead of dying on a broken pipe."""
    try:
        yield
    except BrokenPipeError:
        silence(sys.stderr)


class _StopFlag:
    """Ctrl-C (or SIGTERM, as `kill` and `timeout` send) once: finish the step, save, exit
    128 + the signal's number (130, 143). Twice: stop at once (the file stays safe)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, console):
        self.console = console
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum, frame):
        if self.signum is not None:
            quit_now = KeyboardInterrupt()
            quit_now.exit_code = 128 + signum
            raise quit_now
        self.signum = signum
        again = "Ctrl-C" if signum == signal.SIGINT else "another SIGTERM"
        with _reader_may_leave():
            self.console.print(f"[yellow]stopping after this step and saving ({again} to quit "
                               "without saving)[/]")

    @contextmanager
    def installed(self):
        try:
            previous = [signal.signal(sig, self._handle) for sig in self.SIGNALS]
        except ValueError:  # not the main thread (e.g. embedded): no handler
            yield
            return
        try:
            yield
        finally:
            for sig, handler in zip(self.SIGNALS, previous, strict=True):
                signal.signal(sig, handler)
