"""`charrnn inspect --html FILE`: the page of what a model learned, written to one file.

The page's text is the one given (--text, --prime); else the start of the model's own
validation text when its corpus is found (``corpus_text``); else a sample of the model.
Its samples are seeded, and the page shows the `charrnn sample` command that repeats each;
they are checked against the whole --text file, or the model's corpus when found
(charrnn.copies: their copied spans marked).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..data import Corpus

PAGE_MAX_CHARS = 10_000  # characters of text a page shows: bounds its size (~90 bytes each)
PAGE_NEURONS = 8  # units shown when --top-neurons is not given
PAGE_MAX_NEURONS = 32  # units a page shows at most (~4 bytes per character each)
NEXT_CHARS = 5  # likeliest next characters shown for each character
SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0)
SAMPLE_SEED = 1
SAMPLE_CHARS = 400


def check_page_options(max_chars: int, as_json: bool, neurons, top_neurons: int) -> None:
    """Usage errors of --html's own, before anything is read: the limits that bound the
    page's size (characters, units)."""
    if as_json:
        raise click.UsageError("give --json or --html, not both")
    if max_chars > PAGE_MAX_CHARS:
        raise click.BadParameter(f"a page shows at most {PAGE_MAX_CHARS:,} characters",
                                 param_hint="--max-chars")
    if len(set(neurons)) + top_neurons > PAGE_MAX_NEURONS:
        raise click.UsageError(f"a page shows at most {PAGE_MAX_NEURONS} units "
                               "(--neuron and --top-neurons together)")


def check_page_path(html_path: str, *, force: bool, model_path: str,
                    text_file: str | None) -> None:
    """The page's file may be written (output_guard's rules), and is neither the model file
    nor the --text file."""
    from ..output_guard import check_page_output

    inputs = [model_path, *([text_file] if text_file is not None else [])]
    check_page_output(Path(html_path), force=force, inputs=inputs)


def sample_command(model_path: str, length: int, temperature: float, seed: int) -> str:
    """The `charrnn sample` command line that writes this sample again."""
    return (f"charrnn sample -m {shlex.quote(str(model_path))} -n {length} "
            f"--temp {temperature:g} --seed {seed}")


def _samples(model, model_path: str, check: Corpus | None) -> list[dict]:
    """The page's samples; with a corpus to ``check`` (a data.Corpus), each with its copy
    report (copies.CopyReport.to_dict() and its summary)."""
    from ..copies import CopyIndex

    samples = [{"temperature": t, "seed": SAMPLE_SEED, "length": SAMPLE_CHARS,
                "text": model.sample(SAMPLE_CHARS, temperature=t, seed=SAMPLE_SEED),
                "command": sample_command(model_path, SAMPLE_CHARS, t, SAMPLE_SEED)}
               for t in SAMPLE_TEMPERATURES]
    if check is not None:
        index = CopyIndex.from_ids(check.ids, check.vocab.chars)
        for s, report in zip(samples, index.check_all([s["text"] for s in samples]),
                             strict=True):
            s["copies"] = {**report.to_dict(), "summary": report.summary()}
    return samples


def default_text(ck, model_path: str, max_chars: int
                 ) -> tuple[str, str, Path | None, Corpus | None]:
    """(text, where it comes from, the corpus file it was read from or None, that corpus as
    a data.Corpus or None): the start of the model's validation text if its corpus is found,
    else a sample of the model."""
    from ..corpus_text import corpus_folders, find_corpus, validation_text

    model, record = ck.model, ck.corpus
    val_frac = ck.resume.train_config.val_frac if ck.resume is not None else 0.0
    why = "the model file records no corpus"
    if record is not None and not val_frac:
        why = "the model was trained without validation text"
    elif record is not None:
        found = find_corpus(record, corpus_folders(model_path))
        why = (f"its corpus {record.get('name')} is not next to the model file, in the current "
               "folder or in its corpora folder (or differs from the one it was trained on)")
        if found is not None:
            path, corpus = found
            text = validation_text(corpus, val_frac, max_chars)
            if text and not model.vocab.unknown(text):
                return (text, f"The first {len(text):,} characters of the validation text "
                              f"of {path}, which training held out", path, corpus)
    text = model.sample(max_chars, temperature=1.0, seed=SAMPLE_SEED)
    command = sample_command(model_path, max_chars, 1.0, SAMPLE_SEED)
    return text, f"A sample of the model ({command}), as {why}", None, None


def write_page(html_path: str, ck, report: dict, chosen, *, model_path: str, force: bool,
               layer: int | None, neurons, top_neurons: int, max_chars: int,
               check: Corpus | None = None) -> None:
    """Gather the page's figures, render it and write it atomically; say where and how big.

    chosen: (text, ids, where it comes from) of --text/--prime, or None for the default text.
    check: the data.Corpus the samples are checked against (the whole --text), or None: the
    model's corpus when the default text is read from it, else no check.
    """
    from .. import diagnostics, display
    from ..atomic import replace_file
    from ..output_guard import check_page_output

    model = ck.model
    if chosen is None:
        text, source, corpus_path, check = default_text(ck, model_path, max_chars)
        if corpus_path is not None:  # the page is made from that file too
            check_page_output(Path(html_path), force=force, inputs=[corpus_path])
        chosen = (text, model.vocab.encode(text), source)
    text, ids, source = chosen
    text_rep = diagnostics.text_report(model, text, ids, layer=layer, neurons=neurons,
                                       top_neurons=top_neurons or PAGE_NEURONS, top=NEXT_CHARS)
    page = display.render_page({
        "title": Path(model_path).name, "report": report, "text": text_rep,
        "histograms": diagnostics.tensor_histograms(model.params), "text_source": source,
        "samples": _samples(model, model_path, check),
        "copies_source": None if check is None else check.name})
    data = page.encode("utf-8", "backslashreplace")  # a lone surrogate shows as \udc80
    replace_file(html_path, lambda f: f.write(data))
    click.echo(f"wrote {click.format_filename(html_path)} ({len(data) / 1000:,.0f} KB)", err=True)
