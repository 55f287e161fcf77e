"""`charrnn train` fine-tunes the built-in English base by default where the rule says it helps:
the rule (coverage of the text's characters, the run's budget against the base's training),
fine-tuning's rate from the base's score on the text, the start line and the file's record,
--from-scratch, a given shape, another script, a resume."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import builtin, checkpoint, choice, runs, transfer
from charrnn.choice import (
    BASE_TRAINED_CHARS,
    BRISK_LR,
    MIN_BASE_COVERAGE,
    UNLIKE_BASE_LOSS,
    start_from_base,
)
from charrnn.cli import main
from charrnn.config import FINETUNE_DEFAULTS, ModelConfig
from charrnn.data import read_corpus
from charrnn.model import CharRNN
from charrnn.runs import coverage
from charrnn.vocab import Vocab

ROOT = Path(__file__).resolve().parents[1]
BASE_CHARS = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,.;:'!?\n"))
SMALL = ["--batch-size", "4", "--seq-len", "16", "--max-steps", "4"]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def base(tmp_path, monkeypatch) -> CharRNN:
    """A small built-in `english` base (a GRU 1x12) in place of the shipped one. Untrained, it
    scores about ln 55 = 4.0 nats a character on any text: the bound of fine-tuning's brisker
    rate is raised above that, but where a test lowers it."""
    monkeypatch.setattr(choice, "UNLIKE_BASE_LOSS", 5.0)
    models = tmp_path / "models"
    models.mkdir()
    model = CharRNN(ModelConfig(cell="gru", hidden_size=12, num_layers=1, dropout=0.1,
                                vocab_size=len(BASE_CHARS)), vocab=Vocab(BASE_CHARS), seed=3)
    checkpoint.save(models / "english.npz", model,
                    history=[{"step": 9, "time": 1.0, "train_loss": 2.0, "val_loss": 2.4,
                              "lr": 1e-3}], best={"step": 9, "val_loss": 2.4})
    monkeypatch.setattr(builtin, "FOLDER", models)
    monkeypatch.chdir(tmp_path)
    return model


@pytest.fixture
def sonnets(tmp_path) -> Path:
    path = tmp_path / "sonnets.txt"
    path.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:6000])
    return path


# ---------------------------------------------------------------------------------- the rule

def test_the_base_is_used_for_a_small_text_in_its_characters_and_a_short_run():
    use, why = start_from_base(95_650, 1.0, {"max_time": 120.0},
                               base_speed=lambda: (10_000.0, True))
    # 2 minutes at 10k characters/s = 1.2M characters = 14 passes over 86k training characters
    assert use and why == ("95.7k characters of text and 2 minutes (14 passes at 10k "
                           "characters/s, measured), 100% of its characters in the english base")


def test_a_text_mostly_in_other_characters_trains_from_scratch_without_timing_the_base():
    def refuse():
        raise AssertionError("a text the base does not cover needs no speed of the base")

    use, why = start_from_base(95_650, 0.3, {"max_time": 120.0}, base_speed=refuse)
    assert not use and why == "from scratch: 30% of its characters are in the english base"
    assert start_from_base(95_650, MIN_BASE_COVERAGE, {"max_steps": 10})[0]
    assert not start_from_base(95_650, MIN_BASE_COVERAGE - 0.01, {"max_steps": 10})[0]


def test_a_run_that_can_train_as_much_as_the_base_did_trains_from_scratch():
    # fine-tuning's passes over a large text, with no time or step limit
    text_chars = BASE_TRAINED_CHARS // FINETUNE_DEFAULTS["epochs"] / 0.9 + 1000
    use, why = start_from_base(int(text_chars), 1.0, {})
    assert not use and why.startswith("from scratch: the run can train on 41") \
        and why.endswith("characters, at least the english base's 41M")
    assert start_from_base(int(text_chars) // 2, 1.0, {})[0]
    # a long timed run on a large text: an hour at 20k characters/s is 72M characters
    assert not start_from_base(10_000_000, 1.0, {"max_time": 3600.0}, lambda: (20_000.0, True))[0]
    assert start_from_base(10_000_000, 1.0, {"max_time": 600.0}, lambda: (20_000.0, True))[0]
    # a small text is read at most 20 times however long the run
    assert start_from_base(95_650, 1.0, {"max_time": 3600.0}, lambda: (20_000.0, True))[0]
    use, why = start_from_base(95_650, 1.0, {"epochs": 0})
    assert why == "from scratch: the run has no limit (the english base trained on 41M characters)"


GERMAN = ("Die Sonne schien noch, als wir am Abend über die Brücke gingen. Der Fluss war breit "
          "und ruhig, und auf dem Wasser lagen die Lichter der Stadt. Meine Schwester erzählte "
          "von ihrer Arbeit in der Schule, von den Kindern, die jeden Morgen zu spät kommen, und "
          "von dem alten Lehrer, der seit dreißig Jahren dieselben Geschichten erzählt. Später "
          "saßen wir in einem kleinen Gasthaus am Markt, tranken Wein und sprachen über die "
          "Zeit, als wir noch jung waren und glaubten, dass die Welt uns gehört.\n")


def test_the_shipped_base_scores_english_verse_as_its_own_and_german_as_unlike_it(tmp_path):
    german = tmp_path / "de.txt"
    german.write_text(GERMAN * 6)
    model = runs.builtin_base().model
    sonnets = read_corpus([ROOT / "corpora" / "sonnets.txt"])
    assert runs.base_fit(sonnets, model, {}) < UNLIKE_BASE_LOSS - 0.2  # 1.65
    assert runs.base_fit(read_corpus([german]), model, {}) > UNLIKE_BASE_LOSS + 1  # 3.2


def test_fine_tuning_takes_the_brisker_rate_only_for_a_text_the_base_scores_over_the_bound():
    gentle = FINETUNE_DEFAULTS["lr"]
    assert choice.finetune_lr(1.2) == choice.finetune_lr(UNLIKE_BASE_LOSS) == (gentle, "")
    assert choice.finetune_lr(2.16) == (BRISK_LR, (
        f"fine-tuning at lr {BRISK_LR:g}, not {gentle:g}: the base scores 2.16 nats a character "
        f"on this text (over {UNLIKE_BASE_LOSS:g}), so it has further to go"))
    assert choice.finetune_lr(float("nan")) == (gentle, "")  # nothing known of the text


RUSSIAN = "Он читает файлы и выводит их содержимое на стандартный вывод. "


def test_the_score_counts_the_text_s_new_characters_at_the_probability_they_start_from(tmp_path):
    # English the base knows well, and Russian, whose letters it has never seen
    path = tmp_path / "en-ru.txt"
    path.write_text(("It reads the files and writes them to the standard output. " + RUSSIAN
                     + "\n") * 60)
    corpus, base = read_corpus([path]), runs.builtin_base().model
    grown = transfer.grown(base, base.vocab.merged(corpus.vocab), np.random.default_rng(0))
    assert 0.3 < coverage(corpus, base.vocab) < 0.7
    assert runs.base_fit(corpus, base, {}) < UNLIKE_BASE_LOSS  # the characters it knows, alone
    assert runs.base_fit(corpus, grown, {}) > UNLIKE_BASE_LOSS + 1


def test_a_timed_run_needs_the_base_speed():
    with pytest.raises(ValueError, match="speed"):
        start_from_base(95_650, 1.0, {"max_time": 120.0})


def test_coverage_counts_each_occurrence_of_the_text_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("aaaa\u4e00\u4e01 b\u4e00 ")  # 10 characters, 3 of them CJK
    assert coverage(read_corpus([path]), Vocab(BASE_CHARS)) == pytest.approx(0.7)


# ---------------------------------------------------------------------------- charrnn train

def test_train_fine_tunes_the_base_by_default_and_says_so(base, sonnets, tmp_path):
    r = run(["train", sonnets, "-o", "m.npz", *SMALL])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.origin["name"] == "english.npz" and ck.origin["val_loss"] == 2.4
    assert ck.chosen["options"] == {"init_from": "english"}
    assert ck.chosen["reason"].endswith(", 100% of its characters in the english base")
    assert (ck.model.config.hidden_size, ck.model.config.num_layers) == (12, 1)
    assert ck.model.config.dropout == 0.1  # the base's
    assert ck.resume.train_config.lr == FINETUNE_DEFAULTS["lr"]
    assert ck.resume.train_config.weight_decay == FINETUNE_DEFAULTS["weight_decay"] == 0
    assert set(BASE_CHARS) <= set(ck.model.vocab.chars)
    assert "fine-tuned from english.npz" in r.output
    assert f"(chosen for {ck.chosen['reason']}; --from-scratch for a new model)" in r.output
    shown = run(["inspect", "m.npz"]).output
    assert "fine-tuned from" in shown and "the english base, for" in shown
    doc = json.loads(run(["inspect", "m.npz", "--json"]).output)
    assert doc["origin"] == ck.origin and doc["chosen"] == ck.chosen
    assert run(["inspect", "m.npz", "--html", "page.html"]).exit_code == 0
    page = (tmp_path / "page.html").read_text()
    assert "<th>fine-tuned from</th><td>english.npz (sha256 " in page
    assert "<th>chosen by charrnn</th><td>the english base, for " in page


def test_from_scratch_trains_a_new_model(base, sonnets, tmp_path):
    r = run(["train", sonnets, "-o", "m.npz", "--from-scratch", *SMALL])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.origin is None and "init_from" not in ck.chosen["options"]
    assert ck.model.config.hidden_size == choice.WIDTHS[0]
    assert "from scratch:" not in ck.chosen["reason"] and "fine-tuned" not in r.output
    assert ck.resume.train_config.weight_decay == 0.1  # a new model's decay


def test_a_run_from_the_base_on_a_text_unlike_its_own_fine_tunes_briskly_scoring_it_once(
        base, sonnets, tmp_path, monkeypatch):
    monkeypatch.setattr(choice, "UNLIKE_BASE_LOSS", 1.0)  # under the untrained base's 4.0
    scored = []
    fit = runs.base_fit
    monkeypatch.setattr(runs, "base_fit", lambda *a: scored.append(fit(*a)) or scored[-1])
    r = run(["train", sonnets, "-o", "m.npz", *SMALL])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.origin["name"] == "english.npz" and ck.resume.train_config.lr == BRISK_LR
    assert len(scored) == 1 and scored[0] > 1.0
    assert f"note: {choice.finetune_lr(scored[0])[1]}" in " ".join(r.output.split())


def test_a_given_shape_trains_a_new_model_without_asking(base, sonnets, tmp_path):
    r = run(["train", sonnets, "-o", "m.npz", "--hidden-size", "8", *SMALL])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.origin is None and ck.model.config.hidden_size == 8
    assert "from scratch:" not in ck.chosen["reason"]


def test_a_text_in_another_script_trains_from_scratch_and_the_start_line_says_why(
        base, tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("a run the base does not start needs no score of it")

    monkeypatch.setattr(runs, "base_fit", refuse)
    text = tmp_path / "cjk.txt"
    text.write_text("\u4e00\u4e01\u4e02\u4e03\u3002\n" * 400)
    r = run(["train", text, "-o", "m.npz", *SMALL])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.origin is None
    assert ck.chosen["reason"].endswith("; from scratch: 17% of its characters are in the "
                                        "english base")  # the newlines
    assert "from scratch: 17% of its characters are in the english base" in r.output


def test_a_timed_run_that_declines_the_base_plans_its_new_model_from_the_speeds_measured(
        base, tmp_path):
    text = tmp_path / "cjk.txt"
    text.write_text("\u4e00\u4e01\u4e02\u4e03\u3002\n" * 400)
    r = run(["train", text, "-o", "m.npz", "--max-time", "2s", "--batch-size", "4",
             "--seq-len", "16"])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.origin is None and ck.model.config.hidden_size == choice.WIDTHS[0]
    # the coverage declined the base before its shape was timed: the new model's is first
    assert list(ck.chosen["measured"]["chars_per_s"])[0] == "GRU 2x256"
    assert "GRU 1x12" not in ck.chosen["measured"]["chars_per_s"]
    assert "from scratch: 17% of its characters" in ck.chosen["reason"]


def test_from_scratch_and_init_from_are_refused_together(base, sonnets):
    r = run(["train", sonnets, "--from-scratch", "--init-from", "english", *SMALL])
    assert r.exit_code == 2
    assert "--from-scratch trains a new model and --init-from fine-tunes one" in r.output


def test_a_local_file_named_english_is_not_the_default_base(base, sonnets, tmp_path):
    (tmp_path / "english").write_text("not a model")
    r = run(["train", sonnets, "-o", "m.npz", *SMALL])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(tmp_path / "m.npz").origin["name"] == "english.npz"


def test_a_run_from_the_base_resumes_as_a_fine_tuned_run(base, sonnets, tmp_path):
    assert run(["train", sonnets, "-o", "m.npz", *SMALL]).exit_code == 0
    first = checkpoint.load(tmp_path / "m.npz")
    r = run(["train", sonnets, "-o", "m.npz", "--resume", "--max-steps", "8"])
    assert r.exit_code == 0, r.output
    again = checkpoint.load(tmp_path / "m.npz")
    assert again.resume.step == 8 and again.origin == first.origin
    assert again.chosen == first.chosen and again.model.vocab == first.model.vocab


def test_a_timed_run_from_the_base_measures_the_base_speed(base, sonnets, tmp_path):
    r = run(["train", sonnets, "-o", "m.npz", "--max-time", "3s", "--batch-size", "4",
             "--seq-len", "16"])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.chosen["options"] == {"init_from": "english"}
    assert list(ck.chosen["measured"]["chars_per_s"]) == ["GRU 1x12"]
    assert "characters/s, measured), 100% of its characters" in ck.chosen["reason"]


def test_a_corrupted_built_in_base_is_refused_in_one_line_and_from_scratch_still_trains(
        base, sonnets, tmp_path):
    path = builtin.FOLDER / "english.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    r = run(["train", sonnets, "-o", "m.npz", *SMALL])
    assert r.exit_code != 0 and "Traceback" not in r.output
    message = [line for line in r.output.splitlines() if line.strip()]
    assert len(message) == 1 and "english.npz" in message[0], r.output
    assert message[0].endswith("(the built-in english base; --from-scratch trains without it)")
    assert not (tmp_path / "m.npz").exists()
    assert run(["train", sonnets, "-o", "m.npz", "--from-scratch", *SMALL]).exit_code == 0


def test_from_scratch_with_resume_is_refused_and_the_resume_hint_drops_it(base, sonnets):
    r = run(["train", sonnets, "-o", "m.npz", "--from-scratch", "--resume"])
    assert r.exit_code == 2
    assert "--from-scratch trains a new model and --resume continues the one in -o/--output" \
        in r.output
    from charrnn.cli.train import _resume_command
    assert _resume_command(["x.txt", "--from-scratch", "--max-time", "2m"]) == \
        "x.txt --max-time 2m --resume"


def test_the_library_trains_a_new_model_unless_asked_to_consider_the_base(base, sonnets,
                                                                       tmp_path):
    from charrnn import read_corpus, train
    corpus = read_corpus([sonnets])
    options = {"batch_size": 4, "seq_len": 16, "max_steps": 2}
    list(train(corpus, tmp_path / "a.npz", train_options=options))
    list(train(corpus, tmp_path / "b.npz", train_options=options, from_scratch=False))
    assert checkpoint.load(tmp_path / "a.npz").origin is None
    assert checkpoint.load(tmp_path / "b.npz").origin["name"] == "english.npz"
