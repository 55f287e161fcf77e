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
        report = diagnostics.model_report(ck, os.path.getsize(model_path))
        chosen = None  # (text, ids, where it comes from) of --text or --prime
        if text_file is not None or prime is not None:
            what = "prime" if prime is not None else "text"
            # one character past the limit tells whether the text goes on
            text = normalised(prime) if prime is not None else \
                read_text([text_file], encoding, what, max_chars + 1).text
            if len(text) > max_chars:
                click.echo(f"note: showing the first {max_chars:,} characters of the {what} "
                           "(--max-chars)", err=True)
                text = text[:max_chars]
            given = len(text)
            text, ids = _encode(ck.model, text, unknown, what)
            if not len(ids):
                raise DataError(f"the {what} is empty" if not given else
                                f"the {what} has no characters the model knows")
            chosen = text, ids, ("The text given with --prime" if prime is not None else
                                 "The text read from standard input" if text_file == "-" else
                                 f"The text of {click.format_filename(text_file)}")
        if html_path is not None:
            inspect_html.write_page(html_path, ck, report, chosen, model_path=model_path,
                                    force=force, layer=layer, neurons=neuron,
                                    top_neurons=top_neurons, max_chars=max_chars)
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
