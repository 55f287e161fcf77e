"""What the library promises on its own, as the command does: it never writes over its corpus,
and its messages name an option as the library's parameter (``max_time``) where the command
line names its flag (``--max-time``)."""

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import charrnn
from charrnn import errors
from charrnn.cli import main
from charrnn.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 8, "num_layers": 1}
SMALL = {"batch_size": 4, "seq_len": 16, "max_steps": 2}
TINY_FLAGS = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-len", "16",
              "--max-steps", "2"]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:3000])
    return path


def test_the_library_never_writes_over_its_corpus_even_with_force(text):
    before = text.read_bytes()
    corpus = charrnn.read_corpus([text])
    with pytest.raises(UsageError, match=r"^cannot write .*text\.txt: it is a file of the corpus; "
                                         r"choose another output$"):
        charrnn.train(corpus, text, model_options=TINY, train_options=SMALL, force=True)
    assert text.read_bytes() == before


def test_the_command_never_writes_over_its_corpus_and_says_so_in_flags(text):
    before = text.read_bytes()
    r = run(["train", text, "-o", text, "--force", *TINY_FLAGS])
    assert r.exit_code == 2
    assert r.output == (f"Error: cannot write {text}: it is a file of the corpus; choose another "
                        "-o/--output\n")
    assert text.read_bytes() == before


@pytest.mark.parametrize("train_options, flags, message", [
    # a time limit too long to be a number (400 digits of seconds are infinite)
    ({"max_time": math.inf}, ["--max-time", "9" * 400],
     "{max_time} must be a finite number >= 0 (0: no limit), not inf"),
    # a step decay without the schedule that takes it
    ({"lr_decay": 0.5}, ["--lr-decay", "0.5"],
     "{lr_decay} and {lr_decay_every} apply to {lr_schedule}; add it"),
])
def test_the_library_names_parameters_and_the_command_line_flags(text, tmp_path, train_options,
                                                                 flags, message):
    names = {"max_time": "max_time", "lr_decay": "lr_decay", "lr_decay_every": "lr_decay_every",
             "lr_schedule": "lr_schedule='constant'"}
    in_flags = {"max_time": "--max-time", "lr_decay": "--lr-decay",
                "lr_decay_every": "--lr-decay-every", "lr_schedule": "--lr-schedule constant"}
    corpus = charrnn.read_corpus([text])
    with pytest.raises(ConfigError) as library:
        charrnn.train(corpus, tmp_path / "m.npz", model_options=TINY, train_options=train_options)
    assert str(library.value) == message.format(**names)
    r = run(["train", text, "-o", tmp_path / "m.npz", *flags])
    assert r.exit_code == 2 and r.output == f"Error: {message.format(**in_flags)}\n"
    assert not (tmp_path / "m.npz").exists()


def test_flags_are_spoken_only_while_a_command_runs(text, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"precious")
    r = run(["train", text, "-o", out])
    assert r.exit_code == 2 and "pass --resume to continue training it or --force" in r.output
    assert errors.option("max_time") == "max_time"  # the library's words again
    with pytest.raises(UsageError, match="pass resume=True to continue training it or "
                                         "force=True to overwrite it$"):
        charrnn.train(charrnn.read_corpus([text]), out)
    assert out.read_bytes() == b"precious"


def test_option_is_the_one_mapping_from_parameters_to_flags():
    assert [errors.option(n) for n in ("max_time", "output")] == ["max_time", "output"]
    assert errors.option("seq_len", 10) == "seq_len=10"
    assert errors.option("unknown", "skip") == "unknown='skip'"
    assert errors.option("force", True) == "force=True"
    with errors.speaking_in_flags():
        assert [errors.option(n) for n in ("max_time", "output")] == ["--max-time", "-o/--output"]
        assert errors.option("seq_len", 10) == "--seq-len 10"
        assert errors.option("unknown", "skip") == "--unknown skip"
        assert errors.option("force", True) == "--force"
        assert errors.option("output", "m.npz") == "--output m.npz"
    assert errors.flag("max_time") == "--max-time" and errors.option("max_time") == "max_time"
