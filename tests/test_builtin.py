"""The models that come with charrnn: a short name works wherever a model file's path does, a
file of that name wins, and the built-in file passes the checks every model file passes."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import charrnn
from charrnn import builtin, checkpoint
from charrnn.cli import main
from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.vocab import Vocab

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = {"name": "base.txt", "size": 1000, "sha256": "ab" * 32, "chars": 1000,
              "sources": ["kjv (bible-kjv-text 4.38; public domain)"], "steps": 7, "seed": 30,
              "trained_by": "corpora/tools/build_base.py"}


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A built-in folder holding a small `english` model with its provenance."""
    models = tmp_path / "models"
    models.mkdir()
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz ,.\n"))
    model = CharRNN(ModelConfig(cell="gru", hidden_size=8, num_layers=1,
                                vocab_size=len(chars)), vocab=Vocab(chars), seed=0)
    checkpoint.save(models / "english.npz", model, corpus=PROVENANCE,
                    history=[{"step": 7, "time": 1.0, "train_loss": 2.0, "val_loss": 2.5,
                              "lr": 1e-3}], best={"step": 7, "val_loss": 2.5})
    monkeypatch.setattr(builtin, "FOLDER", models)
    monkeypatch.chdir(tmp_path)
    return models


def test_a_short_name_is_the_built_in_file_unless_a_file_has_that_name(folder, tmp_path):
    assert builtin.model_path("english") == folder / "english.npz"
    assert builtin.model_path("model.npz") == "model.npz"  # not a short name
    (tmp_path / "english").write_text("mine")
    assert builtin.model_path("english") == "english"


def test_the_short_name_works_in_sample_inspect_load_and_init_from(folder, tmp_path):
    r = run(["sample", "-m", "english", "-n", "40", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert len(r.stdout) >= 40 and set(r.stdout) <= set("abcdefghijklmnopqrstuvwxyz ,.\n")
    shown = run(["inspect", "english"])
    assert shown.exit_code == 0, shown.output
    assert "kjv (bible-kjv-text 4.38; public domain)" in shown.output
    assert "corpora/tools/build_base.py, 7 steps, seed 30" in shown.output
    doc = json.loads(run(["inspect", "english", "--json"]).output)
    assert {k: doc["corpus"][k] for k in ("sources", "steps", "seed")} == {
        "sources": PROVENANCE["sources"], "steps": 7, "seed": 30}
    assert charrnn.load("english").config.hidden_size == 8
    text = tmp_path / "text.txt"
    text.write_text("a cab, a dab. " * 300)
    r = run(["train", text, "--init-from", "english", "-o", "tuned.npz", "--max-steps", "2"])
    assert r.exit_code == 0, r.output
    origin = checkpoint.load("tuned.npz").origin
    assert origin["name"] == "english.npz" and origin["steps"] == 7
    assert origin["sha256"] and len(origin["sha256"]) == 64


def test_a_corrupted_built_in_file_is_refused_in_one_line(folder):
    data = bytearray((folder / "english.npz").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    (folder / "english.npz").write_bytes(bytes(data))
    r = run(["sample", "-m", "english", "-n", "10"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    message = [line for line in r.output.splitlines() if line.strip()]
    assert len(message) == 1 and message[0].startswith("Error: english:"), r.output


def test_an_unknown_name_is_a_missing_file(folder):
    r = run(["sample", "-m", "englsh", "-n", "10"])
    assert r.exit_code != 0 and "no model file at englsh" in r.output
    assert not os.path.exists("englsh")


# ---------------------------------------------------------------- the shipped English base

SHIPPED = builtin.FOLDER / builtin.BUILT_IN["english"]
WINDOWS_1252 = {c for c in (bytes([b]).decode("cp1252", errors="ignore")
                            for b in range(0x20, 0x100)) if c and c.isprintable()} - {"\u00a0",
                                                                                     "\u00ad"}


def test_the_shipped_base_is_slim_and_covers_the_common_european_characters():
    assert SHIPPED.stat().st_size <= 8 << 20
    ck = checkpoint.load("english")
    assert ck.resume is None and ck.best["val_loss"] is not None
    assert WINDOWS_1252 | {"\t", "\n"} <= set(ck.model.vocab.chars)
    provenance = ck.corpus
    assert provenance["trained_by"] == "corpora/tools/build_base.py"
    assert provenance["steps"] >= ck.best["step"] and provenance["seed"] == 30
    assert len(provenance["sha256"]) == 64 and len(provenance["sources"]) == 8


def test_the_shipped_base_writes_english_like_text():
    r = run(["sample", "-m", "english", "-n", "300", "--temp", "0.7", "--seed", "3"])
    assert r.exit_code == 0, r.output
    words = r.stdout.split()
    letters = sum(c.isascii() and (c.isalpha() or c in " \n,.;:'") for c in r.stdout)
    assert letters / len(r.stdout) > 0.9 and len(words) > 30
    common = {"the", "and", "of", "to", "a", "in", "is", "that", "for", "it"}
    assert sum(w.lower().strip(",.;:") in common for w in words) >= 5
