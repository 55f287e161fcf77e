"""`charrnn eval`: exact agreement with training's validation loss, the evaluation layout,
unknown characters, --json, stdout/stderr, and its errors."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from charrnn import checkpoint, display, evaluation
from charrnn.cli import main
from charrnn.data import read_corpus, split_train_val, validation_chars

ROOT = Path(__file__).resolve().parents[1]
SONNETS = ROOT / "corpora" / "sonnets.txt"
TINY = ["--hidden-size", "8", "--num-layers", "2", "--batch-size", "4", "--seq-len", "16"]


def run(args, env=None, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GRU trained on 20,000 characters with a quarter held out: the validation text
    (5,000 characters) is long enough to be scored as two parallel streams."""
    folder = tmp_path_factory.mktemp("eval")
    corpus = folder / "corpus.txt"
    corpus.write_text(SONNETS.read_text()[:20000])
    out = folder / "m.npz"
    r = run(["train", corpus, "-o", out, *TINY, "--cell", "gru", "--max-steps", "9",
             "--eval-every", "3", "--val-frac", "0.25"])
    assert r.exit_code == 0, r.output
    return out, corpus


def _val_tail(corpus: Path, val_frac: float) -> str:
    text = read_corpus([corpus]).text
    return text[len(text) - validation_chars(len(text), val_frac):]


def test_eval_of_the_validation_tail_equals_training(trained, tmp_path):
    out, corpus = trained
    ck = checkpoint.load(out)
    tail = tmp_path / "val.txt"
    tail.write_text(_val_tail(corpus, 0.25))
    ids = read_corpus([corpus]).ids
    assert len(tail.read_text()) == len(split_train_val(ids, 0.25)[1]) == 5000
    assert evaluation._eval_layout(4999)[0] == 2  # the layout really has parallel streams
    r = run(["eval", out, tail, "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    best = next(row for row in ck.history if row["step"] == ck.best["step"])
    assert ck.best["val_loss"] == best["val_loss"]
    # the same layout and arithmetic; BLAS's thread count, which follows the load in both, may
    # differ, and with it the float32 sums' rounding (the text's 5,000 characters: ~1e-7)
    assert got["loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    assert got["perplexity"] == math.exp(got["loss"])
    assert got["bits_per_char"] == got["loss"] / math.log(2)
    assert got["characters"] == 5000 and got["predictions"] == 4999
    assert got["unknown"] == {"policy": "error", "count": 0, "chars": []}


def test_text_output_has_the_figures(trained, tmp_path):
    out, corpus = trained
    tail = tmp_path / "val.txt"
    tail.write_text(_val_tail(corpus, 0.25))
    r = run(["eval", out, tail])
    assert r.exit_code == 0, r.output
    loss = checkpoint.load(out).best["val_loss"]
    lines = r.stdout.splitlines()
    assert f"loss         {loss:.4f} nats/char" in lines
    assert f"perplexity   {math.exp(loss):.2f}" in lines
    assert f"bits/char    {loss / math.log(2):.3f}" in lines
    assert "5,000 characters, 4,999 predictions" in r.stdout
    assert r.stderr == ""  # no progress bar off a terminal, nothing else either


def test_short_text_equals_a_step_by_step_computation(trained, tmp_path):
    """One stream: the loss is the mean of -log p(x_{i+1} | x_0..x_i) read one at a time."""
    out, _ = trained
    text = "Shall I compare thee to a summer's day?\nThou art more lovely"
    path = tmp_path / "s.txt"
    path.write_text(text)
    model = checkpoint.load(out).model
    ids = model.vocab.encode(text).astype(np.int64)
    state, losses = model.initial_state(1), []
    for i in range(len(ids) - 1):
        logits, state, _ = model.forward(ids[None, i:i + 1], state)
        z = logits[0].astype(np.float64)
        losses.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[i + 1]])
    r = run(["eval", out, path, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["loss"] == pytest.approx(np.mean(losses), rel=1e-6)


def test_long_text_follows_the_documented_layout(trained, tmp_path):
    """S streams, each a contiguous slice scored from the zero state, the last one shorter."""
    out, corpus = trained
    text = read_corpus([corpus]).text[:9000]
    path = tmp_path / "long.txt"
    path.write_text(text)
    model = checkpoint.load(out).model
    ids = model.vocab.encode(text).astype(np.int64)
    n = len(ids) - 1
    streams = max(1, min(64, n // evaluation.EVAL_STREAM_CHARS))
    per = -(-n // streams)
    assert streams == 4
    expected = []
    for s in range(streams):
        x, y = ids[s * per:min(n, (s + 1) * per)], ids[s * per + 1:min(n, (s + 1) * per) + 1]
        lp, _ = model.log_probs(x[None])
        expected.extend(-lp[0, np.arange(len(x)), y])
    r = run(["eval", out, path, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["loss"] == pytest.approx(np.mean(expected), rel=1e-6)


def test_several_files_are_one_text(trained, tmp_path):
    out, corpus = trained
    text = read_corpus([corpus]).text[:3000]
    a, b, whole = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "whole.txt"
    a.write_text(text[:1234])
    b.write_text(text[1234:])
    whole.write_text(text)
    one = json.loads(run(["eval", out, whole, "--json"]).stdout)
    two = json.loads(run(["eval", out, a, b, "--json"]).stdout)
    assert one["loss"] == two["loss"] and two["files"] == [str(a), str(b)]
    piped = run(["eval", out, "-", "--json"], input=text)
    assert json.loads(piped.stdout)["loss"] == one["loss"]


def test_a_file_named_twice_is_noted_and_one_prediction_is_singular(trained, tmp_path):
    out, _ = trained
    two = tmp_path / "two.txt"
    two.write_text("th")
    r = run(["eval", out, two, two])
    assert r.exit_code == 0, r.output
    assert f"note: read more than once (named twice?): {two}" in r.stderr
    assert "4 characters, 3 predictions" in r.stdout
    r = run(["eval", out, two])
    assert "2 characters, 1 prediction\n" in r.stdout


def test_unknown_characters_are_an_error_listing_them(trained, tmp_path):
    out, _ = trained
    path = tmp_path / "u.txt"
    path.write_text("Shall I \x1b[31m compare €€ thee\u202e to a summer's day")
    r = run(["eval", out, path])
    assert r.exit_code == 2
    assert r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("Error: ") and "\x1b" not in line
    assert "'\\x1b' (U+001B, once)" in line and "'€' (U+20AC, 2 times)" in line
    assert "U+202E (once)" in line and "--unknown skip" in line


def test_unknown_characters_skipped_are_counted_and_reported(trained, tmp_path):
    out, _ = trained
    clean = "Shall I compare thee to a summer's day"
    path, ref = tmp_path / "u.txt", tmp_path / "ref.txt"
    path.write_text("Shall I \x1bcompare €€thee to a summer's day")
    ref.write_text(clean)
    r = run(["eval", out, path, "--unknown", "skip", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["unknown"]["count"] == 3 and got["unknown"]["policy"] == "skip"
    assert [(u["escaped"], u["count"]) for u in got["unknown"]["chars"]] == \
        [("'\\x1b'", 1), ("'€'", 2)]
    assert got["characters"] == len(clean)
    assert got["loss"] == json.loads(run(["eval", out, ref, "--json"]).stdout)["loss"]
    assert "note: left out 3 character(s)" in r.stderr and "'\\x1b' (U+001B)" in r.stderr
    text = run(["eval", out, path, "--unknown", "skip"])
    assert "skipped      3 unknown character(s): '\\x1b', '€'" in text.stdout
    assert "\x1b" not in text.stdout


@pytest.mark.parametrize("content, fragment", [
    ("", "Error: the text is empty: "),
    ("S", "Error: the text has 1 character(s); at least 2 are needed to predict one"),
    ("€€€", "Error: the text has 3 character(s) the model never saw"),
])
def test_empty_or_too_short_text(trained, tmp_path, content, fragment):
    out, _ = trained
    path = tmp_path / "t.txt"
    path.write_text(content)
    r = run(["eval", out, path])
    assert r.exit_code in (1, 2) and r.output.startswith(fragment), r.output
    assert len(r.output.strip().splitlines()) == 1
    if content == "€€€":
        r = run(["eval", out, path, "--unknown", "skip"])
        assert r.exit_code == 1
        assert "Error: the text has 0 character(s) the model knows" in r.stderr


def test_missing_model_says_how_to_train(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello")
    r = run(["eval", tmp_path / "none.npz", text])
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: no model file at {tmp_path / 'none.npz'}; train one "
                                "first, e.g. `charrnn train corpora/sonnets.txt`")


def test_missing_text_file(trained, tmp_path):
    out, _ = trained
    r = run(["eval", out, tmp_path / "nope.txt"])
    assert r.exit_code == 2
    assert r.output.strip() == f"Error: text file not found: {tmp_path / 'nope.txt'}"


def test_needs_a_text_and_a_broken_model_is_one_line(trained, tmp_path):
    out, _ = trained
    r = run(["eval", out])
    assert r.exit_code == 2 and "Missing argument" in r.output
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    text = tmp_path / "t.txt"
    text.write_text("hello")
    r = run(["eval", bad, text])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "Traceback" not in r.output


def test_progress_bar_only_on_a_terminal():
    term = Console(file=io.StringIO(), force_terminal=True, width=80)
    with display.eval_progress(term, 100) as update:
        assert callable(update)
        update(50, 100)
        update(100, 100)
    assert "evaluating" in term.file.getvalue()
    pipe = Console(file=io.StringIO(), force_terminal=False)
    with display.eval_progress(pipe, 100) as update:
        assert update is None
    with display.eval_progress(None, 100) as update:
        assert update is None
    assert pipe.file.getvalue() == ""


def test_progress_callback_reaches_the_end(trained):
    out, corpus = trained
    model = checkpoint.load(out).model
    ids = read_corpus([corpus]).ids[:6000]
    seen = []
    evaluation.evaluation_losses(model, ids, lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5999, 5999) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_bar_on_a_real_terminal_and_figures_on_stdout(trained, tmp_path):
    """stderr a terminal (a pty), stdout a pipe: the bar goes to the one, figures to the other."""
    import os
    import select
    import subprocess
    import sys

    out, corpus = trained
    big = tmp_path / "big.txt"
    big.write_text(read_corpus([corpus]).text * 2)  # 40,000 characters: over the threshold
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "eval", str(out), str(big)],
                         stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    stdout, _ = p.communicate(timeout=120)
    err = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the other end is closed
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert p.returncode == 0
    assert b"evaluating" in err and b"%" in err
    assert b"\x1b" not in stdout and stdout.decode().splitlines()[2].startswith("loss ")


def test_a_diverged_loss_shows_an_infinite_perplexity():
    from charrnn.diagnostics import figures
    from charrnn.display.base import loss_text, ppl

    assert figures(1.0)["perplexity"] == math.e
    assert figures(709.0)["perplexity"] == math.exp(709.0)
    assert figures(3.4e30)["perplexity"] is None  # exp overflows; JSON has no inf
    assert ppl(700.0) == f"{math.exp(700.0):.2e}" and ppl(710.0) == "inf"
    assert ppl(3.4e30) == "inf" and ppl(math.nan) == "-"
    assert loss_text(1.23456) == "1.2346" and loss_text(3.4e30) == "3.4000e+30"


def test_gate_biases_of_a_saturated_model_without_warnings():
    import warnings

    from charrnn.config import ModelConfig
    from charrnn.diagnostics import gate_biases
    from charrnn.model import CharRNN

    m = CharRNN(ModelConfig(cell="lstm", vocab_size=4, hidden_size=3, num_layers=1))
    m.params["layers.0.b"][:] = -1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = gate_biases(m)
    assert [r["resting"] for r in rows if r["gate"] != "g"] == [0.0, 0.0, 0.0]
