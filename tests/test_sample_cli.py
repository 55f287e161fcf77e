"""`charrnn sample` through the command line: determinism, greedy decoding, stdout purity, closed
pipes, unknown prime characters, prime files, several samples, --json, model lookup, bad options."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
from charrnn.cli import main
from charrnn.config import ModelConfig
from charrnn.data import Vocab
from charrnn.model import CharRNN

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "corpora" / "sonnets.txt").read_text()[:3000]
CHARRNN = [sys.executable, "-m", "charrnn"]


def run(args, env=None, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small untrained LSTM over the Sonnets' characters, its head sharpened so that the
    next-character distributions are uneven (greedy and sampled text then differ)."""
    vocab = Vocab.from_text(TEXT)
    model = CharRNN(ModelConfig(cell="lstm", vocab_size=len(vocab), hidden_size=16,
                                num_layers=2), vocab=vocab, seed=4)
    model.params["head.W"] *= 6
    path = tmp_path_factory.mktemp("sample") / "m.npz"
    charrnn.save(model, path)
    return path


def sample(model_path, *args, env=None):
    r = run(["sample", "-m", model_path, *args], env=env)
    assert r.exit_code == 0, r.output
    return r


def library_sample(model_path, *args, **options):
    """What the library samples, computed as the command computes it: on one BLAS thread (on
    NumPy's count the products' float32 sums may differ, and so may a drawn character)."""
    from charrnn.blas import one_thread

    with one_thread():
        return charrnn.load(model_path).sample(*args, **options)


def test_same_seed_same_text_and_library_agrees(model_path):
    a = sample(model_path, "-n", "120", "--seed", "7", "-p", "The ").stdout
    b = sample(model_path, "-n", "120", "--seed", "7", "-p", "The ").stdout
    c = sample(model_path, "-n", "120", "--seed", "8", "-p", "The ").stdout
    assert a == b and a != c
    expected = library_sample(model_path, 120, prime="The ", seed=7)
    assert a == "The " + expected + "\n" and len(expected) == 120


def test_greedy_equals_tiny_temperature_and_top_k_1(model_path):
    greedy = sample(model_path, "-n", "80", "--greedy", "-p", "When").stdout
    cold = sample(model_path, "-n", "80", "--temp", "1e-6", "--seed", "3", "-p", "When").stdout
    top1 = sample(model_path, "-n", "80", "--top-k", "1", "--seed", "4", "-p", "When").stdout
    warm = sample(model_path, "-n", "80", "--seed", "3", "-p", "When").stdout
    assert greedy == cold == top1 != warm
    assert sample(model_path, "-n", "80", "--greedy", "--seed", "9", "-p", "When").stdout == greedy
    r = sample(model_path, "-n", "20", "--greedy", "--num-samples", "2", "-p", "When")
    assert "note: with --greedy every sample is the same text" in r.stderr
    assert r.stdout.count(greedy[:24]) == 2


def test_stdout_is_only_prime_text_and_newline(model_path, tmp_path):
    """`charrnn sample > out.txt`: the file gets the text and nothing else, even with notes."""
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        p = subprocess.run([*CHARRNN, "sample", "-m", str(model_path), "-n", "200", "--seed",
                            "5", "-p", "Love\u20ac is", "--unknown", "skip"],
                           stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    expected = library_sample(model_path, 200, prime="Love is", seed=5)
    assert out.read_bytes() == ("Love is" + expected + "\n").encode()
    assert b"note: left out 1 character(s) the model never saw" in p.stderr
    assert b"U+20AC" in p.stderr


def test_closed_pipe_ends_quietly_and_quickly(model_path):
    start = time.monotonic()
    p = subprocess.Popen([*CHARRNN, "sample", "-m", str(model_path), "-n", "100000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = p.stdout.read(300)
    p.stdout.close()  # the reader goes away, as `| head -c 300` does
    _, err = p.communicate(timeout=60)
    assert len(head) == 300
    assert p.returncode == 0 and b"Traceback" not in err and err == b"", err
    assert time.monotonic() - start < 30


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["sample", "-n", "300", "--seed", "1"], ["--help"],
                                  ["inspect", "{model}"], ["inspect", "{model}", "--json"]])
@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_output_that_cannot_be_written_is_one_line(model_path, args, unbuffered):
    """A full disk behind stdout: exit 1 and one line on stderr, whether the write fails at
    once (unbuffered) or at the last flush."""
    args = [a.format(model=model_path) for a in args]
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered, "CHARRNN_MODEL": str(model_path)}
    with open("/dev/full", "w") as full:
        p = subprocess.run([*CHARRNN, *args], stdout=full, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=60)
    assert p.returncode == 1
    assert p.stderr == "Error: cannot write the output: No space left on device\n"


def test_closed_pipe_through_a_shell(model_path):
    cmd = " ".join([*map(str, CHARRNN), "sample", "-m", str(model_path), "-n", "100000",
                    "| head -c 300"])
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=60)
    assert len(p.stdout) == 300 and b"Traceback" not in p.stderr
    assert p.returncode == 0, p.stderr


def test_unknown_prime_characters_exit_2_listing_them(model_path):
    r = run(["sample", "-m", model_path, "-n", "10", "-p", "ab\x1bc\u20ac\u202e"])
    assert r.exit_code == 2 and r.stdout == ""
    msg = r.stderr.strip()
    # worded as `inspect` and `eval` word it, each with its count
    assert msg.startswith("Error: the prime has 3 character(s) the model never saw, 3 distinct: ")
    assert "'\\x1b' (U+001B, once)" in msg and "'€' (U+20AC, once)" in msg
    assert "U+202E (once)" in msg
    assert "--unknown skip" in msg and "\x1b" not in msg and "\u202e" not in msg


def test_unknown_skip_drops_them_with_a_note(model_path):
    r = sample(model_path, "-n", "30", "--seed", "1", "-p", "ab\x1bc", "--unknown", "skip")
    assert r.stdout == "abc" + library_sample(model_path, 30, prime="abc", seed=1) + "\n"
    assert "note: left out 1 character(s) the model never saw: '\\x1b' (U+001B)" in r.stderr


def test_prime_file_and_no_echo_prime(model_path, tmp_path):
    prime = "Shall I compare thee\nto a "
    f = tmp_path / "prime.txt"
    f.write_text(prime)
    r = sample(model_path, "-n", "50", "--seed", "2", "--prime-file", f)
    text = library_sample(model_path, 50, prime=prime, seed=2)
    assert r.stdout == prime + text + "\n"
    r = sample(model_path, "-n", "50", "--seed", "2", "--prime-file", f, "--no-echo-prime")
    assert r.stdout == text + "\n"
    f.write_bytes(b"\xef\xbb\xbf" + prime.replace("\n", "\r\n").encode())  # BOM + CRLF
    r = sample(model_path, "-n", "50", "--seed", "2", "--prime-file", f)
    assert r.stdout == prime + text + "\n"
    r = run(["sample", "-m", model_path, "--prime-file", f, "-p", "x"])
    assert r.exit_code == 2 and "not both" in r.output
    r = run(["sample", "-m", model_path, "--prime-file", tmp_path / "none.txt"])
    assert r.exit_code == 2 and "none.txt" in r.output


def test_several_samples_are_separated_and_json_lines_parse(model_path):
    texts = library_sample(model_path, 40, prime="O ", seed=11, num_samples=3)
    r = sample(model_path, "-n", "40", "--seed", "11", "-p", "O ", "--num-samples", "3")
    expected = "\n".join(f"=== sample {i + 1} of 3 ===\nO {t}\n" for i, t in enumerate(texts))
    assert r.stdout == expected
    r = sample(model_path, "-n", "40", "--seed", "11", "-p", "O ", "--num-samples", "3",
               "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows == [{"sample": i + 1, "prime": "O ", "text": t, "seed": 11}
                    for i, t in enumerate(texts)]
    assert len(set(texts)) == 3


def test_without_a_seed_json_tells_the_one_drawn_and_it_repeats_the_text(model_path):
    r = sample(model_path, "-n", "60", "--json")
    row = json.loads(r.stdout)
    assert isinstance(row["seed"], int) and 0 <= row["seed"] < 2**32
    again = sample(model_path, "-n", "60", "--json", "--seed", str(row["seed"]))
    assert json.loads(again.stdout)["text"] == row["text"]


def test_missing_default_model_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["sample"], env={"CHARRNN_MODEL": None})
    assert r.exit_code == 1
    assert r.output.strip() == ("Error: no model file at model.npz; train one first, e.g. "
                                "`charrnn train corpora/sonnets.txt`")


def test_model_from_the_environment(model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["sample", "-n", "20", "--seed", "1"],
                           env={"CHARRNN_MODEL": str(model_path)})
    assert r.exit_code == 0, r.output
    assert r.stdout == library_sample(model_path, 20, seed=1) + "\n"


def test_length_zero_prints_the_prime(model_path):
    assert sample(model_path, "-n", "0", "-p", "abc").stdout == "abc\n"


@pytest.mark.parametrize("args", [
    ["--temp", "0"], ["--temp", "-1"], ["-t", "nan"], ["--top-k", "0"], ["--top-p", "0"],
    ["--top-p", "1.5"], ["-n", "-1"], ["-n", "ten"], ["--num-samples", "0"],
    ["--unknown", "maybe"], ["--seed", "-3"], ["--no-such-option"],
])
def test_bad_option_values_exit_2(model_path, args):
    r = run(["sample", "-m", model_path, *args])
    assert r.exit_code == 2, r.output
    assert "Error" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("args", "named"), [
    (["--temp", "1"], "--temperature"), (["-t", "0.5"], "--temperature"),
    (["--top-k", "3"], "--top-k"), (["--top-p", "0.9"], "--top-p"),
])
def test_greedy_with_a_sampling_option_is_refused(model_path, args, named):
    r = run(["sample", "-m", model_path, "--greedy", *args])
    assert r.exit_code == 2, r.output
    assert "--greedy" in r.output and named in r.output and "Traceback" not in r.output


def test_broken_model_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    r = run(["sample", "-m", bad])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert r.output.startswith(f"Error: {bad}")


def test_stdout_stays_clean_in_a_real_process_with_env_model(model_path, tmp_path):
    env = {**os.environ, "CHARRNN_MODEL": str(model_path), "NO_COLOR": "1"}
    p = subprocess.run([*CHARRNN, "sample", "-n", "60", "--seed", "3", "--json"],
                       capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and p.stderr == b""
    row = json.loads(p.stdout)
    assert row["text"] == library_sample(model_path, 60, seed=3)
    assert np.isscalar(row["sample"]) and row["prime"] == ""


def test_prime_file_that_is_not_utf8_is_one_clear_line(model_path, tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes(b"caf\xe9")
    r = run(["sample", "-m", model_path, "--prime-file", f])
    assert r.exit_code == 1 and "offset 3 is not valid utf-8" in r.output
    assert "--encoding latin-1" in r.output and "Traceback" not in r.output
    # read as latin-1 the file is "café": the model does not know é, which proves the decoding
    r = run(["sample", "-m", model_path, "--prime-file", f, "--encoding", "latin-1",
             "--unknown", "skip", "-n", "5", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "left out 1 character(s) the model never saw: 'é' (U+00E9)" in r.output
    assert r.stdout.startswith("caf")


def test_prime_file_from_stdin_and_empty_prime_file(model_path, tmp_path):
    r = run(["sample", "-m", model_path, "--prime-file", "-", "-n", "30", "--seed", "4"],
            input="When I")
    assert r.exit_code == 0, r.output
    assert r.stdout == "When I" + library_sample(model_path, 30, prime="When I", seed=4) + "\n"
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    r = run(["sample", "-m", model_path, "--prime-file", empty])
    assert r.exit_code == 1 and "the prime is empty" in r.output


@pytest.mark.parametrize("command", [["train", "{corpus}"], ["eval", "{model}", "{corpus}"],
                                     ["inspect", "{model}", "--text", "{corpus}"],
                                     ["sample", "-m", "{model}", "--prime-file", "{corpus}"]])
def test_unknown_encoding_is_a_usage_error(command, model_path, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello there\n" * 20)
    args = [a.format(corpus=corpus, model=model_path) for a in command]
    r = run([*args, "--encoding", "klingon"])
    assert r.exit_code == 2, r.output
    assert "unknown text encoding 'klingon'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "model.npz").exists()


def test_an_encoding_that_is_not_for_text_is_a_usage_error(model_path, tmp_path):
    prime = tmp_path / "p.txt"
    prime.write_text("shall")
    for name in ("rot13", "base64"):
        r = run(["sample", "-m", model_path, "--prime-file", prime, "--encoding", name])
        assert r.exit_code == 2, r.output
        assert f"'{name}' is not a text encoding" in r.output


@pytest.mark.parametrize("command", ["sample", "inspect"])
def test_an_output_encoding_without_the_characters_is_one_line(tmp_path, command):
    """sample: the text has characters ASCII lacks; inspect: so do its tables' borders."""
    vocab = Vocab.from_text("h\u00e9llo w\u00f6rld\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=8, num_layers=1),
                    vocab=vocab)
    charrnn.save(model, tmp_path / "m.npz")
    args = {"sample": ["sample", "-p", "h\u00e9", "--seed", "1"], "inspect": ["inspect"]}[command]
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "CHARRNN_MODEL": str(tmp_path / "m.npz")}
    p = subprocess.run([*CHARRNN, *args], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("Error: the output's encoding (ascii) has no character U+")
    assert "PYTHONIOENCODING=utf-8" in p.stderr and len(p.stderr.splitlines()) == 1


def test_an_error_after_text_starts_its_own_line_where_stdout_and_stderr_are_one(tmp_path):
    vocab = Vocab.from_text("h\u00e9llo w\u00f6rld\n")
    charrnn.save(CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=8, num_layers=1),
                         vocab=vocab), tmp_path / "m.npz")
    # an ASCII prime, then sampled characters until the first that ASCII lacks
    args = [*CHARRNN, "sample", "-m", str(tmp_path / "m.npz"), "-p", "h", "--seed", "1"]
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    apart = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert apart.returncode == 1 and apart.stderr.startswith("Error: the output's encoding")
    text = apart.stdout  # a pipe of its own gets the text as it is, no line break added
    assert text.startswith("h") and not text.endswith("\n")
    both = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, timeout=60)  # `2>&1`
    assert both.returncode == 1
    assert both.stdout == text + "\n" + apart.stderr


def test_ctrl_c_while_sampling_is_one_line_and_130(model_path, monkeypatch):
    from charrnn import sampling

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(sampling.Stream, "next_ids", interrupted)
    r = run(["sample", "-m", model_path, "-n", "10"])
    assert r.exit_code == 130
    assert r.output.strip().endswith("Error: interrupted") and "save" not in r.output


def test_a_terminal_sees_control_characters_escaped_and_a_pipe_the_exact_text(tmp_path):
    """A model whose text holds ESC and a bidi override: on a terminal they are shown, not
    obeyed; a pipe gets them as they are."""

    vocab = Vocab.from_text("ab\x1b[31m\u202e\n")
    charrnn.save(CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=4, num_layers=1),
                         vocab=vocab), tmp_path / "m.npz")
    args = [*CHARRNN, "sample", "-m", str(tmp_path / "m.npz"), "-p", "a\x1b[31mb\u202e",
            "-n", "0"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    code, shown = _on_a_terminal(args, env)
    assert code == 0
    assert shown == "a\\x1b[31mb<U+202E>\n"
    piped = subprocess.run(args, capture_output=True, env=env, timeout=60)
    assert piped.stdout.decode() == "a\x1b[31mb\u202e\n"


@pytest.mark.parametrize("command", [["sample", "-n", "50", "--seed", "1", "--temp", "0.1"],
                                     ["eval", "{model}", "{text}"]])
def test_a_model_with_overflowing_logits_shows_no_numpy_warnings(tmp_path, command):
    """Huge but finite weights (what a diverging run can leave): the figures say inf, the text
    is what it is, and no RuntimeWarning lines come between them."""
    vocab = Vocab.from_text(TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=8, num_layers=1),
                    vocab=vocab)
    model.params["head.W"][:] = 0  # logits = head.b: finite, but their differences overflow
    model.params["head.b"][:] = np.where(np.arange(len(vocab)) % 2, 3e38, -3e38)
    charrnn.save(model, tmp_path / "m.npz")
    (tmp_path / "t.txt").write_text(TEXT[:500])
    args = [a.format(model=tmp_path / "m.npz", text=tmp_path / "t.txt") for a in command]
    env = {**os.environ, "CHARRNN_MODEL": str(tmp_path / "m.npz")}
    p = subprocess.run([*CHARRNN, *args], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Warning" not in p.stderr and "Traceback" not in p.stderr


def _read_terminal(leader, at_least=None):
    """Bytes from a pseudo-terminal's leader side: until it closes, or ``at_least`` of them."""
    got = b""
    while at_least is None or len(got) < at_least:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side has closed
            break
        if not chunk:
            break
        got += chunk
    return got


def _on_a_terminal(args, env=None):
    """Run a command with stdout on a pseudo-terminal: (exit code, what the terminal got)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    got = _read_terminal(leader)
    os.close(leader)
    return proc.wait(timeout=60), got.decode().replace("\r\n", "\n")


def test_json_on_a_terminal_escapes_what_is_not_ascii_and_stays_exact(tmp_path):
    vocab = Vocab.from_text("ab\x1b\u202e\n")
    charrnn.save(CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=4, num_layers=1),
                         vocab=vocab), tmp_path / "m.npz")
    args = [*CHARRNN, "sample", "-m", str(tmp_path / "m.npz"), "-p", "a\x1bb\u202e", "-n", "0",
            "--json", "--seed", "1"]
    code, shown = _on_a_terminal(args)
    assert code == 0
    assert json.loads(shown)["prime"] == "a\x1bb\u202e" and "\\u202e" in shown
    assert "\x1b" not in shown and "\u202e" not in shown


def test_ctrl_c_on_a_terminal_ends_the_text_line_before_the_message(model_path):
    import pty
    import signal

    leader, follower = pty.openpty()
    # Ctrl-C's default, as at a terminal: a job a shell put in the background (this suite's,
    # say) starts with SIGINT ignored, which Python and its children then keep
    proc = subprocess.Popen([*CHARRNN, "sample", "-m", str(model_path), "-n", "100000000",
                             "--seed", "1"], stdout=follower, stderr=follower,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(follower)
    got = _read_terminal(leader, at_least=2000)
    proc.send_signal(signal.SIGINT)
    got += _read_terminal(leader)
    os.close(leader)
    assert proc.wait(timeout=60) == 130
    assert got.decode().replace("\r\n", "\n").endswith("\nError: interrupted\n")


@pytest.mark.parametrize("extra", [[], ["--greedy"], ["--num-samples", "3"]])
def test_a_model_whose_outputs_overflow_is_one_line_not_garbage(model_path, monkeypatch, extra):
    """inf/NaN logits (weights that overflowed): an error, not an IndexError or garbage."""
    from charrnn import sampling

    real_prime, real_step = sampling.Stepper.prime, sampling.Stepper.step

    def poisoned(real):
        def run_and_spoil(self, ids):
            out = real(self, ids)
            out[..., 1] = np.inf
            out[..., 2] = -np.inf
            return out
        return run_and_spoil

    monkeypatch.setattr(sampling.Stepper, "prime", poisoned(real_prime))
    monkeypatch.setattr(sampling.Stepper, "step", poisoned(real_step))
    r = run(["sample", "-m", model_path, "-n", "20", "--seed", "1", *extra])
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines()[-1] == (
        "Error: the model's outputs are not finite numbers (its weights overflowed, as in a "
        "diverged training run): it cannot be sampled")


class TwoThreads:
    """A BLAS stand-in at two threads that remembers its count at every call."""

    def __init__(self):
        from charrnn import blas

        self.n = 2
        self.library = blas.OpenBLAS(lambda: self.n, lambda n: setattr(self, "n", n))


@pytest.mark.parametrize("args", [[], ["--num-samples", "3"], ["--json", "-p", "Shall I"]])
def test_sampling_runs_on_one_blas_thread_and_restores_the_count(model_path, monkeypatch,
                                                                  args):
    from charrnn import blas, sampling

    fake, counts = TwoThreads(), []
    monkeypatch.setattr(blas, "_FOUND", [fake.library])
    step, prime = sampling.Stepper.step, sampling.Stepper.prime
    monkeypatch.setattr(sampling.Stepper, "step",
                        lambda self, ids: (counts.append(fake.n), step(self, ids))[1])
    monkeypatch.setattr(sampling.Stepper, "prime",
                        lambda self, ids: (counts.append(fake.n), prime(self, ids))[1])
    r = sample(model_path, "-n", "40", "--seed", "5", *args)
    assert r.stdout and len(counts) >= 40 and set(counts) == {1}
    assert fake.n == 2  # restored
