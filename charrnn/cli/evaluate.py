"""`charrnn eval`: loss, perplexity and bits per character of a model on held-out text."""

from __future__ import annotations

import click

from ..blas import plan_threads
from ..errors import DataError
from ..vocab import UNKNOWN_POLICIES
from .common import (
    CONTEXT,
    ENCODING,
    apply_unknown_option,
    debug_option,
    load_model,
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
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object.")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@debug_option
def evaluate(model_path, texts, unknown, encoding, as_json, no_color):
    """Loss, perplexity and bits per character of MODEL on held-out TEXT (files, a directory,
    or - for stdin).

    Scores every character after the first as training scores its validation text, so the
    validation tail of a corpus gives the validation loss training reported.
    """
    import json

    from .. import diagnostics, display, evaluation

    model = load_model(model_path)
    corpus = read_text(texts, encoding, "text")
    for note in corpus.notes():
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
                          "chars": diagnostics.unknown_chars(model.vocab, missing)}}
    if as_json:
        click.echo(json.dumps(diagnostics.plain(result), ensure_ascii=True))
    else:
        click.echo(display.eval_lines(result))


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
