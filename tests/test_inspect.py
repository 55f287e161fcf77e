"""`charrnn inspect`: summary, training record, loss chart, diagnostics, vocabulary, text views,
--json, escaping of hostile model files, NO_COLOR, and its errors."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console

import charrnn
from charrnn import checkpoint, diagnostics, display
from charrnn.cli import main
from charrnn.config import ModelConfig
from charrnn.data import StreamBatches, Vocab, escape_char, read_corpus, split_train_val
from charrnn.display import text_view
from charrnn.model import CharRNN

ROOT = Path(__file__).resolve().parents[1]
SONNETS = ROOT / "corpora" / "sonnets.txt"
TINY = ["--cell", "lstm", "--dropout", "0", "--hidden-size", "8", "--num-layers", "2",
        "--batch-size", "4", "--seq-len", "16"]
SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own color/style sequences


def run(args, env=None, input=None):
    env = {"COLUMNS": "160", **(env or {})}  # wide enough that long paths stay on one line
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained through the CLI: 8 steps, evaluated every 4."""
    folder = tmp_path_factory.mktemp("inspect")
    corpus = folder / "text.txt"
    corpus.write_text(SONNETS.read_text()[:6000])
    out = folder / "m.npz"
    r = run(["train", corpus, "-o", out, *TINY, "--max-steps", "8", "--eval-every", "4"])
    assert r.exit_code == 0, r.output
    return out


def inspect_json(*args, env=None):
    r = run(["inspect", *args, "--json"], env=env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ----------------------------------------------------------------------------- summary

def test_summary_names_the_file_network_and_every_tensor(trained):
    r = run(["inspect", trained])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(trained)
    out = r.stdout
    assert str(trained) in out and f"{trained.stat().st_size:,} bytes" in out
    assert f"charrnn model format {checkpoint.FORMAT_VERSION}" in out
    assert "charrnn 0.1.0" in out and "float32" in out
    assert "LSTM: 2 layer(s) x 8 units" in out and f"vocabulary {len(ck.model.vocab)}" in out
    assert f"{ck.model.num_parameters:,}" in out
    for name, p in ck.model.params.items():
        line = next(ln for ln in out.splitlines() if f" {name} " in ln)
        assert " x ".join(map(str, p.shape)) in line and f"{p.size:,}" in line
        assert f"{float(np.asarray(p, np.float64).std()):.3f}" in line


def test_json_parameters_match_numpy_on_the_loaded_arrays(trained):
    doc = inspect_json(trained)
    ck = checkpoint.load(trained)
    assert doc["model"] == {"cell": "lstm", "num_layers": 2, "hidden_size": 8,
                            "vocab_size": len(ck.model.vocab), "dropout": 0.0,
                            "parameters": ck.model.num_parameters}
    assert doc["file"]["size"] == trained.stat().st_size
    assert doc["file"]["format_version"] == checkpoint.FORMAT_VERSION
    assert doc["file"]["dtype"] == "float32"
    assert [t["name"] for t in doc["tensors"]] == list(ck.model.params)
    assert sum(t["count"] for t in doc["tensors"]) == doc["model"]["parameters"]
    for t in doc["tensors"]:
        a = ck.model.params[t["name"]].astype(np.float64)
        assert t["shape"] == list(a.shape) and t["count"] == a.size
        np.testing.assert_allclose([t["mean"], t["std"], t["min"], t["max"]],
                                   [a.mean(), a.std(), a.min(), a.max()], rtol=1e-12)
        assert t["nan"] == 0 and t["inf"] == 0


def test_tensor_stats_count_non_finite_values_and_skip_them():
    stats = diagnostics.tensor_stats({"w": np.array([1.0, np.nan, 3.0, np.inf, -np.inf])})
    assert stats[0]["nan"] == 1 and stats[0]["inf"] == 2
    assert stats[0]["mean"] == 2.0 and stats[0]["min"] == 1.0 and stats[0]["max"] == 3.0


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("chars,val_frac,B,T,windows", [
    (6000, 0.1, 4, 16, 84),  # 5,400 training characters: 1,349 columns per stream
    (1000, 0.25, 3, 7, 35),  # 250.5 rounds to 250 held out
    (10, 0.25, 2, 3, 1),  # 2.5 rounds up: 3 held out, 7 kept
    (100, 0.0, 1, 99, 1),
    (5, 0.5, 1, 2, 0),  # 2 training characters: not one window of 2
])
def test_steps_per_epoch_is_how_training_cuts_the_corpus(chars, val_frac, B, T, windows):
    assert diagnostics.steps_per_epoch(chars, val_frac, B, T) == windows
    if windows:
        train_ids, _ = split_train_val(np.arange(chars), val_frac)
        assert len(StreamBatches(train_ids, B, T)) == windows


def test_training_record_in_json_and_tables(trained):
    doc = inspect_json(trained)
    ck = checkpoint.load(trained)
    t, cfg = doc["training"], ck.resume.train_config
    assert t["steps"] == ck.resume.step == 8
    assert t["chars_seen"] == 8 * cfg.batch_size * cfg.seq_len
    assert t["seconds"] == pytest.approx(ck.resume.elapsed)
    assert t["chars_per_s"] == pytest.approx(t["chars_seen"] / ck.resume.elapsed)
    train_ids, _ = split_train_val(read_corpus([trained.parent / "text.txt"]).ids, cfg.val_frac)
    per_epoch = len(StreamBatches(train_ids, cfg.batch_size, cfg.seq_len))
    assert t["epochs"] == pytest.approx(ck.resume.epoch + ck.resume.window / per_epoch)
    assert t["final_train_loss"] == ck.history[-1]["train_loss"]
    best = ck.best["val_loss"]
    assert t["best"] == {"step": ck.best["step"], "loss": best, "perplexity": math.exp(best),
                         "bits_per_char": best / math.log(2)}
    assert t["options"] == cfg.to_dict()
    assert doc["history"] == [{k: row[k] for k in ("step", "time", "train_loss", "val_loss",
                                                    "lr")} for row in ck.history]
    assert doc["corpus"] == {k: ck.corpus[k] for k in ("name", "size", "sha256", "chars")}

    out = run(["inspect", trained]).stdout
    assert "steps" in out and "8 (epoch" in out
    assert f"{t['chars_seen']:,}" in out and "chars/s" in out
    assert f"{best:.4f} nats/char (perplexity {math.exp(best):.2f}" in out
    assert f"{best / math.log(2):.3f} bits/char" in out
    assert "adam lr 0.004 cosine, batch 4 x seq-len 16, clip 5" in out
    assert "text.txt" in out and ck.corpus["sha256"][:40] in out.replace("\n", "")


def test_library_saved_model_shows_what_exists(tmp_path):
    vocab = Vocab.from_text("hello world\n")
    model = CharRNN(ModelConfig(cell="gru", vocab_size=len(vocab), hidden_size=6,
                                num_layers=1), vocab=vocab, seed=1)
    path = tmp_path / "lib.npz"
    charrnn.save(model, path)
    r = run(["inspect", path])
    assert r.exit_code == 0, r.output
    assert "saved without a training run" in r.stdout and "loss history" not in r.stdout
    doc = inspect_json(path)
    assert doc["training"] is None and doc["history"] == [] and doc["corpus"] is None
    assert all(v["count"] is None for v in doc["vocab"])
    assert [g["gate"] for g in doc["diagnostics"]["gate_biases"]] == ["r", "z", "n"]
    n_row = doc["diagnostics"]["gate_biases"][2]
    assert n_row["b_hn_mean"] == pytest.approx(float(model.params["layers.0.b_hn"].mean()))
    assert n_row["resting"] is None  # n is a tanh block


# ----------------------------------------------------------------------------- chart

def _plot_rows(lines):
    """The rows of the plot area: (row index, text right of the y axis)."""
    return [(i, ln.split("┤", 1)[-1] if "┤" in ln else ln.split("│", 1)[-1])
            for i, ln in enumerate(lines) if "┤" in ln or "│" in ln]


def test_chart_has_axes_labels_and_fits_its_width():
    steps = list(range(0, 1001, 50))
    falling = [(s, 4.0 * math.exp(-s / 300) + 1.2) for s in steps]
    val = [(s, y + 0.1) for s, y in falling[::4]]
    lines = display.line_chart([("training loss", falling), ("validation loss", val)],
                               width=60, height=10)
    assert len(lines) == 10 + 3  # plot rows, x axis, x labels, legend
    assert all(cell_len(ln) <= 60 for ln in lines)
    assert lines[10].lstrip().startswith("└") and set(lines[10].strip()) == {"└", "─"}
    labels = [float(ln.split("┤")[0]) for ln in lines[:10] if "┤" in ln]
    assert len(labels) >= 3 and labels == sorted(labels, reverse=True)  # top is the largest
    assert labels[0] <= 5.2 + 1e-9 and labels[-1] >= 1.2 - 0.3
    assert lines[11].split() == ["0", "step", "1,000"]
    assert "training loss" in lines[12] and "validation loss" in lines[12]
    # one validation marker per measured point, and a braille trace for the training loss
    assert sum(ln.count("●") for ln in lines[:10]) == len(val)
    assert any(0x2800 < ord(c) <= 0x28FF for ln in lines[:10] for c in ln)


def test_falling_series_is_drawn_falling():
    series = [(s, 10.0 - s) for s in range(10)]
    lines = display.line_chart([("training loss", series)], width=50, height=8)
    rows = _plot_rows(lines[:8])
    width = max(len(text) for _, text in rows)

    def row_of(col):
        marked = [i for i, text in rows if col < len(text) and text[col] != " "]
        assert marked, col
        return min(marked)

    tops = [row_of(c) for c in range(0, width, 4)]
    assert tops[0] == 0 and tops[-1] == 7  # from the top left to the bottom right
    assert tops == sorted(tops)


def test_chart_copes_with_one_point_flat_lines_and_gaps():
    assert len(display.line_chart([("a", [(5, 2.0)])], width=40, height=5)) == 8
    flat = display.line_chart([("a", [(0, 1.0), (10, 1.0)]), ("b", [(0, None), (10, 1.0)])],
                              width=40, height=5)
    assert len(flat) == 8 and "●" in "".join(flat)
    assert display.line_chart([("a", [(0, None)])]) == ["(no losses recorded)"]
    # a loss of exactly 0 all along (a one-character text) keeps the axis at 0 and above
    zero = display.line_chart([("a", [(0, 0.0), (10, 0.0)])], width=40, height=5)
    labels = [float(ln.split("┤")[0]) for ln in zero[:5] if "┤" in ln]
    assert min(labels) >= 0 and max(labels) > 0


def test_chart_in_the_inspect_output(trained):
    out = run(["inspect", trained]).stdout
    assert "loss history (nats/char)" in out and "└" in out and "step" in out
    assert "training loss" in out and "validation loss" in out


# ----------------------------------------------------------------------------- diagnostics

def test_singular_values_match_numpy_svd(trained):
    doc = inspect_json(trained)
    model = checkpoint.load(trained).model
    H = 8
    for row in doc["diagnostics"]["recurrent"]:
        W = model.params[f"layers.{row['layer']}.W_h"].astype(np.float64)
        assert row["sigma_max"] == pytest.approx(np.linalg.svd(W)[1].max(), rel=1e-10)
        for k, g in enumerate("ifgo"):
            block = W[:, k * H:(k + 1) * H]
            assert row["gates"][g] == pytest.approx(np.linalg.svd(block)[1].max(), rel=1e-10)
    out = run(["inspect", trained]).stdout
    assert "largest singular value" in out and "vanishes" in out and "explode" in out
    sigma0 = doc["diagnostics"]["recurrent"][0]["sigma_max"]
    assert f"{sigma0:.3f}" in out


def test_rnn_spectrum_is_the_whole_matrix_and_has_no_gates():
    m = CharRNN(ModelConfig(cell="rnn", vocab_size=5, hidden_size=7, num_layers=2), seed=3)
    rec = diagnostics.recurrent_spectra(m)
    for layer, row in enumerate(rec):
        W = m.params[f"layers.{layer}.W_h"].astype(np.float64)
        assert row["sigma_max"] == pytest.approx(np.linalg.norm(W, 2)) and row["gates"] == {}
    assert diagnostics.gate_biases(m) == []


def test_lstm_gate_biases(trained):
    doc = inspect_json(trained)
    b = checkpoint.load(trained).model.params["layers.1.b"].astype(np.float64)
    rows = [g for g in doc["diagnostics"]["gate_biases"] if g["layer"] == 1]
    assert [g["gate"] for g in rows] == list("ifgo")
    for k, g in enumerate(rows):
        block = b[8 * k:8 * (k + 1)]
        assert g["mean"] == pytest.approx(block.mean()) and g["std"] == pytest.approx(block.std())
    forget = rows[1]
    assert forget["resting"] == pytest.approx(np.mean(1 / (1 + np.exp(-b[8:16]))))
    assert forget["mean"] > 0.5  # starts at 1: remember by default
    assert rows[2]["resting"] is None
    out = run(["inspect", trained]).stdout
    assert "gate biases" in out and "forget gate" in out


def test_vocabulary_with_counts_and_escapes(trained):
    doc = inspect_json(trained)
    ck = checkpoint.load(trained)
    assert [v["char"] for v in doc["vocab"]] == list(ck.model.vocab.chars)
    assert [v["count"] for v in doc["vocab"]] == ck.corpus["char_counts"]
    assert sum(v["count"] for v in doc["vocab"]) == ck.corpus["chars"]
    newline = next(v for v in doc["vocab"] if v["char"] == "\n")
    assert newline["escaped"] == "'\\n'" and newline["codepoint"] == 10
    out = run(["inspect", trained]).stdout
    assert "'\\n'" in out and "000A" in out and f"{newline['count']:,}" in out


# ----------------------------------------------------------------------------- text views

PRIME = "Shall I compare thee\nto a summer's day?"


def _digit_rows(out: str, heading: str):
    """(text lines, digit lines) of the first block of text + digit line pairs under a heading
    in NO_COLOR output."""
    lines = out.split(heading, 1)[1].splitlines()
    digit = re.compile(r"[0-9\-][0-9\- ]*")
    start = next(i for i in range(len(lines) - 1) if digit.fullmatch(lines[i + 1])
                 and not digit.fullmatch(lines[i]))
    texts, digits = [], []
    for a, b in zip(lines[start::2], lines[start + 1::2], strict=False):
        if not digit.fullmatch(b):
            break
        texts.append(a)
        digits.append(b)
    return texts, digits


def test_surprise_view_without_color_puts_digits_under_the_text(trained):
    r = run(["inspect", trained, "--prime", PRIME])
    assert r.exit_code == 0, r.output
    texts, digits = _digit_rows(r.stdout, "surprise:")
    assert texts == ["Shall I compare thee↵", "to a summer's day?"]  # newlines still break
    model = checkpoint.load(trained).model
    ids = model.vocab.encode(PRIME)
    logp, _ = model.log_probs(ids[None, :].astype(np.int64))
    bits = [-logp[0, i - 1, ids[i]] / math.log(2) for i in range(1, len(ids))]
    assert "".join(digits) == "-" + "".join(str(min(9, int(b))) for b in bits)
    assert "in whole bits" in r.stdout
    assert f"mean {float(np.mean(bits)) * math.log(2):.4f} nats/char" in r.stdout


def test_a_prime_reads_as_a_file_would_and_as_sample_reads_it(trained):
    """A byte-order mark and \\r\\n line ends in --prime (pasted from Windows) are normalised,
    as `sample` does and as a --text file is read, instead of being unknown characters."""
    doc = inspect_json(trained, "--prime", "\ufeff" + PRIME.replace("\n", "\r\n"))
    assert doc["text"]["text"] == PRIME
    assert doc["text"]["surprise"] == inspect_json(trained, "--prime", PRIME)["text"]["surprise"]


def test_surprise_json_equals_a_direct_forward_pass(trained):
    doc = inspect_json(trained, "--prime", PRIME)
    model = checkpoint.load(trained).model
    ids = model.vocab.encode(PRIME)
    logits, _, _ = model.forward(ids[None, :].astype(np.int64))
    logits = logits.astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    expected = [None] + list(lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]])
    t = doc["text"]
    assert t["text"] == PRIME and t["characters"] == len(PRIME) and t["surprise"][0] is None
    np.testing.assert_allclose(t["surprise"][1:], expected[1:], rtol=1e-6)
    assert t["loss"] == pytest.approx(np.mean(expected[1:]), rel=1e-6)


def test_long_text_is_read_in_chunks_with_the_state_carried(monkeypatch):
    monkeypatch.setattr(diagnostics, "TEXT_CHUNK", 7)
    m = CharRNN(ModelConfig(cell="gru", vocab_size=6, hidden_size=5, num_layers=2),
                dtype=np.float64, seed=2)
    ids = np.random.default_rng(0).integers(0, 6, 40)
    rep = diagnostics.text_report(m, "x" * 40, ids, neurons=[3])
    logp, _ = m.log_probs(ids[None])
    np.testing.assert_allclose(rep["surprise"][1:], -logp[0, np.arange(39), ids[1:]],
                               rtol=1e-12)
    np.testing.assert_allclose(rep["neurons"][0]["activations"],
                               m.hidden_states(ids[None])[1][0, :, 3], rtol=1e-12)


def test_neuron_view_and_top_neurons(trained, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(PRIME)
    model = checkpoint.load(trained).model
    ids = model.vocab.encode(PRIME)[None, :].astype(np.int64)
    hs = model.hidden_states(ids)
    doc = inspect_json(trained, "--text", text, "--neuron", "3", "--layer", "0",
                       "--top-neurons", "2")
    units = [n["unit"] for n in doc["text"]["neurons"]]
    var0 = hs[0][0].var(axis=0)
    top = list(np.argsort(-var0, kind="stable")[:2])
    assert units == list(dict.fromkeys([3, *top]))
    for n in doc["text"]["neurons"]:
        assert n["layer"] == 0 and n["variance"] == pytest.approx(var0[n["unit"]], rel=1e-5)
        np.testing.assert_allclose(n["activations"], hs[0][0, :, n["unit"]], rtol=1e-5,
                                   atol=1e-7)
    # default layer: the last
    doc = inspect_json(trained, "--prime", PRIME, "--top-neurons", "1")
    assert doc["text"]["layer"] == 1
    assert doc["text"]["neurons"][0]["unit"] == int(np.argmax(hs[1][0].var(axis=0)))

    r = run(["inspect", trained, "--text", text, "--neuron", "5"])
    assert r.exit_code == 0, r.output
    assert "layer 1, unit 5: activation" in r.stdout
    _, digits = _digit_rows(r.stdout, "layer 1, unit 5")
    expected = "".join(str(display.activation_level(a)) for a in hs[1][0, :, 5])
    assert "".join(digits).replace(" ", "") == expected


def test_levels():
    assert display.surprise_level(None) is None
    assert [display.surprise_level(b * math.log(2)) for b in (0, 0.99, 1, 8.5, 40)] == \
        [0, 0, 1, 8, 9]
    assert [display.activation_level(a) for a in (-1, -0.95, -0.01, 0, 0.5, 1)] == \
        [0, 0, 4, 5, 7, 9]


def test_colored_view_in_256_colors():
    tr = {"text": "ab\ncd", "characters": 5, "predictions": 4, "loss": 1.0,
          "surprise": [None, 0.1, 3.0, 6.0, 20.0], "layer": 0,
          "neurons": [{"layer": 0, "unit": 2, "variance": 0.1,
                       "activations": [-1.0, -0.5, 0.0, 0.5, 1.0]}]}
    console = Console(force_terminal=True, color_system="256", width=80, record=True,
                      file=open("/dev/null", "w"))  # noqa: SIM115
    for item in display.text_views(tr, 80, color=True):
        console.print(item)
    ansi = console.export_text(styles=True)
    plain = SGR.sub("", ansi)
    assert "ab↵\ncd" in plain and not re.search(r"^[0-9-]+$", plain, re.M)  # no digit lines
    bg = {int(n) for n in re.findall(r"48;5;(\d+)", ansi)}
    levels = [display.surprise_level(s) for s in tr["surprise"][1:]]
    assert {display.SURPRISE_BG[k] for k in levels} <= bg
    assert {display.ACTIVATION_BG[0], display.ACTIVATION_BG[9]} <= bg


@pytest.mark.parametrize("how", ["env", "flag"])
def test_no_color_gives_digits_even_on_a_terminal(trained, how):
    env = {"FORCE_COLOR": "1", "COLUMNS": "100", "TERM": "xterm-256color"}
    args = ["inspect", trained, "--prime", PRIME, "--neuron", "1"]
    colored = run(args, env=env)
    assert colored.exit_code == 0 and "\x1b[" in colored.stdout
    assert not re.search(r"^[0-9-]{10,}$", SGR.sub("", colored.stdout), re.M)
    if how == "env":
        r = run(args, env={**env, "NO_COLOR": "1"})
    else:
        r = run([*args, "--no-color"], env=env)
    assert r.exit_code == 0, r.output
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|4[0-9]|9[0-7]|10[0-7])(;|m)", r.stdout)
    texts, digits = _digit_rows(SGR.sub("", r.stdout), "surprise:")
    assert texts[0] == "Shall I compare thee↵" and len(digits) == 2


def test_long_text_is_cut_to_max_chars_with_a_note(trained, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(SONNETS.read_text()[:5000])
    r = run(["inspect", trained, "--text", text, "--max-chars", "300", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["text"]["characters"] == 300
    assert "showing the first 300 characters of the text (--max-chars)" in r.stderr
    exact = tmp_path / "exact.txt"
    exact.write_text(SONNETS.read_text()[:300])
    r = run(["inspect", trained, "--text", exact, "--max-chars", "300", "--json"])
    assert r.exit_code == 0 and "--max-chars" not in r.stderr, r.output
    assert json.loads(r.stdout)["text"]["characters"] == 300


# ----------------------------------------------------------------------------- hostile files

HOSTILE = "\x1b[31m\x00\u202e[bold]x[/bold]\x9b\x07"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A model trained on text holding ESC, NUL, U+202E, C1 CSI, BEL and markup, saved with a
    corpus name made of escapes and markup."""
    folder = tmp_path_factory.mktemp("hostile")
    corpus = folder / "evil[bold]\x1b[2J.txt"
    corpus.write_text((SONNETS.read_text()[:1500] + HOSTILE) * 2)
    out = folder / "h.npz"
    r = run(["train", corpus, "-o", out, *TINY, "--max-steps", "2", "--eval-every", "2"])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(out)
    facts = dict(ck.corpus, name="\x1b]0;owned\x07[red]evil[/red]\u202e\n",
                 sha256="\x1b[2J[blink]")
    checkpoint.save(out, ck.model, resume=ck.resume, history=ck.history, corpus=facts,
                    best=ck.best)
    return out


def _no_raw_controls(text: str) -> None:
    for bad in ("\x1b", "\x00", "\u202e", "\x9b", "\x07"):
        assert bad not in text, repr(bad)


@pytest.mark.parametrize("color", [False, True])
def test_hostile_vocabulary_and_names_are_shown_escaped(hostile, color):
    env = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "120"} if color else None
    r = run(["inspect", hostile, "--prime", "[bold]x\x1b[/bold]", "--top-neurons", "1"],
            env=env)
    assert r.exit_code == 0, r.output
    out = SGR.sub("", r.stdout) if color else r.stdout
    _no_raw_controls(out)
    for shown in ("'\\x1b'", "'\\x00'", "U+202E", "'\\x9b'", "'\\x07'", "'['", "']'"):
        assert shown in out, shown
    assert "[red]evil[/red]" in out and "\\x1b]0;owned\\x07" in out  # markup shown literally
    assert "\\x1b[2J[blink]" in out
    assert "[bold]x\\x1b[/bold]" in out  # the prime in the text view, escaped, markup literal


def test_hostile_json_is_escaped(hostile):
    r = run(["inspect", hostile, "--json", "--prime", "x\x1b"])
    assert r.exit_code == 0, r.output
    _no_raw_controls(r.stdout)
    doc = json.loads(r.stdout)
    assert doc["corpus"]["name"].startswith("\x1b]0;owned")  # the data itself, intact
    chars = {v["char"]: v["escaped"] for v in doc["vocab"]}
    assert chars["\u202e"] == "U+202E" and chars["\x1b"] == escape_char("\x1b") == "'\\x1b'"


# ----------------------------------------------------------------------------- errors

def test_missing_model_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["inspect"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: no model file at model.npz; train one first, e.g. "
        "`charrnn train corpora/sonnets.txt`"]


def test_model_from_the_environment(trained):
    r = run(["inspect", "--json"], env={"CHARRNN_MODEL": str(trained)})
    assert r.exit_code == 0 and json.loads(r.stdout)["file"]["path"] == str(trained)


@pytest.mark.parametrize("args, code, fragment", [
    (["--neuron", "8", "--prime", "ab"], 2, "unit 8 does not exist"),
    (["--layer", "2", "--prime", "ab"], 2, "layers 0 to 1"),
    (["--neuron", "1"], 2, "need --text or --prime"),
    (["--prime", "ab", "--text", "x.txt"], 2, "not both"),
    (["--text", "missing.txt"], 2, "text file not found: missing.txt"),
    (["--prime", "ab\u20ac\x1b"], 2, "'\\x1b' (U+001B, once), '€' (U+20AC, once)"),
])
def test_bad_usage_is_one_clear_error(trained, args, code, fragment):
    r = run(["inspect", trained, *args])
    assert r.exit_code == code, r.output
    assert fragment in r.output and "Traceback" not in r.output


def test_unknown_prime_characters_can_be_skipped(trained):
    r = run(["inspect", trained, "--prime", "Sha\u20acll", "--unknown", "skip", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["text"]["text"] == "Shall"
    assert "'€' (U+20AC)" in r.stderr


def test_empty_text_file(trained, tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("")
    r = run(["inspect", trained, "--text", empty])
    assert r.exit_code == 1 and r.output.strip() == "Error: the text is empty: e.txt"


def test_empty_prime_or_nothing_known(trained):
    r = run(["inspect", trained, "--prime", ""])
    assert r.exit_code == 1 and r.output.strip() == "Error: the prime is empty"
    r = run(["inspect", trained, "--prime", "\u20ac\u20ac", "--unknown", "skip"])
    assert r.exit_code == 1 and "Error: the prime has no characters the model knows" in r.stderr


def test_zero_width_and_wide_characters_keep_the_digits_aligned():
    text = "e\u0301\u4e2d\tz"  # a combining accent, a wide CJK character, a tab
    out = display.colored_text(text, [None, 1, 2, 3, 4], display.SURPRISE_BG,
                               text_view._DARK_SURPRISE, 40, color=False).plain.splitlines()
    assert out[0] == "eU+0301\u4e2d→z"
    assert out[1] == "-1" + " " * 5 + "2 34"
    assert cell_len(out[0]) == cell_len(out[1])


def test_redirected_output_is_wide_enough_for_the_tables(tmp_path):
    """Written to a file or pipe (no terminal, no COLUMNS), the default 2x256 model's tables
    show whole figures: rich's 80 columns would cut them short with an ellipsis."""
    vocab = Vocab.from_text(SONNETS.read_text()[:3000])
    path = tmp_path / "big.npz"
    charrnn.save(CharRNN(ModelConfig(vocab_size=len(vocab)), vocab=vocab), path)
    r = CliRunner().invoke(main, ["inspect", str(path)], env={"COLUMNS": None})
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 120


def test_a_one_character_text_has_nothing_to_predict(trained):
    r = run(["inspect", trained, "--prime", "W"])
    assert r.exit_code == 0, r.output
    assert "1 character, nothing to predict: the first character has no context" in r.stdout
    assert "mean -" not in r.stdout


@pytest.mark.parametrize("view", [["--json"], [], ["--html", "page.html"]])
def test_the_text_and_the_weights_are_read_on_one_blas_thread(trained, tmp_path, monkeypatch,
                                                              view):
    from charrnn import blas

    counts, box = [], {"n": 2}
    monkeypatch.setattr(blas, "_FOUND", [blas.OpenBLAS(lambda: box["n"],
                                                       lambda n: box.update(n=n))])
    read, spectra = CharRNN.read, diagnostics.recurrent_spectra
    monkeypatch.setattr(CharRNN, "read",
                        lambda self, *a, **k: (counts.append(box["n"]), read(self, *a, **k))[1])
    monkeypatch.setattr(diagnostics, "recurrent_spectra",
                        lambda model: (counts.append(box["n"]), spectra(model))[1])
    text = tmp_path / "t.txt"
    text.write_text(SONNETS.read_text()[:3000])
    view = [str(tmp_path / v) if v.endswith(".html") else v for v in view]
    r = run(["inspect", trained, "--text", text, *view])
    assert r.exit_code == 0, r.output
    assert counts and set(counts) == {1} and box["n"] == 2
