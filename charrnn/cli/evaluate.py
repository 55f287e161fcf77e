"""`charrnn eval`: loss, perplexity and bits per character of a model on held-out text; with
--corpus, what simple models of the model's training text score on it (charrnn.references)."""

from __future__ import annotations

import click

from ..blas import plan_threads
from ..errors import DataError
from ..vocab import UNKNOWN_POLICIES
from .common import (
    CONTEXT,
    ENCODING,
    apply_unknown_option,
    corpus_note,
    debug_option,
    load_checkpoint,
    main,
    read_text,
)

EVAL_PROGRESS_CHARS = 20_000  # texts at least this long get a progress bar (on a terminal)


@main.command("eval", context_settings=CONTEXT,
              short_help="Loss, perplexity and bits/char of a model on held-out text.")
@click.argument("model_path", metavar="MODEL")
@click.argument("texts", nargs=-1, required=True, metavar="TEXT...")
@click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error",
              show_default=True, help="Characters the model never saw: refuse, or leave out.")
@click.option("--encoding", type=ENCODING, default="utf-8", show_default=True,
              help="Text encoding of the files (e.g. latin-1, cp1252).")
@click.option("--corpus", "corpus_paths", multiple=True, metavar="FILE",
              help="The model's training corpus (a file, a folder, - for stdin; repeatable): "
                   "also show what simple models of its training part score on TEXT.")
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object.")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@debug_option
def evaluate(model_path, texts, unknown, encoding, corpus_paths, as_json, no_color):
    """Loss, perplexity and bits per character of MODEL on held-out TEXT (files, a directory,
    or - for stdin).

    Scores every character after the first as training scores its validation text, so the
    validation tail of a corpus gives the validation loss training reported. With --corpus,
    the loss of a 5-gram model and of character frequencies fitted to the corpus's training
    part (all but the validation tail the model's run held out) is shown beside it.
    """
    import json

    from .. import diagnostics, display, evaluation

    if "-" in texts and "-" in corpus_paths:
        raise click.UsageError("TEXT and --corpus cannot both read standard input")
    ck = load_checkpoint(model_path, resume=bool(corpus_paths))  # the run's val_frac
    model = ck.model
    corpus = read_text(texts, encoding, "text")
    training = read_text(corpus_paths, encoding, "corpus") if corpus_paths else None
    for note in corpus.notes() + (training.notes() if training else []):
        click.echo(f"note: {note}", err=True)
    missing = apply_unknown_option(model.vocab, diagnostics.char_counts(corpus), unknown,
                                   "text")
    ids = corpus.encode(model.vocab, skip_unknown=True)
    if len(ids) < 2:
        raise DataError(f"the text has {len(ids)} character(s)"
                        + (" the model knows" if missing else "")
                        + "; at least 2 are needed to predict one")
    console = display.make_console(no_color=no_color)
    big = len(ids) >= EVAL_PROGRESS_CHARS
    with display.eval_progress(console if big else None, len(ids) - 1) as show, \
            plan_threads(None).running() as plan:
        loss = evaluation.evaluate(model, ids, _timed(show, plan.record))  # as training scores
    result = {"model": model_path, "text": corpus.name, "files": list(corpus.files),
              "characters": int(len(ids)), "predictions": int(len(ids) - 1),
              **diagnostics.figures(loss),
              "unknown": {"policy": unknown, "count": sum(missing.values()),
                          "chars": diagnostics.unknown_chars(model.vocab, missing)},
              "references": None if training is None else
              _references(ck, training, ids, model_path)}
    if as_json:
        click.echo(json.dumps(diagnostics.plain(result), ensure_ascii=True))
    else:
        click.echo(display.eval_lines(result))


def _references(ck, corpus, ids, model_path: str) -> dict:
    """The references (``references.reference_losses``) fitted to the corpus's training part
    and scored on the text's ids: the corpus but its last ``data.validation_chars(n,
    val_frac)`` characters, with the val_frac of the model's run (the whole corpus for a file
    that records no run); the corpus's characters the model never saw are left out. Notes
    say when the corpus is not the model's, or the file records no run."""
    from dataclasses import replace

    from ..data import validation_chars
    from ..references import reference_losses

    mismatch = corpus_note(ck.corpus, corpus, model_path, "--corpus",
                           "fitting the references to it anyway")
    if mismatch:
        click.echo(f"note: {mismatch}", err=True)
    if ck.resume is None:
        click.echo(f"note: {model_path} records no training run, so no validation text: the "
                   "references are fitted to the whole corpus", err=True)
    val_frac = 0.0 if ck.resume is None else ck.resume.train_config.val_frac
    held = validation_chars(len(corpus), val_frac)
    train = replace(corpus, ids=corpus.ids[:len(corpus) - held]).encode(ck.model.vocab,
                                                                        skip_unknown=True)
    return {**reference_losses(train, ids, ck.model.config.vocab_size), "corpus": corpus.name,
            "corpus_matches_model": None if not ck.corpus else mismatch is None,
            "training_chars": int(len(train)), "held_out": held}


def _timed(show, record):
    """An on_progress(done, total) that times each window for the thread count, which follows
    the machine's load, then shows the progress (if there is a bar)."""
    import time

    last = [time.perf_counter()]

    def on_progress(done: int, total: int) -> None:
        now = time.perf_counter()
        record(now - last[0])
        if show is not None:
            show(done, total)
        last[0] = time.perf_counter()

    return on_progress
