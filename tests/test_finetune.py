"""Fine-tuning (`train --init-from`): the vocabulary grown with the base's predictions kept,
the options it refuses, the record of the base, exact resume, and the library's path."""

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
from charrnn import checkpoint, choice, runs, transfer
from charrnn.cli import main
from charrnn.cli.train import _resume_command
from charrnn.config import FINETUNE_DEFAULTS, ModelConfig
from charrnn.data import Vocab, read_corpus
from charrnn.errors import UsageError
from charrnn.model import CharRNN, init_params

ROOT = Path(__file__).resolve().parents[1]
SONNETS = ROOT / "corpora" / "sonnets.txt"
TINY = ["--batch-size", "4", "--seq-len", "16"]
NEW_TEXT = "Café crème, déjà vu — garçon! 🌹 Ça va très bien, ma belle.\n" * 40


def run(args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny trained model of the Sonnets' first 6,000 characters."""
    folder = tmp_path_factory.mktemp("base")
    text = folder / "sonnets.txt"
    text.write_text(SONNETS.read_text()[:6000])
    out = folder / "base.npz"
    r = run(["train", text, "-o", out, "--hidden-size", "16", "--num-layers", "2",
             "--max-steps", "12", "--eval-every", "6", *TINY])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def new_text(tmp_path) -> Path:
    """Text with characters the base never saw (accents, a dash, an emoji) and without many
    of the base's."""
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT)
    return path


def finetune(new_text, out, base, *extra):
    return run(["train", new_text, "-o", out, "--init-from", base, "--max-steps", "8", *TINY,
                *extra])


# ----------------------------------------------------------------------------- the vocabulary


def _tiny(vocab: Vocab, dtype=np.float64, seed=3) -> CharRNN:
    config = ModelConfig(cell="gru", vocab_size=len(vocab), hidden_size=8, num_layers=2)
    return CharRNN(config, vocab=vocab, dtype=dtype, seed=seed)


def test_a_grown_vocabulary_keeps_the_base_s_predictions_over_its_own_characters():
    """The ratio rule: the grown model's probabilities of the base's characters are the base's
    times one factor per position (the share the new characters leave), exactly."""
    base = _tiny(Vocab("bdfhx"))
    vocab = Vocab("abcdefghx")  # new characters before, between and after the base's
    model = transfer.grown(base, vocab, np.random.default_rng(0))
    old = vocab.ids_of(base.vocab.chars)
    ids = np.random.default_rng(1).integers(0, len(base.vocab), (3, 40))
    base_lp, _ = base.log_probs(ids)
    grown_lp, _ = model.log_probs(old[ids])  # the same text over the grown vocabulary
    kept = grown_lp[..., old]
    share = np.log(np.exp(kept).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(kept - share, base_lp, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.diff(grown_lp[..., vocab.ids_of("aceg")], axis=-1), 0)


def test_new_characters_start_at_the_bias_rule_s_probability():
    """Where the head sees no signal (logits = biases), each new character has probability
    NEW_CHAR_PROB, and the base's characters keep their proportions."""
    base = _tiny(Vocab("bdfhx"))
    base.params["head.b"][:] = [0.5, -1.0, 2.0, 0.0, -3.0]
    model = transfer.grown(base, Vocab("abcdefghx"), np.random.default_rng(0))
    b = model.params["head.b"]
    p = np.exp(b - b.max()) / np.exp(b - b.max()).sum()
    new = model.vocab.ids_of("aceg")
    np.testing.assert_allclose(p[new], transfer.NEW_CHAR_PROB, rtol=1e-12)
    base_p = np.exp(base.params["head.b"]) / np.exp(base.params["head.b"]).sum()
    np.testing.assert_allclose(p[model.vocab.ids_of("bdfhx")], base_p * (1 - 4e-3), rtol=1e-12)
    assert not model.params["head.W"][:, new].any()


def test_many_new_characters_share_a_bounded_probability():
    base = _tiny(Vocab("ab"))
    many = "".join(chr(0x4E00 + k) for k in range(500))
    model = transfer.grown(base, base.vocab.merged(Vocab(many)), np.random.default_rng(0))
    b = model.params["head.b"]
    p = np.exp(b - b.max()) / np.exp(b - b.max()).sum()
    np.testing.assert_allclose(p[2:].sum(), transfer.NEW_CHARS_MASS, rtol=1e-12)


def test_the_base_s_rows_move_to_their_new_ids_and_new_rows_are_drawn_as_a_fresh_model_s():
    base = _tiny(Vocab("bdfhx"), dtype=np.float32)
    vocab = Vocab("abcdefghx")
    model = transfer.grown(base, vocab, np.random.default_rng(5))
    old, new = vocab.ids_of("bdfhx"), vocab.ids_of("aceg")
    fresh = init_params(model.config, np.random.default_rng(5), np.float32)["layers.0.W_x"]
    np.testing.assert_array_equal(model.params["layers.0.W_x"][old], base.params["layers.0.W_x"])
    np.testing.assert_array_equal(model.params["layers.0.W_x"][new], fresh[new])
    np.testing.assert_array_equal(model.params["head.W"][:, old], base.params["head.W"])
    for k in base.params:
        if k not in ("layers.0.W_x", "head.W", "head.b"):
            np.testing.assert_array_equal(model.params[k], base.params[k])
    same = transfer.grown(base, base.vocab, np.random.default_rng(5))
    for k in base.params:
        np.testing.assert_array_equal(same.params[k], base.params[k])


# ----------------------------------------------------------------------------- the command


def test_finetuning_grows_the_vocabulary_says_so_and_records_the_base(base, new_text, tmp_path):
    out = tmp_path / "ft.npz"
    r = finetune(new_text, out, base)
    assert r.exit_code == 0, r.output
    ck, b = checkpoint.load(out), checkpoint.load(base)
    added = sorted(set(NEW_TEXT) - set(b.model.vocab.chars))
    assert "".join(ck.model.vocab.chars) == "".join(sorted(set(b.model.vocab.chars) | set(added)))
    unused = len(set(b.model.vocab.chars) - set(NEW_TEXT))
    line = (f"vocabulary: {len(b.model.vocab)} from the base ({unused} not in this corpus) + "
            f"{len(added)} new: " + " ".join(repr(c) for c in added))
    assert line in r.output and f"fine-tuned from {base.name} (sha256 " in r.output
    assert ck.format_version == checkpoint.FORMAT_VERSION and ck.origin == {
        "name": base.name, "sha256": hashlib.sha256(base.read_bytes()).hexdigest(),
        "steps": 12, "val_loss": b.best["val_loss"], "added": "".join(added)}
    assert ck.model.config.hidden_size == 16 and ck.model.config.num_layers == 2
    # step count, history and optimizer state start afresh
    assert ck.resume.step == 8 and [row["step"] for row in ck.history] == [8]
    assert ck.resume.optimizer_state["t"] == 8
    # the corpus record counts over the model's vocabulary (0 for the base's unused characters)
    counts = dict(zip(ck.model.vocab.chars, ck.corpus["char_counts"], strict=True))
    unused_char = next(c for c in b.model.vocab.chars if c not in NEW_TEXT)
    assert counts["é"] == NEW_TEXT.count("é") and counts[unused_char] == 0
    # an ordinary model file: sample, eval and inspect read it
    r = run(["sample", "-m", out, "-n", "20", "--seed", "1"])
    assert r.exit_code == 0, r.output
    (tmp_path / "val.txt").write_text(NEW_TEXT[-300:])
    r = run(["eval", out, tmp_path / "val.txt"])
    assert r.exit_code == 0 and "loss" in r.output, r.output


def test_the_training_options_default_to_the_finetuning_ones_unless_given(base, new_text,
                                                                        tmp_path, monkeypatch):
    # the tiny base predicts any text badly (about 4 nats a character, and the new characters
    # 7 or more): a bound above that keeps fine-tuning's gentle rate, as for a text like the
    # base's
    monkeypatch.setattr(choice, "UNLIKE_BASE_LOSS", 10.0)
    r = finetune(new_text, tmp_path / "a.npz", base)
    assert r.exit_code == 0 and "fine-tuning at lr" not in r.output, r.output
    cfg = checkpoint.load(tmp_path / "a.npz").resume.train_config
    assert {k: getattr(cfg, k) for k in FINETUNE_DEFAULTS} == FINETUNE_DEFAULTS
    r = finetune(new_text, tmp_path / "b.npz", base, "--lr", "0.01", "--eval-every", "3",
                 "--dropout", "0.25")
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "b.npz")
    assert ck.resume.train_config.lr == 0.01 and ck.resume.train_config.eval_every == 3
    assert ck.model.config.dropout == 0.25


def test_a_text_unlike_the_base_s_fine_tunes_at_the_brisker_rate_and_says_why(base, new_text,
                                                                              tmp_path):
    corpus, model = read_corpus([new_text]), checkpoint.load(base).model
    # the model fine-tuning starts from: the base grown by the text's new characters, with the
    # run's generator (seed 0)
    start = transfer.grown(model, model.vocab.merged(corpus.vocab), np.random.default_rng(0))
    fit = runs.base_fit(corpus, start, {})
    assert fit > choice.UNLIKE_BASE_LOSS  # a base of 12 steps predicts little of any text
    r = finetune(new_text, tmp_path / "a.npz", base)
    assert r.exit_code == 0, r.output
    assert choice.finetune_lr(fit)[1] in " ".join(r.output.split())
    cfg = checkpoint.load(tmp_path / "a.npz").resume.train_config
    assert cfg.lr == choice.BRISK_LR and cfg.eval_every == FINETUNE_DEFAULTS["eval_every"]
    r = finetune(new_text, tmp_path / "b.npz", base, "--lr", "0.0007")  # a given rate wins
    assert r.exit_code == 0 and "fine-tuning at lr" not in r.output, r.output
    assert checkpoint.load(tmp_path / "b.npz").resume.train_config.lr == 0.0007


@pytest.mark.parametrize("option", [["--cell", "gru"], ["--hidden-size", "16"],
                                    ["--num-layers", "2"]])
def test_shape_options_are_refused_with_init_from(base, new_text, tmp_path, option):
    r = finetune(new_text, tmp_path / "ft.npz", base, *option)
    assert r.exit_code == 2, r.output
    assert r.output == (f"Error: {option[0]} cannot be given with --init-from: the network's "
                        "shape is the base model's\n")
    assert not (tmp_path / "ft.npz").exists()


def test_init_from_with_resume_is_refused(base, new_text, tmp_path):
    out = tmp_path / "ft.npz"
    assert finetune(new_text, out, base).exit_code == 0
    r = finetune(new_text, out, base, "--resume")
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "--init-from starts a new model from a base and --resume continues" in r.output
    with pytest.raises(UsageError, match="give one of them"):
        charrnn.train(read_corpus(new_text), out, init_from=base, resume=True)


def test_the_base_is_not_its_own_output(base, new_text, tmp_path):
    copy = tmp_path / "base.npz"
    copy.write_bytes(base.read_bytes())
    r = finetune(new_text, copy, copy, "--force")
    assert r.exit_code == 2 and "is the base model (--init-from)" in r.output, r.output
    assert copy.read_bytes() == base.read_bytes()


def _junk(path):
    path.write_bytes(b"not a model")


def _nan_weights(path, base):
    ck = checkpoint.load(base)
    params = {k: v.copy() for k, v in ck.model.params.items()}
    params["head.b"][0] = np.nan
    # written by hand, as a file from elsewhere would be: save() itself refuses NaN weights
    arrays = {"vocab": ck.model.vocab.codepoints(), **{f"params/{k}": v
                                                       for k, v in params.items()}}
    meta = json.dumps({"format": "charrnn-model", "format_version": 1, "charrnn_version": "0.1.0",
                       "dtype": "float32", "model_config": ck.model.config.to_dict(),
                       "best": None, "history": [], "corpus": None, "resume": None})
    np.savez(path, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)


@pytest.mark.parametrize("make", ["junk", "nan", "fifo", "folder", "missing"])
def test_a_hostile_base_is_refused_before_the_corpus_is_read(base, tmp_path, monkeypatch, make):
    bad = tmp_path / "bad.npz"
    if make == "junk":
        _junk(bad)
    elif make == "nan":
        _nan_weights(bad, base)
    elif make == "fifo":
        os.mkfifo(bad)
    elif make == "folder":
        bad.mkdir()
    with pytest.raises(charrnn.CheckpointError) as expected:
        checkpoint.load(bad)

    def never(*args, **kwargs):
        raise AssertionError("the corpus was read")

    monkeypatch.setattr("charrnn.data.read_corpus", never)
    r = run(["train", tmp_path / "no-such-corpus.txt", "-o", tmp_path / "ft.npz",
             "--init-from", bad])
    assert r.exit_code == 1, r.output
    assert r.output == f"Error: {expected.value}\n"


def test_a_finetuned_run_resumes_bit_exactly(base, new_text, tmp_path, monkeypatch):
    from charrnn.cli import train as train_command

    common = ["--dropout", "0.2", "--eval-every", "4", "--seed", "3", "--max-steps", "10",
              "--threads", "1"]  # the same pinned count: the same bits
    whole, half = tmp_path / "whole.npz", tmp_path / "half.npz"
    assert finetune(new_text, whole, base, *common).exit_code == 0
    polls = {"n": 0}

    def pressed(self):
        polls["n"] += 1
        return polls["n"] > 6

    with monkeypatch.context() as m:
        m.setattr(train_command._StopFlag, "__call__", pressed)
        m.setattr("sys.argv", ["charrnn", "train", str(new_text), "-o", str(half),
                               "--init-from", str(base), *TINY, *common])
        r = finetune(new_text, half, base, *common)
    assert r.exit_code == 130, r.output
    hint = r.output.strip().splitlines()[-1]
    assert hint.startswith("resume with: charrnn train") and "--init-from" not in hint
    r = run(["train", new_text, "-o", half, *TINY, *common, "--resume"])
    assert r.exit_code == 0, r.output
    a, b = checkpoint.load(whole), checkpoint.load(half)
    assert a.resume.step == b.resume.step == 10 and a.origin == b.origin
    for k in a.model.params:
        np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
        np.testing.assert_array_equal(a.resume.params[k], b.resume.params[k])
    for k in a.resume.optimizer_state:
        np.testing.assert_array_equal(a.resume.optimizer_state[k], b.resume.optimizer_state[k])
    assert a.resume.rng_state == b.resume.rng_state and a.best == b.best


def test_resume_of_a_finetuned_model_still_refuses_characters_it_lacks(base, new_text,
                                                                      tmp_path):
    out = tmp_path / "ft.npz"
    assert finetune(new_text, out, base).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text(NEW_TEXT + "ß")
    r = run(["train", other, "-o", out, "--resume"])
    assert r.exit_code == 2 and "characters differ from the model's vocabulary" in r.output


def test_the_library_and_the_command_give_the_same_model(base, new_text, tmp_path):
    out = tmp_path / "cli.npz"
    assert finetune(new_text, out, base, "--seed", "4", "--threads", "1").exit_code == 0
    options = {"batch_size": 4, "seq_len": 16, "max_steps": 8, "seed": 4}
    corpus = read_corpus(new_text)
    for init_from in (base, checkpoint.load(base)):
        lib = tmp_path / "lib.npz"
        for _ in charrnn.train(corpus, lib, init_from=init_from, train_options=options,
                               force=True, threads=1):  # the same count: the same bits
            pass
        a, b = checkpoint.load(out), checkpoint.load(lib)
        assert a.origin == b.origin and a.model.vocab == b.model.vocab
        for k in a.model.params:
            np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
    with pytest.raises(UsageError, match="^hidden_size cannot be given with init_from: "):
        charrnn.train(corpus, tmp_path / "x.npz", init_from=base,
                      model_options={"hidden_size": 8})


def test_a_model_in_memory_can_be_a_base(base, new_text, tmp_path):
    model = charrnn.load(base)
    reports = list(charrnn.train(read_corpus(new_text), tmp_path / "m.npz", init_from=model,
                                 train_options={"batch_size": 4, "seq_len": 16,
                                                "max_steps": 2}))
    assert reports[-1].kind == "done"
    assert checkpoint.load(tmp_path / "m.npz").origin["name"] is None
    model.vocab = None
    with pytest.raises(charrnn.ConfigError, match="the base model has no vocabulary"):
        charrnn.train(read_corpus(new_text), tmp_path / "n.npz", init_from=model)
    r = run(["inspect", tmp_path / "m.npz"])
    assert "fine-tuned from │ a model in memory" in r.output, r.output


def test_inspect_shows_where_a_model_came_from(base, new_text, tmp_path):
    out = tmp_path / "ft.npz"
    assert finetune(new_text, out, base).exit_code == 0
    r = run(["inspect", out])
    assert r.exit_code == 0, r.output
    assert "fine-tuned from" in r.output and f"{base.name} (sha256 " in r.output
    assert "'é'" in r.output and "'🌹'" in r.output
    doc = json.loads(run(["inspect", out, "--json"]).output)
    assert doc["origin"] == checkpoint.load(out).origin
    assert json.loads(run(["inspect", base, "--json"]).output)["origin"] is None


def test_the_resume_command_leaves_out_init_from():
    assert _resume_command(["train", "a.txt", "--init-from", "b.npz", "-o", "c d.npz",
                            "--force", "--init-from=e.npz", "--lr", "1"]) == \
        "train a.txt -o 'c d.npz' --lr 1 --resume"


def test_a_file_with_an_origin_needs_format_2(base, tmp_path):
    ck = checkpoint.load(base)
    origin = {"name": "x.npz", "sha256": "ab", "steps": 3, "val_loss": 1.5, "added": "é"}
    path = checkpoint.save(tmp_path / "m.npz", ck.model, origin=origin)
    assert checkpoint.load(path).origin == origin and checkpoint.describe(path)["origin"]
    with pytest.raises(charrnn.CheckpointError, match="origin steps must be a non-negative"):
        checkpoint.save(tmp_path / "n.npz", ck.model, origin={**origin, "steps": -1})
    with zipfile.ZipFile(path) as zf:  # the same file claiming format 1, which has no origin
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(np.load(path)["meta"].tobytes())
    meta["format_version"] = 1
    text = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with zipfile.ZipFile(tmp_path / "v1.npz", "w") as zf:
        for name, data in members.items():
            if name == "meta.npy":
                buffer = io.BytesIO()
                np.save(buffer, text)
                data = buffer.getvalue()
            zf.writestr(name, data)
    with pytest.raises(charrnn.CheckpointError,
                       match=r"keys differ from format 1: "
                       r"\[.chosen., .origin., .references., .validation.\]"):
        checkpoint.load(tmp_path / "v1.npz")
