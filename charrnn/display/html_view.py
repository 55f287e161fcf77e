"""``charrnn inspect --html``: one self-contained page of what a model learned.

The page shows the model card, the loss curves, samples, a text colored by the model's
surprise with its top next characters, the units whose activation varies most on that text,
and what is inside the weights. Everything is in the one file: inline CSS and SVG, one inline
script (report.js) and its data as JSON. The Content-Security-Policy admits exactly that
style and that script and nothing from the network.

Input: the dicts of ``diagnostics`` (``model_report``, ``tensor_histograms``, ``text_report``
with ``next``) and the samples, as ``render_page`` describes. The script's data holds
integers, on the scales below: figures at the precision the page shows them.
"""

from __future__ import annotations

from importlib import resources

from .. import __version__
from . import svg
from .base import figures_text
from .html_markup import policy, script_json, text, value
from .inspect_view import BIAS_NOTE, GATE_NOTES, SIGMA_NOTE, file_rows, stat_text, training_rows
from .text_view import glyph, surprise_level

__all__ = ["ACTIVATION_SCALE", "PROBABILITY_SCALE", "SURPRISE_SCALE", "render_page"]

SURPRISE_SCALE = 1000  # surprise in the script's data: milli-nats
PROBABILITY_SCALE = 1000  # probabilities: tenths of a percent
ACTIVATION_SCALE = 100  # activations: hundredths


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _tooltip_glyph(ch: str) -> str:
    """A character as the tooltips name it: a space as ␣, else as in the text view."""
    return "\u2423" if ch == " " else glyph(ch)


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{value(k)}</th><td>{value(v)}</td></tr>" for k, v in pairs)


def _tiles(rep: dict) -> str:
    """The headline figures: best validation loss in nats, perplexity and bits; parameters;
    steps."""
    t, m = rep["training"], rep["model"]
    best = (t or {}).get("best") or {}
    tiles = []
    if best.get("loss") is not None:
        tiles += [(f"{best['loss']:.4f}", "best validation loss, nats/char"),
                  ("-" if best["perplexity"] is None else f"{best['perplexity']:.2f}",
                   "perplexity"),
                  (f"{best['bits_per_char']:.3f}", "bits per character")]
    refs = rep.get("references")
    if refs is not None:  # the model's loss in context: a simple model's on the same text
        tiles.append((f"{refs['ngram']:.2f}", f"a {refs['order']}-gram model of the training text"))
    tiles.append((f"{m['parameters']:,}", "parameters"))
    if t and t.get("steps") is not None:
        tiles.append((f"{t['steps']:,}", "steps"))
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><b>{value(big)}</b><span>{value(small)}</span></div>'
        for big, small in tiles) + "</div>"


def _card(rep: dict) -> str:
    t = rep["training"]
    options = (t or {}).get("options") or {}
    option_rows = "".join(f"<tr><th>{value(k.replace('_', '-'))}</th><td>{value(v)}</td></tr>"
                          for k, v in options.items())
    vocab = "".join(f'<span class="chip" title="{value(v["escaped"])} U+{v["codepoint"]:04X}'
                    + ("" if v["count"] is None else f', {v["count"]:,} in the corpus')
                    + f'">{text(_tooltip_glyph(v["char"]))}</span>' for v in rep["vocab"])
    return f"""<section id="card"><h2>1 · Model card</h2>{_tiles(rep)}
<div class="columns"><table class="kv"><caption>file and network</caption>{_rows(file_rows(rep))}
</table><table class="kv"><caption>training and corpus</caption>{_rows(training_rows(rep))}</table>
</div>{f'<table class="kv options"><caption>options of the run</caption>{option_rows}</table>'
        if option_rows else ''}
<p class="vocab"><b>vocabulary, {len(rep["vocab"])} characters:</b> {vocab}</p></section>"""


def _losses(rep: dict) -> str:
    best = (rep["training"] or {}).get("best")
    chart = svg.loss_chart(rep["history"], best)
    body = chart or '<p class="note">No losses recorded: the file holds no training run.</p>'
    return (f'<section id="losses"><h2>2 · Loss curves</h2>{body}<p class="note">Training '
            "loss: the mean over each evaluation interval. Validation loss: the held-out text "
            "scored at each evaluation; the circled point is the best, whose weights the file "
            "keeps.</p></section>")


def _command(command: str) -> str:
    """A command line that wraps only between its words (an option's dashes do not break)."""
    return " ".join(f'<span class="word">{value(w)}</span>' for w in command.split(" "))


def _marked(sample: str, spans) -> str:
    """The sample escaped, each of its copied runs ((start, end) pairs, in order) in <mark>."""
    out, at = [], 0
    for start, end in spans:
        out.append(f"{text(sample[at:start])}<mark>{text(sample[start:end])}</mark>")
        at = end
    return "".join(out) + text(sample[at:])


def _samples(samples: list[dict], copies_source: str | None) -> str:
    """The samples, each above its command; with a copy check (each sample's ``copies``: a
    copies.CopyReport's to_dict() and summary()), its figures and its copied runs marked."""
    cards = "".join(
        f'<figure class="sample"><figcaption>temperature {s["temperature"]:g}</figcaption>'
        + (f'<p class="copies">{value(s["copies"]["summary"])}</p>' if s.get("copies") else "")
        + f'<pre data-temperature="{s["temperature"]:g}">'
        f'{_marked(s["text"], s["copies"]["spans"] if s.get("copies") else ())}</pre>'
        f"<code>{_command(s['command'])}</code></figure>" for s in samples)
    seed = samples[0]["seed"] if samples else "-"
    checked = next((s["copies"] for s in samples if s.get("copies")), None)
    marked = "" if checked is None else (
        f" Marked: the characters inside spans of {checked['min_span']} or more characters "
        f"found verbatim in {value(copies_source)}.")
    return (f'<section id="samples"><h2>3 · Samples</h2><p class="note">{len(samples)} '
            f"samples of {samples[0]['length'] if samples else 0:,} characters, seed "
            f"{value(seed)}: below each, the command that writes it again.{marked}</p>"
            f'<div class="samples">{cards}</div></section>')


def _char_spans(tr: dict) -> str:
    """One span per character, its class its surprise in whole bits (s0 .. s9; s- for the
    first, which has no context); a newline shows as ↵ and breaks the line."""
    out = []
    for ch, s in zip(tr["text"], tr["surprise"], strict=True):
        level = surprise_level(s)
        shown = glyph(ch)
        escaped = " e" if shown != ch and ch not in "\n\t" else ""
        out.append(f'<span class="s{"-" if level is None else level}{escaped}">{text(shown)}'
                   f'{chr(10) if ch == chr(10) else ""}</span>')
    return "".join(out)


def _text(tr: dict, source: str) -> str:
    n = tr["characters"]
    mean = (f"mean surprise {figures_text(tr)}" if n > 1
            else "nothing to predict: the first character has no context")
    levels = "".join(f'<span class="s{k}">{k if k < 9 else "9+"}</span>' for k in range(10))
    units = "".join(f'<option value="{u["unit"]}">unit {u["unit"]}</option>'
                    for u in tr["neurons"])
    return f"""<section id="text"><h2>4 · The text through the model's eyes</h2>
<p class="note">{value(source)}. {n:,} character{"" if n == 1 else "s"}, {value(mean)}. Each
character's background is its surprise, −log p(character | all before it); hover over or focus
a character (arrow keys move) to see the five characters the model expects next.</p>
<div class="toolbar"><label>color by <select id="colorby"><option value="">surprise</option>
{units}</select></label><span class="legend" id="legend-surprise">surprise in bits: {levels}
<span class="s-">first</span></span><span class="legend" id="legend-unit" hidden>activation of
<b id="unit-name">a unit</b>: <span class="ramp lo">−1</span><span class="ramp mid">0</span><span
class="ramp hi">+1</span></span></div>
<div id="chars" class="chars" data-colored-by="surprise">{_char_spans(tr)}</div>
<div id="tip" role="tooltip" hidden></div></section>"""


def _neurons(tr: dict) -> str:
    n = tr["characters"]
    rows = "".join(
        f'<li><button type="button" class="unit" data-unit="{u["unit"]}" aria-pressed="false">'
        f'unit {u["unit"]}</button><span class="var">variance {u["variance"]:.3f}</span>'
        f'<canvas class="strip" data-unit="{u["unit"]}" width="{n}" height="1" '
        f'aria-label="activation of unit {u["unit"]} after each character"></canvas></li>'
        for u in tr["neurons"])
    return f"""<section id="neurons"><h2>5 · Neurons</h2>
<p class="note">The {len(tr["neurons"])} units of layer {tr["layer"]} whose activation varies most
on the text above. Each strip is one unit's activation after each character, left to right,
from −1 (blue) through 0 (white) to +1 (red); the top strip is the text itself (line ends
black, spaces white, letters light gray). Choose a unit to color the text by it.</p>
<ol class="units"><li><span class="unit">text</span><span class="var"></span><canvas
class="strip ruler" width="{n}" height="1" aria-label="the text"></canvas></li>{rows}</ol>
</section>"""


def _spectra(rep: dict) -> str:
    rec = rep["diagnostics"]["recurrent"]
    names = list(rec[0]["gates"]) if rec and rec[0]["gates"] else []
    head = "".join(f"<th>{value(g)} block</th>" for g in names)
    body = "".join(f"<tr><td>{r['layer']}</td><td>{r['sigma_max']:.3f}</td>"
                   + "".join(f"<td>{r['gates'][g]:.3f}</td>" for g in names) + "</tr>"
                   for r in rec)
    return (f'<table class="grid" id="spectra"><caption>largest singular value (σ<sub>max'
            f"</sub>) of the recurrent matrix W_h</caption><tr><th>layer</th><th>W_h (all)"
            f'</th>{head}</tr>{body}</table><p class="note">{value(SIGMA_NOTE)}</p>')


def _biases(rep: dict) -> str:
    gates = rep["diagnostics"]["gate_biases"]
    if not gates:
        return ""
    gru = any(g["b_hn_mean"] is not None for g in gates)

    def row(g: dict) -> str:
        resting = "-" if g["resting"] is None else f"{g['resting']:.2f}"
        b_hn = "" if g["b_hn_mean"] is None else stat_text(g["b_hn_mean"])
        return (f"<tr><td>{g['layer']}</td><td>{value(g['gate'])}</td><td>{g['mean']:+.3f}"
                f"</td><td>{g['std']:.3f}</td><td>{resting}</td>"
                + (f"<td>{b_hn}</td>" if gru else "") + "</tr>")

    rows = "".join(row(g) for g in gates)
    return ('<table class="grid" id="biases"><caption>gate biases</caption><tr><th>layer</th>'
            "<th>gate</th><th>mean bias</th><th>std</th><th>resting</th>"
            + ("<th>b_hn mean</th>" if gru else "") + f"</tr>{rows}</table>"
            f'<p class="note">{value(BIAS_NOTE + GATE_NOTES[rep["model"]["cell"]])}</p>')


def _tensors(rep: dict, histograms: list[dict]) -> str:
    cards = []
    for t, h in zip(rep["tensors"], histograms, strict=True):
        shape = " × ".join(map(str, t["shape"]))
        stats = " · ".join(f"{k} {stat_text(t[k])}" for k in ("mean", "std", "min", "max"))
        bad = f" · <b>{t['nan']} NaN, {t['inf']} Inf</b>" if t["nan"] + t["inf"] else ""
        chart = svg.histogram(h["counts"], h["lo"], h["hi"])
        cards.append(f'<figure class="tensor"><figcaption><b>{value(t["name"])}</b> {shape}, '
                     f'{t["count"]:,} values</figcaption>{chart}<p>{stats}{bad}</p></figure>')
    return f'<div class="tensors">{"".join(cards)}</div>'


def _weights(rep: dict, histograms: list[dict]) -> str:
    return (f'<section id="weights"><h2>6 · Inside the weights</h2>{_spectra(rep)}'
            f"{_biases(rep)}<h3>every parameter tensor: histogram of its values</h3>"
            f"{_tensors(rep, histograms)}</section>")


def _script_data(tr: dict, vocab: list[dict]) -> dict:
    """What the script needs, as integers on the page's scales: per character its surprise,
    its next characters [id, p, id, p, ...], and each unit's activations."""
    return {
        "scales": {"surprise": SURPRISE_SCALE, "probability": PROBABILITY_SCALE,
                   "activation": ACTIVATION_SCALE},
        "layer": tr["layer"],
        "glyphs": [_tooltip_glyph(v["char"]) for v in vocab],
        "surprise": [None if s is None else round(s * SURPRISE_SCALE)
                     for s in tr["surprise"]],
        "next": [[x for k, p in row for x in (k, round(p * PROBABILITY_SCALE))]
                 for row in tr.get("next", [])],
        "units": [{"unit": u["unit"], "variance": u["variance"],
                   "activations": [round(a * ACTIVATION_SCALE) for a in u["activations"]]}
                  for u in tr["neurons"]],
    }


def _header(rep: dict, title: str) -> str:
    m = rep["model"]
    nav = "".join(f'<a href="#{k}">{name}</a>' for k, name in (
        ("card", "model"), ("losses", "losses"), ("samples", "samples"), ("text", "text"),
        ("neurons", "neurons"), ("weights", "weights")))
    return (f"<header><h1>What <code>{value(title)}</code> learned</h1><p>"
            f"{m['cell'].upper()}, {m['num_layers']} × {m['hidden_size']} units, vocabulary "
            f"{m['vocab_size']}</p><nav>{nav}</nav></header>")


def render_page(page: dict) -> str:
    """The whole page as one string. ``page``: title (the model file's name), report
    (model_report), histograms (tensor_histograms), text (text_report with ``next``),
    text_source (a sentence saying where the text comes from), samples ([{temperature,
    seed, length, text, command[, copies]}]), copies_source (the name of the corpus the
    samples were checked against, e.g. "sonnets.txt"; None without a copy check)."""
    rep, tr = page["report"], page["text"]
    css, js = _asset("report.css"), _asset("report.js")
    data = script_json(_script_data(tr, rep["vocab"]))
    body = "".join([_header(rep, page["title"]), "<main>", _card(rep), _losses(rep),
                    _samples(page["samples"], page.get("copies_source")),
                    _text(tr, page["text_source"]), _neurons(tr),
                    _weights(rep, page["histograms"]), "</main>"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{value(policy(js, css))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="charrnn {value(__version__)}">
<title>charrnn: {value(page["title"])}</title>
<style>{css}</style></head><body>
{body}
<footer>Written by charrnn {value(__version__)} (<code>charrnn inspect --html</code>). The page
loads nothing: everything it shows is in this one file.</footer>
<script type="application/json" id="page-data">{data}</script>
<script>{js}</script></body></html>
"""
