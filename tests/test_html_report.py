"""`charrnn inspect --html`: the page's structure, its figures against `inspect --json`, its
samples against `charrnn sample`, its text (validation text, a sample, --prime), escaping of
hostile model files, its size, and the rules for the file it writes."""

import base64
import hashlib
import json
import math
import os
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
from charrnn import checkpoint, corpus_text, diagnostics
from charrnn.cli import main
from charrnn.cli.inspect_html import PAGE_NEURONS, SAMPLE_CHARS, SAMPLE_SEED, SAMPLE_TEMPERATURES
from charrnn.config import ModelConfig
from charrnn.data import Vocab, read_corpus, split_train_val
from charrnn.display import html_markup, surprise_level
from charrnn.model import CharRNN

ROOT = Path(__file__).resolve().parents[1]
SONNETS = (ROOT / "corpora" / "sonnets.txt").read_text()
TINY = ["--cell", "lstm", "--dropout", "0", "--hidden-size", "8", "--num-layers", "2",
        "--batch-size", "4", "--seq-len", "16"]
PRIME = "Shall I compare thee\nto a summer's day?"
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "</style>",
           "\u202e\u2066evil\u2069", "\u2028\u2029", "&amp;", "</script><!--"]
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "source", "wbr", "area", "base",
        "embed", "param", "track"}


def run(args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "160", **(env or {})})


class Page(HTMLParser):
    """A written page as elements: tag, attrs, the text inside (entities decoded), parent."""

    def __init__(self, path):
        super().__init__(convert_charrefs=True)
        self.raw = Path(path).read_text(encoding="utf-8")
        self.elements, self._open = [], []
        self.feed(self.raw)
        self.close()

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": "",
              "parent": self._open[-1] if self._open else None}
        self.elements.append(el)
        if tag not in VOID:
            self._open.append(el)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": "",
                              "parent": self._open[-1] if self._open else None})

    def handle_endtag(self, tag):
        for k in range(len(self._open) - 1, -1, -1):
            if self._open[k]["tag"] == tag:
                del self._open[k:]
                return

    def handle_data(self, data):
        for el in self._open:
            el["text"] += data

    def by_id(self, name):
        found = [e for e in self.elements if e["attrs"].get("id") == name]
        assert len(found) == 1, name
        return found[0]

    def all(self, tag, **attrs):
        return [e for e in self.elements if e["tag"] == tag
                and all(e["attrs"].get(k.rstrip("_")) == v for k, v in attrs.items())]

    def chars(self):
        box = self.by_id("chars")
        return [e for e in self.elements if e["parent"] is box]

    def data(self):
        return json.loads(self.by_id("page-data")["text"])

    def samples(self):
        return {float(e["attrs"]["data-temperature"]): e["text"] for e in self.all("pre")}


def write_page(model, *args, name="page.html", folder=None):
    out = Path(folder or model.parent) / name
    r = run(["inspect", model, "--html", out, "--force", *args])
    assert r.exit_code == 0, r.output
    return out, r


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained through the CLI on the Sonnets' first 6,000 characters (text.txt,
    next to the model): 12 steps, evaluated every 4."""
    folder = tmp_path_factory.mktemp("html")
    corpus = folder / "text.txt"
    corpus.write_text(SONNETS[:6000])
    out = folder / "m.npz"
    r = run(["train", corpus, "-o", out, *TINY, "--max-steps", "12", "--eval-every", "4"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def page(trained):
    return Page(write_page(trained, "--prime", PRIME, "--top-neurons", "3")[0])


def inspect_json(*args):
    r = run(["inspect", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ----------------------------------------------------------------------------- structure

def test_the_page_has_every_section_and_is_one_file(page):
    for section in ("card", "losses", "samples", "text", "neurons", "weights"):
        assert page.by_id(section)["tag"] == "section"
    assert page.raw.startswith("<!DOCTYPE html>")
    assert len(page.all("svg", **{"class": "chart"})) == 1
    assert page.all("circle", **{"class": "best"})  # the best validation point, marked
    assert len(page.all("pre")) == 3 and len(page.all("figure", **{"class": "tensor"})) == 8
    for el in page.elements:  # nothing from elsewhere: no src or href but in-page anchors
        assert "src" not in el["attrs"], el
        assert el["attrs"].get("href", "#").startswith("#"), el
    assert not re.search(r"https?://", page.raw, re.I)
    assert not page.all("link") and not page.all("iframe") and not page.all("img")


def test_the_policy_admits_exactly_the_page_s_own_script_and_style(page):
    scripts, styles = page.all("script"), page.all("style")
    assert len(scripts) == 2 and len(styles) == 1
    data, code = scripts
    assert data["attrs"] == {"type": "application/json", "id": "page-data"}
    assert code["attrs"] == {}
    meta = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
    assert len(meta) == 1 and page.elements.index(meta[0]) < page.elements.index(styles[0])
    csp = dict(d.strip().split(" ", 1) for d in meta[0]["attrs"]["content"].split(";"))

    def digest(source):
        return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() \
            + "'"

    assert csp == {"default-src": "'none'", "script-src": digest(code["text"]),
                   "style-src": digest(styles[0]["text"]), "img-src": "data:",
                   "base-uri": "'none'", "form-action": "'none'"}


def test_one_span_per_character_with_its_surprise_class(trained, page):
    doc = inspect_json(trained, "--prime", PRIME)["text"]
    spans = page.chars()
    assert len(spans) == doc["characters"] == len(PRIME)
    assert [s["attrs"]["class"] for s in spans] == [
        "s-" if s is None else f"s{surprise_level(s)}" for s in doc["surprise"]]
    assert "".join(s["text"] for s in spans) == PRIME.replace("\n", "↵\n")


# ----------------------------------------------------------------------------- figures

def test_the_text_figures_equal_inspect_json(trained, page):
    doc = inspect_json(trained, "--prime", PRIME, "--top-neurons", "3")
    data, text = page.data(), doc["text"]
    assert data["surprise"] == [None if s is None else round(s * 1000) for s in text["surprise"]]
    assert [u["unit"] for u in data["units"]] == [n["unit"] for n in text["neurons"]]
    for unit, neuron in zip(data["units"], text["neurons"], strict=True):
        assert unit["variance"] == neuron["variance"]
        assert unit["activations"] == [round(a * 100) for a in neuron["activations"]]
    assert data["layer"] == text["layer"] == 1
    section = page.by_id("text")["text"]
    assert f"mean surprise {text['loss']:.4f} nats/char (perplexity " \
           f"{math.exp(text['loss']):.2f}, {text['bits_per_char']:.3f} bits/char)" in section
    assert "The text given with --prime" in section


def test_the_next_characters_are_the_model_s_top_five(trained, page):
    model = checkpoint.load(trained).model
    ids = model.vocab.encode(PRIME)
    logp, _ = model.log_probs(ids[None, :].astype(np.int64))
    data = page.data()
    assert data["glyphs"] == ["␣" if c == " " else "↵" if c == "\n" else c
                              for c in model.vocab.chars]
    assert len(data["next"]) == len(PRIME)
    for i, row in enumerate(data["next"]):
        order = np.argsort(-logp[0, i], kind="stable")[:5]
        assert row[0::2] == order.tolist()
        assert row[1::2] == [round(math.exp(logp[0, i, k]) * 1000) for k in order]


def test_the_model_card_and_weights_equal_inspect_json(trained, page):
    doc = inspect_json(trained)
    t = doc["training"]
    card = page.by_id("card")["text"]
    best = t["best"]
    for shown in (f"{best['loss']:.4f}", f"{best['perplexity']:.2f}",
                  f"{best['bits_per_char']:.3f}", f"{doc['model']['parameters']:,}",
                  f"{t['steps']:,}", "LSTM: 2 layer(s) x 8 units", doc["corpus"]["sha256"],
                  "text.txt: 6.0 kB (6,000 bytes), 6,000 characters", "adam lr 0.004 cosine"):
        assert shown in card, shown
    options = {e["text"]: e["parent"] for e in page.all("th") if e["parent"]["parent"]
               is not None and "options" in (e["parent"]["parent"]["attrs"].get("class") or "")}
    assert set(options) == {k.replace("_", "-") for k in t["options"]}
    spectra = page.by_id("spectra")
    cells = [e["text"] for e in page.elements if e["tag"] == "td"
             and e["parent"]["parent"] is spectra]
    expected = [str(r["layer"]) if k == 0 else f"{v:.3f}" for r in doc["diagnostics"]["recurrent"]
                for k, v in enumerate([r["layer"], r["sigma_max"], *r["gates"].values()])]
    assert cells == expected
    biases = page.by_id("biases")
    rows = [e for e in page.elements if e["tag"] == "tr" and e["parent"] is biases][1:]
    for row, g in zip(rows, doc["diagnostics"]["gate_biases"], strict=True):
        assert row["text"].startswith(f"{g['layer']}{g['gate']}{g['mean']:+.3f}{g['std']:.3f}")
    tensors = page.all("figure", **{"class": "tensor"})
    for fig, ts in zip(tensors, doc["tensors"], strict=True):
        assert fig["text"].startswith(f"{ts['name']} {' × '.join(map(str, ts['shape']))}, "
                                      f"{ts['count']:,} values")
        assert f"mean {ts['mean']:.3f} · std {ts['std']:.3f}" in fig["text"]


def test_histograms_count_every_value_in_their_bins(trained, page):
    params = checkpoint.load(trained).model.params
    hists = diagnostics.tensor_histograms(params)
    for h, (name, p) in zip(hists, params.items(), strict=True):
        counts, edges = np.histogram(p.astype(np.float64), bins=diagnostics.HISTOGRAM_BINS)
        assert h["name"] == name and h["counts"] == counts.tolist() and sum(h["counts"]) == p.size
        assert (h["lo"], h["hi"]) == (edges[0], edges[-1]) == (p.min(), p.max())
    bars = page.all("svg", **{"class": "hist"})
    assert len(bars) == len(hists)
    assert diagnostics.tensor_histograms({"c": np.full(3, 2.0)})[0]["counts"][20] == 3
    assert diagnostics.tensor_histograms({"n": np.array([np.nan])})[0]["counts"] == []


def test_the_loss_chart_marks_the_best_validation_point(trained, page):
    best = inspect_json(trained)["training"]["best"]
    chart = page.all("svg", **{"class": "chart"})[0]
    assert f"best {best['loss']:.4f} at step {best['step']:,}" in chart["text"]
    for label in ("step", "loss (nats/char)", "learning rate", "training loss",
                  "validation loss"):
        assert label in chart["text"], label
    lines = [e for e in page.all("polyline")]
    assert len(lines) == 3  # training loss, validation loss, learning rate


# ----------------------------------------------------------------------------- samples

def test_each_sample_is_what_its_command_writes(trained, page):
    samples = page.samples()
    assert sorted(samples) == list(SAMPLE_TEMPERATURES)
    commands = [e["text"] for e in page.all("code") if e["text"].startswith("charrnn sample")]
    assert len(commands) == 3
    for command, t in zip(commands, SAMPLE_TEMPERATURES, strict=True):
        args = shlex.split(command)
        assert args[:2] == ["charrnn", "sample"] and f"--seed {SAMPLE_SEED}" in command
        r = run(args[1:])
        assert r.exit_code == 0, r.output
        assert r.stdout == samples[t] + "\n" and len(samples[t]) == SAMPLE_CHARS
    assert samples[0.5] != samples[1.0]


# ----------------------------------------------------------------------------- the text

def test_by_default_the_text_is_the_start_of_the_validation_text(trained):
    out, r = write_page(trained, "--max-chars", "300")
    p = Page(out)
    cfg = checkpoint.load(trained).resume.train_config
    corpus = read_corpus([trained.parent / "text.txt"])
    val = corpus.vocab.decode(split_train_val(corpus.ids, cfg.val_frac)[1])
    shown = "".join(s["text"] for s in p.chars()).replace("↵\n", "\n")
    assert shown == val[:300] and len(p.chars()) == 300
    assert "The first 300 characters of the validation text of " in p.by_id("text")["text"]
    # the same numbers as inspect --json on that text
    (trained.parent / "val.txt").write_text(val[:300])
    doc = inspect_json(trained, "--text", trained.parent / "val.txt")
    assert p.data()["surprise"] == [None if s is None else round(s * 1000)
                                    for s in doc["text"]["surprise"]]
    assert len(p.data()["units"]) == PAGE_NEURONS


def test_without_its_corpus_the_text_is_a_sample_and_says_how_to_repeat_it(trained, tmp_path):
    model = tmp_path / "alone.npz"
    model.write_bytes(trained.read_bytes())
    out, _ = write_page(model, "--max-chars", "250", folder=tmp_path)
    p = Page(out)
    note = p.by_id("text")["text"]
    command = re.search(r"A sample of the model \((charrnn sample [^)]*)\)", note).group(1)
    assert "its corpus text.txt is not next to the model file" in note
    r = run(shlex.split(command)[1:])
    assert r.exit_code == 0, r.output
    shown = "".join(s["text"] for s in p.chars()).replace("↵\n", "\n")
    assert r.stdout == shown + "\n" and len(shown) == 250


def test_a_changed_corpus_is_not_the_model_s(trained, tmp_path):
    rec = checkpoint.load(trained).corpus
    (tmp_path / "text.txt").write_text(SONNETS[:5999] + "X")  # same size, other bytes
    assert corpus_text.find_corpus(rec, [tmp_path]) is None
    assert corpus_text.find_corpus(rec, [tmp_path, trained.parent])[0] == trained.parent / \
        "text.txt"
    for name in ("../text.txt", "/etc/passwd", "", "..", "a/b"):
        assert corpus_text.find_corpus(dict(rec, name=name), [trained.parent]) is None
    assert corpus_text.find_corpus(None, [trained.parent]) is None


def test_layer_and_neurons_choose_the_units(trained):
    out, _ = write_page(trained, "--prime", PRIME, "--layer", "0", "--neuron", "5",
                        "--top-neurons", "2")
    doc = inspect_json(trained, "--prime", PRIME, "--layer", "0", "--neuron", "5",
                       "--top-neurons", "2")
    data = Page(out).data()
    assert data["layer"] == 0
    assert [u["unit"] for u in data["units"]] == [n["unit"] for n in doc["text"]["neurons"]]
    assert data["units"][0]["unit"] == 5
    buttons = Page(out).all("button")
    assert [b["attrs"]["data-unit"] for b in buttons] == [str(u["unit"]) for u in data["units"]]


# ----------------------------------------------------------------------------- hostile files

@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A model whose vocabulary holds markup, bidi controls and line separators (trained on
    text full of them), saved with a corpus name and sha256 made of them."""
    folder = tmp_path_factory.mktemp("hostile")
    corpus = folder / "evil.txt"
    corpus.write_text((SONNETS[:1500] + "".join(HOSTILE)) * 2)
    out = folder / "h.npz"
    r = run(["train", corpus, "-o", out, *TINY, "--max-steps", "2", "--eval-every", "2"])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(out)
    facts = dict(ck.corpus, name="".join(HOSTILE) + ".txt", sha256='"><img src=x onerror=1>')
    checkpoint.save(out, ck.model, resume=ck.resume, history=ck.history, corpus=facts,
                    best=ck.best)
    return out


@pytest.mark.parametrize("how", [[], ["--prime", "".join(HOSTILE)]])
def test_hostile_strings_come_out_as_inert_text(hostile, how):
    out, _ = write_page(hostile, *how)
    p = Page(out)
    assert len(p.all("script")) == 2 and len(p.all("style")) == 1
    assert not p.all("img") and not p.all("iframe")
    assert not any(k.startswith("on") for e in p.elements for k in e["attrs"])
    for bad in ("\u202e", "\u2066", "\u2069", "\u2028", "\u2029"):
        assert bad not in p.raw, repr(bad)
    assert "<img" not in p.raw and "<script>alert" not in p.raw and p.raw.count("</style>") == 1
    # the name is there, escaped, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" \
           "&lt;/style&gt;U+202EU+2066evilU+2069U+2028U+2029&amp;amp;&lt;/script&gt;" in p.raw
    assert '<script>alert(1)</script>"><img src=x onerror=alert(1)></style>U+202EU+2066evil' \
           in p.by_id("card")["text"]
    data_source = p.by_id("page-data")["text"]
    assert not re.search(r"[<>&\u2028\u2029]", data_source)
    glyphs = json.loads(data_source)["glyphs"]
    assert {"<", ">", "&", '"', "/"} <= set(glyphs) and "U+202E" in glyphs
    if how:
        assert "".join(s["text"] for s in p.chars()).startswith(
            '<script>alert(1)</script>"><img src=x onerror=alert(1)></style>'
            "U+202EU+2066evilU+2069U+2028U+2029&amp;</script><!--")


def test_markup_helpers_escape_everything_outside_data():
    assert html_markup.text('a<b>&"\'\n\x1b\u202e') == \
        "a&lt;b&gt;&amp;&quot;&#x27;\n\\x1b&lt;U+202E&gt;"
    assert html_markup.value("x\ny<") == "x\\ny&lt;"
    assert html_markup.script_json({"k": "</script>\u2028&"}) == \
        '{"k":"\\u003c/script\\u003e\\u2028\\u0026"}'
    with pytest.raises(ValueError):
        html_markup.script_json(float("nan"))


# ----------------------------------------------------------------------------- size

def test_the_default_2x256_page_stays_small(tmp_path):
    vocab = Vocab.from_text(SONNETS)
    path = tmp_path / "big.npz"
    charrnn.save(CharRNN(ModelConfig(vocab_size=len(vocab)), vocab=vocab, seed=1), path)
    out, r = write_page(path, "--prime", SONNETS[:2000])
    size = out.stat().st_size
    assert size < 300_000, size
    assert r.stderr.strip() == f"wrote {out} ({size / 1000:.0f} KB)"
    assert len(Page(out).chars()) == 2000 and len(Page(out).data()["units"]) == PAGE_NEURONS


def test_the_page_grows_linearly_with_the_text(trained):
    sizes = [write_page(trained, "--prime", SONNETS[:n], name=f"{n}.html")[0].stat().st_size
             for n in (500, 1500)]
    per_char = (sizes[1] - sizes[0]) / 1000
    assert per_char < 130, per_char  # 8 units: ~25 bytes of markup, ~50 of data per character
    r = run(["inspect", trained, "--html", trained.parent / "big.html", "--max-chars", "10001"])
    assert r.exit_code == 2 and "a page shows at most 10,000 characters" in r.output
    r = run(["inspect", trained, "--html", trained.parent / "big.html", "--top-neurons", "31",
             "--neuron", "1", "--neuron", "2"])
    assert r.exit_code == 2 and "a page shows at most 32 units" in r.output
    assert not (trained.parent / "big.html").exists()


# ----------------------------------------------------------------------------- the file

def test_an_existing_file_only_with_force(trained, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("keep")
    r = run(["inspect", trained, "--html", out, "--prime", PRIME])
    assert r.exit_code == 2 and r.output.strip() == f"Error: {out} already exists; pass " \
                                                    "--force to overwrite it"
    assert out.read_text() == "keep"
    r = run(["inspect", trained, "--html", out, "--prime", PRIME, "--force"])
    assert r.exit_code == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_never_over_the_model_the_text_or_the_corpus(trained, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(PRIME)
    before = trained.read_bytes()
    for args, target in ((["--prime", PRIME], trained), (["--text", text], text),
                         ([], trained.parent / "text.txt")):
        r = run(["inspect", trained, "--html", target, "--force", *args])
        assert r.exit_code == 2, r.output
        assert r.output.strip() == f"Error: cannot write {target}: the page is made from that file"
    assert trained.read_bytes() == before and text.read_text() == PRIME
    assert (trained.parent / "text.txt").read_text() == SONNETS[:6000]


def test_never_over_a_device_a_pipe_or_a_folder(trained, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for target, why in (("/dev/null", "not a regular file"), (tmp_path / "pipe",
                        "not a regular file"), (tmp_path, "it is a directory"),
                        (tmp_path / "no" / "r.html", "does not exist")):
        r = run(["inspect", trained, "--html", target, "--force", "--prime", PRIME])
        assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1


def test_the_page_is_written_atomically(trained, tmp_path, monkeypatch):
    seen, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: seen.append((Path(a), Path(b))) or real(a, b))
    out = tmp_path / "r.html"
    write_page(trained, "--prime", PRIME, folder=tmp_path, name="r.html")
    (tmp, target), = seen
    assert target == out and tmp.parent == tmp_path and tmp.name.startswith(".r.html.tmp-")
    assert os.listdir(tmp_path) == ["r.html"]


@pytest.mark.parametrize("args, fragment", [
    (["--json"], "give --json or --html, not both"),
    (["--prime", "ab", "--text", "x.txt"], "not both"),
    (["--prime", "ab\u20ac"], "'€' (U+20AC, once)"),
])
def test_bad_usage_is_one_clear_error(trained, tmp_path, args, fragment):
    r = run(["inspect", trained, "--html", tmp_path / "r.html", *args])
    assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "r.html").exists()


def test_force_needs_html(trained):
    r = run(["inspect", trained, "--force"])
    assert r.exit_code == 2 and "--force overwrites an existing --html file" in r.output


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_a_model_saved_without_training_gets_a_page_too(tmp_path, cell):
    vocab = Vocab.from_text(SONNETS[:2000])
    path = tmp_path / "lib.npz"
    model = CharRNN(ModelConfig(cell=cell, vocab_size=len(vocab), hidden_size=6, num_layers=2),
                    vocab=vocab, seed=2)
    charrnn.save(model, path)
    out, _ = write_page(path, "--max-chars", "120")
    p = Page(out)
    assert "No losses recorded" in p.by_id("losses")["text"] and not p.all("polyline")
    assert "saved without a training run" in p.by_id("card")["text"]
    assert "the model file records no corpus" in p.by_id("text")["text"]
    assert len(p.chars()) == 120 and len(p.data()["units"]) == 6  # all 6 units: fewer than 8
    rows = [e for e in p.elements if e["tag"] == "tr" and e["parent"] is p.by_id("spectra")]
    assert len(rows) == 3 and rows[0]["text"] == "layerW_h (all)" + "".join(
        f"{g} block" for g in {"rnn": "", "gru": "rzn", "lstm": "ifgo"}[cell])
    assert bool([e for e in p.elements if e["attrs"].get("id") == "biases"]) == (cell != "rnn")
    if cell == "gru":
        assert "b_hn mean" in p.by_id("biases")["text"]


def test_next_characters_carry_the_state_across_chunks(monkeypatch):
    monkeypatch.setattr(diagnostics, "TEXT_CHUNK", 7)
    m = CharRNN(ModelConfig(cell="gru", vocab_size=6, hidden_size=5, num_layers=2),
                dtype=np.float64, seed=2)
    ids = np.random.default_rng(0).integers(0, 6, 40)
    rep = diagnostics.text_report(m, "x" * 40, ids, top=3)
    logp, _ = m.log_probs(ids[None])
    assert len(rep["next"]) == 40
    for row, lp in zip(rep["next"], logp[0], strict=True):
        order = np.argsort(-lp, kind="stable")[:3]
        assert [k for k, _ in row] == order.tolist()
        np.testing.assert_allclose([p for _, p in row], np.exp(lp[order]), rtol=1e-12)
    assert "next" not in diagnostics.text_report(m, "x" * 40, ids)  # inspect --json unchanged
