"""`charrnn train`: behaviour, bad input, checkpoints, exact resume, reproducibility."""

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint
from charrnn.cli import main
from charrnn.data import validation_chars
from charrnn.model import CharRNN

ROOT = Path(__file__).resolve().parents[1]
SONNETS = ROOT / "corpora" / "sonnets.txt"
TINY = ["--hidden-size", "16", "--num-layers", "2", "--batch-size", "4", "--seq-len", "16"]


def run(args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(SONNETS.read_text()[:6000])
    return path


def train(corpus, out, *extra):
    return run(["train", corpus, "-o", out, *TINY, *extra])


def test_trains_and_saves_a_loadable_model(corpus, tmp_path):
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--max-steps", "12", "--eval-every", "5")
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(out)
    assert ck.resume.step == 12
    assert [row["step"] for row in ck.history] == [5, 10, 12]
    assert all(row["val_loss"] > 0 for row in ck.history)
    assert ck.best["val_loss"] == min(row["val_loss"] for row in ck.history)
    assert ck.corpus["sha256"] and ck.corpus["size"] == corpus.stat().st_size
    # plain log mode (not a terminal): figures as lines, then the summary
    assert "step 12/12" in r.output and "best validation" in r.output
    assert "charrnn sample -m" in r.output


def test_loss_falls_on_real_text(tmp_path):
    out = tmp_path / "m.npz"
    r = run(["train", SONNETS, "-o", out, "--hidden-size", "64", "--max-steps", "300",
             "--eval-every", "100", "--seq-len", "32", "--lr-schedule", "constant"])
    assert r.exit_code == 0, r.output
    vals = [row["val_loss"] for row in checkpoint.load(out).history]
    # from the unigram plateau (~3.1 nats) to words: well below it after 300 steps
    assert vals[0] > vals[1] > vals[2] and vals[-1] < 2.6


@pytest.mark.parametrize("options, message", [
    ({"train_options": {"max_step": 5}}, "train_options has no option 'max_step'; it takes "
                                         "batch_size, epochs"),
    ({"model_options": {"hidden": 8}}, "model_options has no option 'hidden'; it takes cell, "
                                       "dropout, hidden_size, num_layers"),
    ({"model_options": {"vocab_size": 8}}, "model_options has no option 'vocab_size'")])
def test_the_library_names_an_unknown_option(corpus, tmp_path, options, message):
    from charrnn import read_corpus
    from charrnn import train as train_function
    from charrnn.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        train_function(read_corpus(corpus), tmp_path / "m.npz", **options)
    assert not (tmp_path / "m.npz").exists()


def test_refuses_to_overwrite_before_any_work(corpus, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"precious")
    r = train(corpus, out, "--max-steps", "2")
    assert r.exit_code == 2
    assert "already exists" in r.output and "--resume" in r.output and "--force" in r.output
    assert out.read_bytes() == b"precious"
    r = train(corpus, out, "--max-steps", "2", "--force")
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).resume.step == 2


def test_never_writes_over_its_corpus_a_device_or_a_pipe_even_with_force(corpus, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    text = folder / "copy.txt"
    text.write_text(corpus.read_text())
    (tmp_path / "link.npz").symlink_to(text)
    for source, out in ((text, text), (text, tmp_path / "link.npz"), (folder, text)):
        r = train(source, out, "--max-steps", "2", "--force")
        assert r.exit_code == 2 and "is a file of the corpus" in r.output, r.output
    with open(text, "rb") as stdin:  # on standard input: `train - -o copy.txt < copy.txt`
        done = subprocess.run([sys.executable, "-m", "charrnn", "train", "-", "-o", str(text),
                               *TINY, "--max-steps", "2", "--force"], stdin=stdin,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is a file of the corpus" in done.stderr, done.stderr
    assert text.read_text() == corpus.read_text()
    r = train(tmp_path / "missing.txt", text, "--force")  # still the usual error
    assert r.exit_code == 2 and "corpus file not found" in r.output, r.output
    os.mkfifo(tmp_path / "pipe.npz")
    (tmp_path / "null.npz").symlink_to("/dev/null")
    for name in ("pipe.npz", "null.npz"):
        r = train(corpus, tmp_path / name, "--max-steps", "2", "--force")
        assert r.exit_code == 2 and "not a regular file" in r.output, r.output
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.npz").st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def _interrupt_after(monkeypatch, steps):
    """Make the run's Ctrl-C flag read as pressed after `steps` training steps."""
    from charrnn.cli import train as train_command

    polls = {"n": 0}

    def pressed(self):
        polls["n"] += 1
        return polls["n"] > steps

    monkeypatch.setattr(train_command._StopFlag, "__call__", pressed)


@pytest.mark.parametrize("cell,stop,threads", [("rnn", 10, 1), ("gru", 10, 1), ("lstm", 10, 2),
                                               ("lstm", 7, 1)])
def test_resume_is_bit_exact(corpus, tmp_path, cell, stop, threads, monkeypatch):
    """A run of N steps equals the same command stopped (Ctrl-C) after some steps and re-run
    with --resume — bit for bit, dropout, cosine schedule and all, on the same pinned thread
    count; stopped between two evaluations, the history, the best weights and --patience's
    count are those of the run never stopped."""
    common = ["--cell", cell, "--dropout", "0.2", "--eval-every", "5", "--seed", "7",
              "--max-steps", "20", "--patience", "3", "--threads", str(threads)]
    whole, half = tmp_path / "whole.npz", tmp_path / "half.npz"
    assert train(corpus, whole, *common).exit_code == 0
    with monkeypatch.context() as m:
        _interrupt_after(m, stop)
        r = train(corpus, half, *common)
    assert r.exit_code == 130, r.output
    assert "--resume" in r.output and checkpoint.load(half).resume.step == stop
    assert [row["step"] for row in checkpoint.load(half).history] == list(range(5, stop + 1, 5))
    r = train(corpus, half, *common, "--resume")
    assert r.exit_code == 0, r.output
    a, b = checkpoint.load(whole), checkpoint.load(half)
    assert a.resume.step == b.resume.step == 20
    for k in a.model.params:
        np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
        np.testing.assert_array_equal(a.resume.params[k], b.resume.params[k])
    for k in a.resume.optimizer_state:
        np.testing.assert_array_equal(a.resume.optimizer_state[k], b.resume.optimizer_state[k])
    np.testing.assert_array_equal(a.resume.hidden, b.resume.hidden)
    assert a.resume.rng_state == b.resume.rng_state
    # the one figure a stop between evaluations changes: the first training-loss average after
    # the resume covers the steps since the resume only (the losses before it are not saved)
    cut = stop + (-stop) % 5
    kept = lambda h: [{k: v for k, v in row.items()  # noqa: E731
                       if k != "time" and not (k == "train_loss" and row["step"] == cut
                                               and cut != stop)} for row in h]
    assert kept(a.history) == kept(b.history)
    assert a.best == b.best


def test_epochs_cross_and_resume_finishes_the_run(corpus, tmp_path):
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--epochs", "2", "--eval-every", "1000")
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(out)
    per_epoch = (6000 - validation_chars(6000, 0.1) - 1) // 4 // 16
    assert ck.resume.step == 2 * per_epoch and ck.resume.epoch == 2 and ck.resume.window == 0
    r = run(["train", corpus, "-o", out, "--resume"])
    assert r.exit_code == 0 and checkpoint.load(out).resume.step == 2 * per_epoch


def test_a_time_limit_holds_for_its_own_invocation_only(corpus, tmp_path):
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--max-steps", "2", "--max-time", "1h")
    assert r.exit_code == 0, r.output
    assert "time limit 1:00:00" in r.output
    assert checkpoint.load(out).resume.train_config.max_time == 3600
    r = run(["train", corpus, "-o", out, "--resume", "--max-steps", "4"])
    assert r.exit_code == 0, r.output
    assert "time limit" not in r.output and "resuming at step 2" in r.output
    assert checkpoint.load(out).resume.train_config.max_time == 0
    r = run(["train", corpus, "-o", out, "--resume", "--max-steps", "6", "--max-time", "30s"])
    assert r.exit_code == 0 and "time limit 0:30" in r.output


def test_a_resumed_run_shows_its_last_validation_from_the_first_line(corpus, tmp_path):
    out = tmp_path / "m.npz"
    assert train(corpus, out, "--max-steps", "4", "--eval-every", "2").exit_code == 0
    ck = checkpoint.load(out)
    last, best = ck.history[-1]["val_loss"], ck.best
    r = run(["train", corpus, "-o", out, "--resume", "--max-steps", "6"])
    assert r.exit_code == 0, r.output
    first = next(line for line in r.output.splitlines() if line.startswith("step 5/6"))
    assert f"val {last:.4f}" in first and f"best {best['val_loss']:.4f} @{best['step']}" in first


def test_resume_refuses_a_different_model_or_corpus(corpus, tmp_path):
    out = tmp_path / "m.npz"
    assert train(corpus, out, "--max-steps", "3").exit_code == 0
    r = run(["train", corpus, "-o", out, "--resume", "--hidden-size", "32"])
    assert r.exit_code == 2 and "--hidden-size 32 (model has 16)" in r.output
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[:-100])
    r = run(["train", other, "-o", out, "--resume"])
    assert r.exit_code == 2 and "corpus" in r.output
    r = run(["train", corpus, "-o", out, "--resume", "--lr", "0.001", "--max-steps", "5"])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).resume.train_config.lr == 0.001


def test_same_seed_same_model(corpus, tmp_path):
    a, b, c = (tmp_path / f"{n}.npz" for n in "abc")
    for out, seed in ((a, 1), (b, 1), (c, 2)):  # on a pinned count: the same bits
        assert train(corpus, out, "--max-steps", "6", "--seed", seed, "--threads", "1"
                     ).exit_code == 0
    la, lb, lc = (checkpoint.load(p) for p in (a, b, c))
    for k in la.model.params:
        np.testing.assert_array_equal(la.model.params[k], lb.model.params[k])
    assert not np.array_equal(la.model.params["head.W"], lc.model.params["head.W"])


def test_small_corpus_adapts_batch_and_validation(tmp_path):
    text = tmp_path / "small.txt"
    text.write_text("to be or not to be, that is the question\n" * 3)
    out = tmp_path / "m.npz"
    r = run(["train", text, "-o", out, "--max-steps", "3", "--hidden-size", "8"])
    assert r.exit_code == 0, r.output
    assert "using --batch-size 1 instead of 32" in r.output
    assert checkpoint.load(out).resume.train_config.batch_size == 1


def test_tiny_corpus_shrinks_the_window_and_says_so(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("hello world")  # 11 characters, no room for validation
    out = tmp_path / "m.npz"
    r = run(["train", text, "-o", out, "--max-steps", "3", "--hidden-size", "8"])
    assert r.exit_code == 0, r.output
    assert "fewer than one window of --seq-len 64 + 1: using --seq-len 10" in r.output
    assert "training without validation" in r.output
    config = checkpoint.load(out).resume.train_config
    assert (config.seq_len, config.batch_size) == (10, 1)
    one = tmp_path / "one.txt"
    one.write_text("a")
    r = run(["train", one, "-o", tmp_path / "one.npz"])
    assert r.exit_code == 1 and "at least 2 are needed" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "one.npz").exists()


def test_a_folder_names_its_files_and_the_binary_ones_left_out(corpus, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    text = corpus.read_text()
    (folder / "a.txt").write_text(text[:3000])
    (folder / "b.txt").write_text(text[3000:])
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    r = run(["train", folder, "-o", tmp_path / "m.npz", *TINY, "--max-steps", "1"])
    assert r.exit_code == 0, r.output
    assert f"note: left out 1 file(s) that look binary: {folder / 'c.png'}" in r.output
    assert "corpus 2 files (a.txt, b.txt):" in r.output
    assert "more than once" not in r.output
    r = run(["train", folder, folder / "a.txt", "-o", tmp_path / "m2.npz", *TINY,
             "--max-steps", "1"])
    assert r.exit_code == 0, r.output
    assert f"note: read more than once (named twice?): {folder / 'a.txt'}" in r.output


def test_reads_stdin_and_directories(corpus, tmp_path):
    out = tmp_path / "m.npz"
    r = run(["train", "-", "-o", out, *TINY, "--max-steps", "2"], input=corpus.read_text())
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).corpus["name"] == "<stdin>"
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text(corpus.read_text()[3000:])
    (folder / "a.txt").write_text(corpus.read_text()[:3000])
    r = run(["train", folder, "-o", out, *TINY, "--max-steps", "2", "--force"])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).corpus["sha256"] == checkpoint.load(out).corpus["sha256"]


@pytest.mark.parametrize("args, code, message", [
    (["missing.txt"], 2, "not found"),
    (["--hidden-size", "0"], 2, "--hidden-size"),
    (["--dropout", "1.5"], 2, "--dropout"),
    (["--lr", "-1"], 2, "--lr"),
    (["--max-time", "5x"], 2, "duration"),
    (["-o", "no/such/folder/m.npz"], 2, "does not exist"),
    (["-o", "{corpus}/m.npz"], 2, "text.txt is not a folder"),
    (["--grad-clip", "inf"], 2, "a finite number >= 0 (0: no clipping), not inf"),
    (["--weight-decay", "-0.1"], 2, "--weight-decay"),
    (["--weight-decay", "nan"], 2, "--weight-decay must be a finite number >= 0 (0: no decay)"),
])
def test_bad_input_is_one_clear_line(corpus, tmp_path, args, code, message):
    args = [a.format(corpus=corpus) for a in args]
    if args[0] != "missing.txt":
        args = [corpus, *args]
    if "-o" not in args:  # never the working folder's model.npz
        args += ["-o", tmp_path / "m.npz"]
    r = run(["train", *args])
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not list(tmp_path.glob("*.npz"))


def test_empty_corpus_and_bad_bytes(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\xef\xbb\xbf")
    r = run(["train", empty, "-o", tmp_path / "m.npz"])
    assert r.exit_code == 1 and "empty" in r.output
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello " * 100 + b"\xff world")
    r = run(["train", bad, "-o", tmp_path / "m.npz"])
    assert r.exit_code == 1 and "offset 600" in r.output and "--encoding" in r.output
    r = run(["train", bad, "-o", tmp_path / "m.npz", "--encoding", "latin-1", *TINY,
             "--max-steps", "1"])
    assert r.exit_code == 0, r.output
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert run(["train", empty_dir, "-o", tmp_path / "x.npz"]).exit_code == 2


def test_unwritable_folder_is_refused_before_training(corpus, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        r = train(corpus, folder / "m.npz")
        assert r.exit_code == 2 and "not writable" in r.output
    finally:
        folder.chmod(0o700)


def test_divergence_stops_without_applying_the_update(corpus, tmp_path, monkeypatch):
    out = tmp_path / "m.npz"
    assert train(corpus, out, "--max-steps", "4", "--eval-every", "2").exit_code == 0
    before = out.read_bytes()
    good = checkpoint.load(out).resume.params
    real = CharRNN.loss_and_grad
    calls = []

    def poisoned(self, *args, **kw):  # the third step's gradient overflows
        loss, grads, state = real(self, *args, **kw)
        calls.append(1)
        if len(calls) == 3:
            grads["layers.1.W_h"][0, 0] = np.inf
        return loss, grads, state

    monkeypatch.setattr(CharRNN, "loss_and_grad", poisoned)
    r = run(["train", corpus, "-o", out, "--resume", "--max-steps", "50", "--eval-every", "100"])
    assert r.exit_code == 1, r.output
    assert "diverged at step 7" in r.output and "gradient norm is inf" in r.output
    assert f"{out} (step 4) is intact" in r.output and "Traceback" not in r.output
    assert out.read_bytes() == before
    for k, v in checkpoint.load(out).resume.params.items():
        np.testing.assert_array_equal(v, good[k])


def _start(tmp_path, out, *extra):
    corpus = tmp_path / "big.txt"
    corpus.write_text(SONNETS.read_text())
    cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "-o", str(out),
           "--hidden-size", "32", "--eval-every", "3", "--seq-len", "32", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)


def _wait_for(path, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_ctrl_c_saves_and_exits_130(tmp_path):
    out = tmp_path / "m.npz"
    proc = _start(tmp_path, out)
    _wait_for(out, proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    ck = checkpoint.load(out)
    assert ck.resume.step >= 3


def test_sigterm_saves_where_it_stopped_and_exits_143(tmp_path):
    out = tmp_path / "m.npz"
    proc = _start(tmp_path, out, "--eval-every", "1000000")  # no save before the signal
    while "step " not in proc.stderr.readline():  # the first progress line: training runs
        assert proc.poll() is None
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "another SIGTERM" in err and "Traceback" not in err
    resume = next(line for line in err.splitlines() if line.startswith("resume with: charrnn "))
    assert resume.endswith(" --resume")  # the whole command on one line, to be copied
    assert checkpoint.load(out).resume.step >= 1


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_quits_at_once_with_that_signals_exit_code(sig, code, capsys):
    from charrnn import display
    from charrnn.cli.common import errors_to_exit, interrupt_message
    from charrnn.cli.train import _StopFlag

    flag = _StopFlag(display.make_console(no_color=True))
    assert not flag()
    flag._handle(sig, None)  # the first: stop after the step and save
    assert flag() and flag.exit_code == code
    with pytest.raises(SystemExit) as exit_, errors_to_exit(), \
            interrupt_message("interrupted; files are as they were"):
        flag._handle(sig, None)  # the second: at once
    assert exit_.value.code == code
    assert "Error: interrupted; files are as they were" in capsys.readouterr().err


def test_killed_at_random_moments_leaves_a_complete_file(tmp_path):
    out = tmp_path / "m.npz"
    rng = np.random.default_rng(0)
    proc = _start(tmp_path, out)
    _wait_for(out, proc)
    steps = []
    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL):
        time.sleep(float(rng.uniform(0.1, 1.5)))
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        steps.append(checkpoint.load(out).resume.step)  # always a complete, loadable file
        proc = _start(tmp_path, out, "--resume")
    proc.kill()
    proc.communicate()
    assert steps == sorted(steps)
    # a clean finish also sweeps the temporary files the killed saves left behind
    step = checkpoint.load(out).resume.step
    proc = _start(tmp_path, out, "--resume", "--max-steps", str(step + 3))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert checkpoint.load(out).resume.step == step + 3
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_patience_stops_early_and_keeps_the_best_weights(corpus, tmp_path, monkeypatch):
    from charrnn import training

    short = tmp_path / "short.npz"
    # the same rate and dropout whatever the step limit (a chosen dropout depends on it), and
    # the same pinned thread count: the same bits
    constant = ["--lr-schedule", "constant", "--dropout", "0.1", "--threads", "1"]
    assert train(corpus, short, "--max-steps", "4", "--eval-every", "2", *constant).exit_code == 0
    losses = iter([3.0, 2.5, 2.6, 2.7, 2.8, 2.9])
    monkeypatch.setattr(training, "evaluate", lambda model, ids: next(losses))
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--max-steps", "100", "--eval-every", "2", "--patience", "2",
              *constant)
    assert r.exit_code == 0, r.output
    assert "stopped early" in r.output
    ck = checkpoint.load(out)
    assert [row["val_loss"] for row in ck.history] == [3.0, 2.5, 2.6, 2.7]
    assert ck.resume.step == 8 and ck.best == {"step": 4, "val_loss": 2.5}
    best_at_4 = checkpoint.load(short).resume.params
    for k, v in ck.model.params.items():
        np.testing.assert_array_equal(v, best_at_4[k])


def test_cosine_schedule_decays_towards_five_percent_at_the_end(corpus, tmp_path):
    """Step s (of 8) takes the rate at progress (s - 1) / 8: the first the full rate, the
    rate reaching 5% as the run ends."""
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--max-steps", "8", "--eval-every", "2", "--lr", "0.01",
              "--lr-schedule", "cosine")
    assert r.exit_code == 0, r.output
    lrs = [row["lr"] for row in checkpoint.load(out).history]
    rate = lambda p: 0.01 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * p)))  # noqa: E731
    np.testing.assert_allclose(lrs, [rate((s - 1) / 8) for s in (2, 4, 6, 8)], rtol=1e-12)
    assert rate(1.0) == pytest.approx(0.0005) and lrs[-1] < 0.001


def test_step_decay(corpus, tmp_path):
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--max-steps", "6", "--eval-every", "2", "--lr", "0.01",
              "--lr-decay", "0.5", "--lr-decay-every", "3", "--lr-schedule", "constant")
    assert r.exit_code == 0, r.output
    # the rate logged at step s is the one step s took: 0.01 * 0.5 ** ((s - 1) // 3)
    assert [row["lr"] for row in checkpoint.load(out).history] == [0.01, 0.005, 0.005]


def test_reports_carry_the_rate_of_their_step(tmp_path):
    from charrnn import training
    from charrnn.data import read_corpus

    text = tmp_path / "c.txt"
    text.write_text("the quick brown fox\n" * 300)
    run = training.train(read_corpus([text]), tmp_path / "m.npz",
                         model_options={"hidden_size": 8, "num_layers": 1},
                         train_options={"batch_size": 4, "seq_len": 16, "max_steps": 6,
                                        "lr_schedule": "constant", "lr": 0.01, "lr_decay": 0.5,
                                        "lr_decay_every": 3, "eval_every": 3})
    assert [(r.step, r.lr) for r in run if r.kind == "step"] == [
        (1, 0.01), (2, 0.01), (3, 0.01), (4, 0.005), (5, 0.005), (6, 0.005)]


def test_training_survives_its_log_reader_going_away(tmp_path):
    """`charrnn train ... 2>&1 | head -2`: the run goes on silently and still saves."""
    out = tmp_path / "m.npz"
    cmd = (f"{sys.executable} -m charrnn train {SONNETS} -o {out} --hidden-size 16 "
           f"--max-steps 40 --eval-every 10 2>&1 | head -2")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=120)
    assert len(done.stdout.splitlines()) == 2
    assert checkpoint.load(out).resume.step == 40


def test_lr_decay_needs_the_constant_schedule(corpus, tmp_path):
    r = train(corpus, tmp_path / "m.npz", "--lr-decay", "0.5", "--lr-decay-every", "3")
    assert r.exit_code == 2 and "--lr-schedule constant" in r.output
    assert not (tmp_path / "m.npz").exists()


def test_one_character_corpus(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("a")
    r = run(["train", text, "-o", tmp_path / "m.npz"])
    assert r.exit_code == 1 and "at least 2 are needed" in r.output


def test_resume_and_force_together_and_a_finished_run(corpus, tmp_path):
    out = tmp_path / "m.npz"
    assert train(corpus, out, "--max-steps", "4").exit_code == 0
    r = run(["train", corpus, "-o", out, "--resume", "--force"])
    assert r.exit_code == 2 and "pass one of them" in r.output
    r = run(["train", corpus, "-o", out, "--resume", "--max-steps", "3"])
    assert r.exit_code == 0 and "nothing to train" in r.output
    assert checkpoint.load(out).resume.step == 4


def test_ctrl_c_before_the_first_step_saves_the_untrained_model(corpus, tmp_path, monkeypatch):
    out = tmp_path / "m.npz"
    _interrupt_after(monkeypatch, 0)
    r = train(corpus, out)
    assert r.exit_code == 130, r.output
    ck = checkpoint.load(out)
    assert ck.resume.step == 0 and ck.history == [] and "--resume" in r.output


def test_a_time_limit_shorter_than_a_step_saves_step_0(corpus, tmp_path):
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--max-time", "0.000001s")
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).resume.step == 0 and "time limit reached" in r.output


def _resume_hint(output):
    line = next(x for x in output.splitlines() if "resume with: charrnn " in x)
    return shlex.split(line.split("resume with: charrnn ", 1)[1].strip(" │|"))


@pytest.mark.parametrize("extra", [[], ["--batch-size", "32"]], ids=["force", "shrunk-batch"])
def test_the_resume_hint_after_ctrl_c_works(tmp_path, monkeypatch, extra):
    """--force started the run (it must not be repeated with --resume); --batch-size 32 was
    shrunk to fit the corpus (the same option must resume the shrunk run)."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(SONNETS.read_text()[:1500])  # 1,350 training characters: 21 streams of 64
    out = tmp_path / "m.npz"
    out.write_bytes(b"old")
    args = ["train", str(corpus), "-o", str(out), *TINY[:4], *extra, "--force",
            "--max-steps", "8"]
    monkeypatch.setattr(sys, "argv", ["charrnn", *args])
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        r = CliRunner().invoke(main, args, env={"COLUMNS": "1000"})  # the hint on one line
    assert r.exit_code == 130, r.output
    again = _resume_hint(r.output)
    assert "--force" not in again and again[-1] == "--resume"
    r = run(again)
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(out)
    assert ck.resume.step == 8
    assert ck.resume.train_config.batch_size == 21


def test_weights_broken_by_an_update_stop_the_run_with_one_line(corpus, tmp_path, recwarn):
    """--lr 1e308 turns the weights into inf/nan in one update; the validation after it says so
    (no NumPy warnings, no traceback), and as nothing was saved, no --resume is suggested.
    Without validation text, the save says so instead."""
    out = tmp_path / "m.npz"
    r = train(corpus, out, "--lr", "1e308", "--eval-every", "1", "--max-steps", "3")
    assert r.exit_code == 1, r.output
    assert "diverged at step 1: the validation loss is nan" in r.output
    assert f"nothing was saved to {out}" in r.output and "--resume" not in r.output
    assert "Traceback" not in r.output and not out.exists()
    r = train(corpus, out, "--lr", "1e308", "--eval-every", "1", "--val-frac", "0")
    assert r.exit_code == 1, r.output
    assert "diverged at step 1: an update made weights infinite or NaN" in r.output
    assert [str(w.message) for w in recwarn.list] == []


def test_a_seed_given_on_resume_is_left_aside_with_a_note(corpus, tmp_path):
    out = tmp_path / "m.npz"
    assert train(corpus, out, "--max-steps", "2", "--seed", "3").exit_code == 0
    r = run(["train", corpus, "-o", out, "--resume", "--max-steps", "4", "--seed", "5"])
    assert r.exit_code == 0, r.output
    assert "--seed 5 is left aside" in r.output and "the run's seed is 3" in r.output
    assert checkpoint.load(out).resume.train_config.seed == 3


def test_window_and_batch_limits_are_named(corpus, tmp_path):
    r = train(corpus, tmp_path / "m.npz", "--seq-len", "100000000")
    assert r.exit_code == 2 and "1<=x<=100000" in r.output
    from charrnn.config import TrainConfig
    from charrnn.errors import ConfigError
    with pytest.raises(ConfigError, match="batch_size must be an integer from 1 to 100,000"):
        TrainConfig(batch_size=10**8)


def test_ctrl_c_while_the_command_starts_is_one_line_and_130(corpus, tmp_path, monkeypatch):
    from charrnn import display

    def interrupted(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(display, "make_console", interrupted)
    r = train(corpus, tmp_path / "m.npz")
    assert r.exit_code == 130 and r.output == "Error: interrupted\n"


@pytest.mark.parametrize("value", ["0", "many", "-1", "1025", "\u00b2", "1.0", "1" * 5000])
def test_bad_thread_counts_are_usage_errors(corpus, tmp_path, value):
    r = train(corpus, tmp_path / "m.npz", "--threads", value)
    assert r.exit_code == 2 and "is not a thread count from 1 to 1024 or auto" in r.output



def test_divergence_without_clipping_suggests_clipping(corpus, tmp_path):
    r = train(corpus, tmp_path / "m.npz", "--optimizer", "sgd", "--grad-clip", "0", "--lr",
              "1e38", "--max-steps", "30")
    assert r.exit_code == 1, r.output
    assert "Try a lower --lr, or clipping the gradient (--grad-clip, e.g. 5)" in r.output


def test_a_finite_but_absurd_loss_is_a_divergence(corpus, tmp_path):
    r = train(corpus, tmp_path / "m.npz", "--lr", "1e30", "--max-steps", "50")
    assert r.exit_code == 1, r.output
    assert "(beyond 10,000 nats per character)" in r.output and "diverged at step" in r.output


def test_someone_elses_file_in_a_sticky_folder_is_refused_up_front(corpus, tmp_path, monkeypatch):
    """/tmp-like folders let only a file's owner replace it: found before training, not at
    the first save (as another user: the file and folder here are ours, so we pretend)."""
    import os

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    out = folder / "m.npz"
    out.write_bytes(b"theirs")
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(out).st_uid + 12345)
    r = train(corpus, out, "--force", "--max-steps", "2")
    assert r.exit_code == 2, r.output
    assert "belongs to another user, in a folder where only a file's owner may replace it" \
        in r.output and out.read_bytes() == b"theirs"
    monkeypatch.undo()
    assert train(corpus, out, "--force", "--max-steps", "2").exit_code == 0
