"""`charrnn inspect`: what a model file holds, and text seen through the model."""

from __future__ import annotations

import click

from ..errors import DataError
from ..vocab import UNKNOWN_POLICIES, leave_out
from .common import (
    CONTEXT,
    ENCODING,
    apply_unknown_option,
    debug_option,
    load_checkpoint,
    main,
    normalised,
    option_range,
    read_text,
)

TEXT_VIEW_CHARS = 2000  # default --max-chars: characters of --text/--prime shown


def _encode(model, text: str, unknown: str, what: str):
    """(kept text, ids) of a str over the model's vocabulary; unknowns refused or dropped."""
    from collections import Counter

    text = leave_out(text, apply_unknown_option(model.vocab, Counter(text), unknown, what))
    return text, model.vocab.encode(text)


def _given_text(model, text_file, prime, encoding: str, unknown: str, max_chars: int,
                whole: bool):
    """((text, ids, where it comes from), the whole --text or None) of --text or --prime: at
    most max_chars characters, and with ``whole`` the --text file read whole as a
    data.Corpus (the page checks its samples against it: charrnn.copies)."""
    what = "prime" if prime is not None else "text"
    read = None
    if prime is not None:
        text = normalised(prime)
    else:  # one character past the limit tells whether the text goes on
        read = read_text([text_file], encoding, what, None if whole else max_chars + 1)
        text = read.vocab.decode(read.ids[:max_chars + 1])
    if len(text) > max_chars:
        click.echo(f"note: showing the first {max_chars:,} characters of the {what} "
                   "(--max-chars)", err=True)
        text = text[:max_chars]
    given = len(text)
    text, ids = _encode(model, text, unknown, what)
    if not len(ids):
        raise DataError(f"the {what} is empty" if not given else
                        f"the {what} has no characters the model knows")
    where = ("The text given with --prime" if prime is not None else
             "The text read from standard input" if text_file == "-" else
             f"The text of {click.format_filename(text_file)}")
    return (text, ids, where), read if whole else None


@main.command(context_settings=CONTEXT,
              short_help="What is inside a model: parameters, history, diagnostics, text.")
@click.argument("model_path", default="model.npz", envvar="CHARRNN_MODEL", metavar="[MODEL]",
                required=False)
@click.option("--text", "text_file", default=None, metavar="FILE",
              help="Show this text (a file, or - for stdin) through the model's eyes.")
@click.option("-p", "--prime", default=None, metavar="TEXT",
              help="Show this text through the model's eyes.")
@click.option("--neuron", type=option_range(click.IntRange, 0), multiple=True, metavar="K",
              help="Color the text by hidden unit K's activation (repeatable).")
@click.option("--layer", type=option_range(click.IntRange, 0), default=None, metavar="L",
              help="Layer of --neuron/--top-neurons, from 0 (default: the last).")
@click.option("--top-neurons", type=option_range(click.IntRange, 0, 1000), default=0, metavar="N",
              help="Color the text by the N units whose activation varies most on it.")
@click.option("--max-chars", type=option_range(click.IntRange, 2, 100_000), default=TEXT_VIEW_CHARS,
              metavar="N", show_default=True,
              help="Characters of the text to read and show (at most 100,000).")
@click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error",
              show_default=True, help="Text characters the model never saw: refuse, or drop.")
@click.option("--encoding", type=ENCODING, default="utf-8", show_default=True,
              help="Encoding of --text.")
@click.option("--json", "as_json", is_flag=True,
              help="Everything as one JSON document on stdout (no colored text).")
@click.option("--html", "html_path", default=None, metavar="FILE",
              help="Write one self-contained HTML page of what the model learned.")
@click.option("--force", is_flag=True, help="Overwrite an existing --html file.")
@click.option("--no-color", is_flag=True, help="No colors (also: NO_COLOR=1).")
@debug_option
def inspect(model_path, text_file, prime, neuron, layer, top_neurons, max_chars, unknown,
            encoding, as_json, html_path, force, no_color):
    """Show what is inside a model file: architecture, parameters, training history,
    diagnostics, vocabulary, and (with --text or --prime) text colored by the model's
    surprise and by hidden units' activations.

    MODEL defaults to model.npz (or $CHARRNN_MODEL).
    """
    import json
    import os

    from .. import diagnostics, display
    from ..blas import one_thread
    from . import inspect_html

    if text_file is not None and prime is not None:
        raise click.UsageError("give --text or --prime, not both")
    if (neuron or top_neurons or layer is not None) and text_file is None and prime is None \
            and html_path is None:
        raise click.UsageError("--neuron, --top-neurons and --layer need --text or --prime")
    if force and html_path is None:
        raise click.UsageError("--force overwrites an existing --html file; it needs --html")
    if html_path is not None:
        inspect_html.check_page_options(max_chars, as_json, neuron, top_neurons)
        inspect_html.check_page_path(html_path, force=force, model_path=model_path,
                                     text_file=text_file)
    with one_thread():  # small products: a model's matrices, a character at a time
        ck = load_checkpoint(model_path, resume=True)
        cfg = ck.model.config
        if layer is not None and layer >= cfg.num_layers:
            raise click.BadParameter(f"the model has layers 0 to {cfg.num_layers - 1}",
                                     param_hint="--layer")
        bad = [k for k in neuron if k >= cfg.hidden_size]
        if bad:
            raise click.BadParameter(f"unit {bad[0]} does not exist; layers have units 0 to "
                                     f"{cfg.hidden_size - 1}", param_hint="--neuron")
        # the references' losses on the validation text (format 4 on), beside the model's
        report = dict(diagnostics.model_report(ck, os.path.getsize(ck.path)),
                      references=ck.references)
        chosen, whole = None, None  # (text, ids, where it comes from) of --text or --prime
        if text_file is not None or prime is not None:
            chosen, whole = _given_text(ck.model, text_file, prime, encoding, unknown,
                                        max_chars, whole=html_path is not None)
        if html_path is not None:
            inspect_html.write_page(html_path, ck, report, chosen, model_path=model_path,
                                    force=force, layer=layer, neurons=neuron,
                                    top_neurons=top_neurons, max_chars=max_chars,
                                    check=whole)
            return
        text_rep = None if chosen is None else diagnostics.text_report(
            ck.model, *chosen[:2], layer=layer, neurons=neuron, top_neurons=top_neurons)
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
