"""The options charrnn chooses for a new model: the rule, an explicit option over the choice,
the record in the model file, the start line and inspect, and a resumed run's stored options."""

from pathlib import Path

import pytest
from click.testing import CliRunner

import charrnn
from charrnn import checkpoint, choice, runs
from charrnn.choice import CHOSEN, choose
from charrnn.cli import main
from charrnn.config import FINETUNE_DEFAULTS, ModelConfig, TrainConfig
from charrnn.data import read_corpus

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-len", "16"]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:4000])
    return path


def machine(chars_per_s):
    """A machine whose GRU 2x256 trains at chars_per_s, and other shapes as the estimate goes:
    a step's cost H^2 (2L - 1) to the power 0.8."""
    def speed(cell, width, layers):
        return chars_per_s * (3 * 256 ** 2 / (width ** 2 * (2 * layers - 1))) ** 0.8, True
    return speed


ZEN3, ZEN5 = machine(13_000), machine(47_000)  # docs/loss.md's two machines


def chosen_options(corpus_chars, model_options=(), speed=ZEN3, **train_options):
    c = choose(corpus_chars, dict(model_options), train_options, speed)
    return {**c.model_options, **c.train_options}


# the table of docs/loss.md, "How the defaults are chosen"
@pytest.mark.parametrize("corpus_chars, limits, speed, width, layers, dropout, epochs", [
    (1_115_394, {"max_time": 600.0}, ZEN3, 256, 3, 0.07, 15),  # tinyshakespeare, 10 minutes
    (1_115_394, {"max_time": 600.0}, ZEN5, 256, 3, 0.2, 15),
    (1_036_335, {"max_time": 300.0}, ZEN3, 256, 3, 0.0, 15),  # the plays, 5 minutes
    (1_036_335, {"max_time": 300.0}, ZEN5, 256, 3, 0.13, 15),
    (95_650, {"max_time": 120.0}, ZEN3, 256, 3, 0.16, 15),  # the Sonnets, 2 minutes
    (95_650, {"max_time": 120.0}, ZEN5, 256, 3, 0.2, 15),
    (24_995, {"max_time": 60.0}, ZEN3, 256, 2, 0.2, 15),  # the poems, 1 minute
    (95_650, {}, None, 256, 3, 0.2, 15),  # the Sonnets, no limit
    (24_995, {}, None, 256, 2, 0.2, 15),  # the poems, no limit: 337k characters
    (1_115_394, {}, None, 256, 3, 0.2, 15),  # tinyshakespeare, no limit
    (100_000_000, {}, None, 512, 2, 0.0, 0.56),  # 100 MB, no limit: 50 million characters
])
def test_the_rule_gives_the_documented_configurations(corpus_chars, limits, speed, width,
                                                      layers, dropout, epochs):
    assert chosen_options(corpus_chars, speed=speed, **limits) == {
        "cell": "gru", "hidden_size": width, "num_layers": layers, "dropout": dropout,
        "epochs": epochs}


def test_a_run_of_fewer_than_four_passes_has_no_dropout():
    def dropout(max_steps):  # 2,048 characters a step, 90,000 to train on
        return chosen_options(100_000, max_steps=max_steps)["dropout"]

    assert dropout(175) == 0.0  # 3.98 passes
    assert dropout(176) == 0.05  # 4.0
    assert dropout(440) == 0.13  # 10


def test_a_timed_run_plans_with_the_measured_speed_and_says_so():
    slow, fast = (choose(1_115_394, {}, {"max_time": 600.0}, speed)
                  for speed in (machine(5_000), machine(47_000)))
    assert (slow.model_options["hidden_size"], slow.model_options["num_layers"]) == (256, 3)
    assert slow.model_options["dropout"] < fast.model_options["dropout"]
    # 600 s x the 3x256's speed, over the 90% that trains
    passes = 600 * machine(5_000)("gru", 256, 3)[0] / (1_115_394 - 111_539)
    assert f"10 minutes ({passes:.2g} passes at 3.32k characters/s, measured)" in slow.reason
    assert "(15 passes at 31.2k characters/s, measured)" in fast.reason  # the pass limit


def test_the_start_line_says_when_the_speed_was_estimated():
    def estimated(cell, width, layers):
        return (40_000.0, True) if (width, layers) == (256, 2) else (7_000.0, False)

    c = choose(3_000_000, {}, {"max_time": 600.0}, estimated)
    assert c.model_options["hidden_size"] == 512
    assert c.reason.endswith("at 7k characters/s, estimated)")


def test_a_timed_run_cannot_be_planned_without_a_speed_and_other_runs_need_none():
    with pytest.raises(ValueError, match="speed"):
        choose(96_000, {}, {"max_time": 120.0})

    def refuse(*shape):
        raise AssertionError("a run bounded by steps or passes measures nothing")

    assert choose(96_000, {}, {"max_steps": 100}, refuse) == choose(96_000, {}, {"max_steps": 100})


def test_the_third_layer_starts_at_a_million_characters_and_ends_at_the_wide_model():
    def model(max_steps):  # 2,048 characters a step
        c = chosen_options(10_000_000, max_steps=max_steps)
        return c["num_layers"], c["hidden_size"]

    assert model(488) == (2, 256)  # 999,424 characters
    assert model(489) == (3, 256)  # 1,001,472
    assert model(9765) == (3, 256)  # 19,998,720
    assert model(9766) == (2, 512)  # 20,000,768


@pytest.mark.parametrize("name", CHOSEN)
def test_an_explicit_option_always_wins_over_the_choice(name):
    from charrnn.config import ModelConfig, TrainConfig

    for corpus_chars, limits in [(25_000, {"max_time": 60.0}), (96_000, {"max_time": 120.0}),
                                 (1_115_394, {"max_time": 600.0}), (100_000_000, {})]:
        model_field = name in ModelConfig.__dataclass_fields__
        given = {name: getattr(ModelConfig() if model_field else TrainConfig(), name)}
        c = choose(corpus_chars, given if model_field else {},
                   {**limits, **({} if model_field else given)}, ZEN5)
        assert name not in {**c.model_options, **c.train_options}


def test_the_choice_depends_only_on_its_inputs():
    assert choose(96_000, {}, {"max_time": 120.0}, ZEN3) == choose(96_000, {},
                                                                   {"max_time": 120.0}, ZEN3)


def test_the_budget_is_the_tightest_limit_with_the_time_at_the_given_speed():
    train, speed = 90_000, 20_000.0
    assert choice.budget_chars(train, {"max_time": 6.0}, speed) == 6 * speed
    assert choice.budget_chars(train, {"max_steps": 9}) == 9 * 32 * 64
    assert choice.budget_chars(train, {}) == choice.MAX_PASSES * train == 15 * train
    assert choice.budget_chars(train, {"max_time": 3600.0}, speed) == 15 * train  # the passes
    assert choice.budget_chars(train, {"max_time": 3600.0, "epochs": 3.0}, speed) == 3 * train
    assert choice.budget_chars(train, {"epochs": 0}) == float("inf")  # no limit at all


def test_a_run_without_a_time_or_step_limit_reads_at_most_50_million_characters():
    assert choice.pass_limit(90_000_000, {}) == 0.56  # 100 MB, 10% held out
    assert choice.pass_limit(9_000_000, {}) == 5.56
    assert choice.pass_limit(900_000, {}) == choice.pass_limit(90_000_000, {"max_time": 1}) == 15


def test_a_new_run_records_what_was_chosen_and_the_start_line_says_why(text, tmp_path):
    out = tmp_path / "m.npz"
    r = run(["train", text, "-o", out, "--max-steps", "3", *TINY])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(out)
    expected = chosen_options(4000, {"hidden_size": 8, "num_layers": 1}, max_steps=3,
                              batch_size=4, seq_len=16)
    assert ck.chosen["options"] == expected and ck.chosen["reason"]
    assert ck.model.config.dropout == expected["dropout"]
    names = ", ".join("--" + k.replace("_", "-") for k in expected)
    assert f"(chosen for {ck.chosen['reason']}; {names} to choose yourself)" in r.output
    shown = run(["inspect", out])
    assert "chosen by charrnn" in shown.output and ck.chosen["reason"] in shown.output
    import json
    doc = json.loads(run(["inspect", out, "--json"]).output)
    assert doc["chosen"] == ck.chosen


def test_nothing_is_chosen_when_every_option_is_given(text, tmp_path):
    out = tmp_path / "m.npz"
    r = run(["train", text, "-o", out, "--max-steps", "3", "--cell", "lstm", "--dropout", "0",
             "--epochs", "20", *TINY])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).chosen is None and "chosen for" not in r.output
    assert "chosen by charrnn" not in run(["inspect", out]).output


def test_a_resumed_run_keeps_its_stored_options_and_makes_no_new_choice(text, tmp_path,
                                                                      monkeypatch):
    out = tmp_path / "m.npz"
    assert run(["train", text, "-o", out, "--max-steps", "3", *TINY]).exit_code == 0
    first = checkpoint.load(out)

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run must not choose again")

    monkeypatch.setattr(runs, "choose", refuse)
    r = run(["train", text, "-o", out, "--resume", "--max-steps", "6", "--max-time", "1h"])
    assert r.exit_code == 0, r.output
    again = checkpoint.load(out)
    assert again.resume.step == 6 and again.model.config == first.model.config
    assert again.chosen == first.chosen
    assert again.resume.train_config.epochs == first.resume.train_config.epochs


def test_the_library_chooses_too_and_takes_the_options_it_is_given(text, tmp_path):
    corpus = read_corpus([text])
    small = {"hidden_size": 8, "num_layers": 1}
    limits = {"max_steps": 2, "batch_size": 4, "seq_len": 16}
    list(charrnn.train(corpus, tmp_path / "a.npz", model_options=small, train_options=limits))
    a = checkpoint.load(tmp_path / "a.npz")
    assert a.chosen["options"] == chosen_options(len(corpus), small, **limits)
    list(charrnn.train(corpus, tmp_path / "b.npz", model_options={**small, "dropout": 0.25},
                       train_options=limits))
    b = checkpoint.load(tmp_path / "b.npz")
    assert b.model.config.dropout == 0.25 and "dropout" not in (b.chosen or {}).get("options", {})


# ---------------------------------------------------------------- one home per default


def test_the_library_defaults_are_the_model_and_the_passes_the_rule_starts_from():
    model, train = ModelConfig(), TrainConfig()
    assert (model.cell, model.hidden_size, model.num_layers) == ("gru", 256, 2)
    assert (choice.CELL, choice.WIDTHS[0], choice.MODELS[-1]) == (model.cell, model.hidden_size,
                                                                   (0, 256, model.num_layers))
    assert train.epochs == choice.MAX_PASSES == 15
    small = chosen_options(24_995)  # the poems, no limit: the smallest model, every pass
    assert (small["cell"], small["hidden_size"], small["num_layers"], small["epochs"]) == (
        model.cell, model.hidden_size, model.num_layers, train.epochs)
    assert FINETUNE_DEFAULTS == {"lr": 1e-3, "eval_every": 50, "epochs": 20, "weight_decay": 0}


def test_help_shows_the_defaults_from_their_one_home():
    r = run(["train", "--help"])
    assert r.exit_code == 0
    shown = "".join(r.output.split())  # as wrapped at any width
    train = TrainConfig()
    for text in (f"[default:chosen:{choice.CELL}]",
                 f"chosen:{choice.WIDTHS[0]},or{choice.WIDTHS[1]}wheretheruncantrainon20M"
                 f"charactersormoreatthe{choice.WIDTHS[0]}'sspeed",
                 f"chosen:{choice.MAX_DROPOUT:g}xthepassestherunallows/{choice.MAX_PASSES:g},"
                 f"atmost{choice.MAX_DROPOUT:g};0below{choice.DROPOUT_FROM}passes",
                 f"chosen:{choice.MAX_PASSES:g}(atmost50Mcharacters",
                 f"{FINETUNE_DEFAULTS['epochs']:g}whenfine-tuning;x>=0]",
                 f"[default:{train.lr:g},{FINETUNE_DEFAULTS['lr']:g}whenfine-tuning"
                 f"({choice.BRISK_LR:g}onatextthebasescoresover{choice.UNLIKE_BASE_LOSS:g}nats"
                 "acharacter);x>0]",
                 f"[default:{train.seq_len};", f"[default:{train.optimizer}]",
                 "Unlessgiven,--lris0.001,--eval-everyis50,--epochsis20,--weight-decayis0"
                 f"(--lr{choice.BRISK_LR:g}onatextthebasescoresover{choice.UNLIKE_BASE_LOSS:g}"
                 "natsacharacter).",
                 "--from-scratchTrainanewmodelevenwherecharrnnwouldfine-tunethebuilt-in"
                 "englishbase"):
        assert text in shown, text


def test_an_option_given_at_its_default_value_still_wins(text, tmp_path):
    out = tmp_path / "m.npz"
    r = run(["train", text, "-o", out, "--max-steps", "3", "--cell", "gru", "--epochs", "15",
             *TINY])
    assert r.exit_code == 0, r.output
    assert set(checkpoint.load(out).chosen["options"]) == {"dropout"}
    assert "; --dropout to choose yourself)" in r.output


def test_the_command_and_the_library_train_the_same_run(text, tmp_path):
    r = run(["train", text, "-o", tmp_path / "cli.npz", "--max-steps", "3", *TINY])
    assert r.exit_code == 0, r.output
    list(charrnn.train(read_corpus([text]), tmp_path / "lib.npz",
                       model_options={"hidden_size": 8, "num_layers": 1},
                       train_options={"max_steps": 3, "batch_size": 4, "seq_len": 16}))
    cli, lib = checkpoint.load(tmp_path / "cli.npz"), checkpoint.load(tmp_path / "lib.npz")
    assert cli.model.config == lib.model.config and cli.chosen == lib.chosen
    assert cli.resume.train_config == lib.resume.train_config
