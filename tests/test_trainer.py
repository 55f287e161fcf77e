"""The Trainer on its own, without the command line: its phases, the schedule, the stop
conditions, divergence and the checkpoint cadence."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from charrnn import checkpoint
from charrnn.config import TrainConfig
from charrnn.data import read_corpus
from charrnn.errors import DivergenceError
from charrnn.runs import new_run
from charrnn.schedule import COSINE_FLOOR, lr_at
from charrnn.training import Trainer

SONNETS = Path(__file__).resolve().parents[1] / "corpora" / "sonnets.txt"
TINY = {"cell": "lstm", "hidden_size": 12, "num_layers": 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(SONNETS.read_text()[:5000])
    return read_corpus([path])


def trainer(corpus, tmp_path, should_stop=lambda: False, **options):
    """A Trainer for a new tiny model writing tmp_path/m.npz; options are TrainConfig fields."""
    state, cfg, notes = new_run(corpus, TINY, {"batch_size": 4, "seq_len": 16, **options})
    return Trainer(state, cfg, corpus, tmp_path / "m.npz", notes=notes, should_stop=should_stop)


def kinds(reports):
    return [(r.kind, r.step) for r in reports if r.kind in ("eval", "saved", "done")]


def test_the_checkpoint_cadence_is_every_eval_every_steps_and_at_the_end(corpus, tmp_path):
    t = trainer(corpus, tmp_path, max_steps=11, eval_every=4)
    reports = list(t.reports())
    assert kinds(reports) == [("eval", 4), ("saved", 4), ("eval", 8), ("saved", 8),
                              ("eval", 11), ("saved", 11), ("done", 11)]
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.resume.step == 11 and [row["step"] for row in ck.history] == [4, 8, 11]
    assert reports[-1].info["stopped"] == "done" and reports[-1].info["steps_this_run"] == 11


def test_a_run_ending_on_an_evaluation_adds_no_second_row(corpus, tmp_path):
    reports = list(trainer(corpus, tmp_path, max_steps=8, eval_every=4).reports())
    assert kinds(reports) == [("eval", 4), ("saved", 4), ("eval", 8), ("saved", 8),
                              ("saved", 8), ("done", 8)]


def test_step_advances_the_position_and_a_pass_restarts_the_streams(corpus, tmp_path):
    t = trainer(corpus, tmp_path, max_steps=100)
    per_pass = len(t.batches)
    assert per_pass >= 2
    losses = [t.step() for _ in range(per_pass - 1)]
    assert all(math.isfinite(x) and 0 < x < 10 for x in losses)
    assert (t.state.step, t.state.window, t.state.epoch) == (per_pass - 1, per_pass - 1, 0)
    assert np.abs(t.state.hidden).sum() > 0  # the state carries from window to window
    t.step()
    assert (t.state.step, t.state.window, t.state.epoch) == (per_pass, 0, 1)
    assert np.abs(t.state.hidden).sum() == 0  # a new pass starts from the zero state


def test_the_cosine_schedule_reaches_its_floor_at_the_step_limit(corpus, tmp_path):
    t = trainer(corpus, tmp_path, max_steps=12, eval_every=1, lr=0.01)
    assert t.rate() == 0.01  # before any step
    list(t.reports())
    rates = [row["lr"] for row in t.state.history]
    expected = [0.01 * (COSINE_FLOOR + (1 - COSINE_FLOOR) * (1 + math.cos(math.pi * s / 12)) / 2)
                for s in range(12)]  # step s + 1 is taken at progress s / 12
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert t.rate() == pytest.approx(0.01 * COSINE_FLOOR)


def test_step_decay_multiplies_the_rate_every_so_many_steps():
    cfg = TrainConfig(lr=0.1, lr_schedule="constant", lr_decay=0.5, lr_decay_every=3)
    assert [lr_at(cfg, s, 0.0) for s in range(8)] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05,
                                                       0.025, 0.025]
    assert lr_at(TrainConfig(lr=0.1, lr_schedule="constant"), 10**6, 1.0) == 0.1


def test_patience_stops_the_run_after_that_many_evaluations_without_a_better_loss(
        corpus, tmp_path, monkeypatch):
    from charrnn import training

    losses = iter([3.0, 2.0, 2.5, 2.6, 2.1, 1.0])
    monkeypatch.setattr(training, "evaluate", lambda model, ids: next(losses))
    t = trainer(corpus, tmp_path, max_steps=100, eval_every=2, patience=3)
    assert t.stop_reason() is None
    reports = list(t.reports())
    assert reports[-1].info["stopped"] == "stalled" and t.stop_reason() == "stalled"
    assert [row["val_loss"] for row in t.state.history] == [3.0, 2.0, 2.5, 2.6, 2.1]
    assert t.state.best == {"step": 4, "val_loss": 2.0} and t.state.step == 10


def test_a_stop_request_saves_the_latest_state_without_another_validation(corpus, tmp_path):
    polls = itertools.count()
    t = trainer(corpus, tmp_path, max_steps=100, eval_every=4,
                should_stop=lambda: next(polls) >= 6)
    reports = list(t.reports())
    assert reports[-1].info["stopped"] == "interrupted"
    assert kinds(reports) == [("eval", 4), ("saved", 4), ("saved", 6), ("done", 6)]
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.resume.step == 6 and [row["step"] for row in ck.history] == [4]


def test_the_time_limit_is_a_stop_reason(corpus, tmp_path):
    t = trainer(corpus, tmp_path, max_steps=100, max_time=1e-9)
    assert t.stop_reason() == "time"
    reports = list(t.reports())
    assert reports[-1].info["stopped"] == "time" and t.state.step == 0
    assert checkpoint.load(tmp_path / "m.npz").resume.step == 0


def test_divergence_before_any_save_says_nothing_was_saved(corpus, tmp_path):
    t = trainer(corpus, tmp_path, max_steps=10, lr=1e30, grad_clip=0)
    with pytest.raises(DivergenceError, match=r"^training diverged at step \d+: .*; nothing "
                       r"was saved to .*m\.npz\. Try a lower lr, or clipping the "
                       r"gradient \(grad_clip, e\.g\. 5\)$"):
        list(t.reports())
    assert not (tmp_path / "m.npz").exists()


def test_divergence_after_a_save_names_the_intact_file(corpus, tmp_path, monkeypatch):
    t = trainer(corpus, tmp_path, max_steps=10, eval_every=2)
    reports = t.reports()
    while next(reports).kind != "saved":
        pass
    before = (tmp_path / "m.npz").read_bytes()
    t.state.model.params["head.b"][0] = np.nan  # as an update that overflowed would leave it
    with pytest.raises(DivergenceError, match=r"training diverged at step [23]: .*m\.npz "
                       r"\(step 2\) is intact\. Try a lower lr or grad_clip, then resume=True$"):
        list(reports)
    assert (tmp_path / "m.npz").read_bytes() == before


def test_the_best_weights_are_saved_for_sampling_and_the_latest_for_resuming(
        corpus, tmp_path, monkeypatch):
    from charrnn import training

    losses = iter([2.0, 3.0])
    monkeypatch.setattr(training, "evaluate", lambda model, ids: next(losses))
    t = trainer(corpus, tmp_path, max_steps=4, eval_every=2, patience=0)
    best_at_2 = {}
    for r in t.reports():
        if r.kind == "eval" and r.step == 2:
            best_at_2 = {k: v.copy() for k, v in t.state.model.params.items()}
    ck = checkpoint.load(tmp_path / "m.npz")
    assert ck.best == {"step": 2, "val_loss": 2.0}
    for k, v in ck.model.params.items():
        np.testing.assert_array_equal(v, best_at_2[k])
        np.testing.assert_array_equal(ck.resume.params[k], t.state.model.params[k])
    assert any(not np.array_equal(ck.model.params[k], ck.resume.params[k]) for k in best_at_2)


# ----------------------------------------------------------------------------- validation cost

def test_a_long_validation_text_is_scored_on_the_same_evenly_spaced_pieces_every_time():
    from charrnn.evaluation import PIECE_CHARS, SAMPLE_PIECES, predictions, validation_sample

    short = np.arange(SAMPLE_PIECES * PIECE_CHARS) % 7
    same, record = validation_sample(short)
    assert same is short and record == {"chars": len(short), "of": len(short)}
    long = np.arange(1_000_003) % 251
    pieces, record = validation_sample(long)
    assert pieces.shape == (SAMPLE_PIECES, PIECE_CHARS) == (64, 2049)
    assert record == {"chars": 64 * 2049, "of": 1_000_003, "pieces": 64, "piece_chars": 2049}
    assert np.array_equal(pieces[0], long[:2049]) and np.array_equal(pieces[-1], long[-2049:])
    starts = [(1_000_003 - 2049) * k // 63 for k in range(64)]  # evenly spaced
    assert all(np.array_equal(p, long[a:a + 2049]) for p, a in zip(pieces, starts, strict=True))
    assert np.ptp(np.diff(starts)) <= 1
    again, _ = validation_sample(long)
    assert np.array_equal(again, pieces)
    assert predictions(pieces) == 64 * 2048 and predictions(short) == len(short) - 1


def test_pieces_score_as_streams_of_their_own():
    from charrnn import CharRNN, ModelConfig
    from charrnn.evaluation import evaluate

    model = CharRNN(ModelConfig(hidden_size=8, num_layers=1, vocab_size=11), seed=3)
    pieces = np.random.default_rng(0).integers(0, 11, (5, 300))
    each = [evaluate(model, p) for p in pieces]
    # one batch of five streams against five of one: float32 products of other shapes, which
    # agree to rounding (a few ulp of float32 in the mean)
    assert evaluate(model, pieces) == pytest.approx(np.mean(each), rel=1e-6)


def test_the_default_validation_interval_keeps_validation_a_small_share_of_the_time():
    from charrnn.timing import EVAL_COST
    from charrnn.training import MIN_EVAL_EVERY, VALIDATION_SHARE, validation_interval

    assert validation_interval(9_564, 2048) == MIN_EVAL_EVERY == 60  # a small text: often
    assert validation_interval(12_000, 2048) == 60 < validation_interval(12_500, 2048)
    every = validation_interval(64 * 2048, 2048)  # the largest that is scored
    assert every == math.ceil(EVAL_COST * 64 * 2048 / (VALIDATION_SHARE * 2048)) == 640
    assert EVAL_COST * 64 * 2048 / (every * 2048) <= VALIDATION_SHARE
    assert validation_interval(64 * 2048, 4096) == 320  # twice the characters per step


def test_the_time_split_adds_up_to_the_wall_time(corpus, tmp_path):
    """Training steps, validation, saving and the rest add up to the run's wall time."""
    state, cfg, notes = new_run(corpus, {"hidden_size": 128, "num_layers": 2},
                                {"batch_size": 16, "seq_len": 64, "max_steps": 24,
                                 "eval_every": 8})
    done = list(Trainer(state, cfg, corpus, tmp_path / "m.npz").reports())[-1]
    split, wall = done.info["time_split"], done.info["seconds"]
    assert set(split) == {"steps", "validation", "saving", "samples", "other"}
    assert split["steps"] > 0 and split["validation"] > 0 and split["saving"] > 0
    assert sum(split.values()) == pytest.approx(wall, rel=1e-4)  # "other" is the rest
    # the share "other" takes is a speed figure: benchmarks/bench_overhead.py reports it
    assert done.info["chars_per_s"] == pytest.approx(24 * 16 * 64 / wall, rel=0.01)
    assert 24 * 16 * 64 / split["steps"] > done.info["chars_per_s"]  # steps alone are faster
    assert checkpoint.load(tmp_path / "m.npz").resume.spent == pytest.approx(split, abs=0.05)


def test_a_long_validation_text_resumes_exactly_with_the_default_interval(tmp_path):
    """Scored on its pieces, at the interval chosen from them: stopped, resumed, the same bits
    (on the same pinned thread count)."""
    from charrnn import training
    from charrnn.blas import one_thread
    from charrnn.evaluation import evaluate, validation_sample

    path = tmp_path / "long.txt"
    path.write_text(SONNETS.read_text() * 15)  # 1.4 MB: 143 KB held out, more than is scored
    corpus = read_corpus([path])
    options = {"model_options": {"hidden_size": 8, "num_layers": 1},
               "train_options": {"batch_size": 4, "seq_len": 16, "max_steps": 30}, "threads": 1}
    reports = list(training.train(corpus, tmp_path / "whole.npz", **options))
    assert reports[0].info["eval_every"] > 30 and reports[0].info["validation"]["pieces"] == 64
    polls = itertools.count()
    list(training.train(corpus, tmp_path / "parts.npz", should_stop=lambda: next(polls) >= 13,
                        **options))
    list(training.train(corpus, tmp_path / "parts.npz", resume=True, threads=1))
    whole, parts = checkpoint.load(tmp_path / "whole.npz"), checkpoint.load(tmp_path / "parts.npz")
    for k, v in whole.resume.params.items():
        np.testing.assert_array_equal(v, parts.resume.params[k])
    assert [r["val_loss"] for r in whole.history] == [r["val_loss"] for r in parts.history]
    assert whole.validation == parts.validation == {
        "chars": 64 * 2049, "of": len(corpus) // 10, "pieces": 64, "piece_chars": 2049}
    val_ids = corpus.ids[len(corpus) - len(corpus) // 10:]
    scored, _ = validation_sample(val_ids)
    with one_thread():  # the computation the run made: what the file says it scored
        assert whole.best["val_loss"] == evaluate(whole.model, scored)



def test_no_interval_validation_in_the_last_half_interval_of_a_time_limited_run(
        corpus, tmp_path, monkeypatch):
    """The closing validation comes soon after: the interval's own is left out."""
    def validated(t):
        return [step for kind, step in kinds(t.reports()) if kind == "eval"]

    far = trainer(corpus, tmp_path, max_steps=12, eval_every=4, max_time=1000.0)
    monkeypatch.setattr(far, "elapsed", lambda: 0.0)  # the limit is never near
    assert validated(far) == [4, 8, 12]
    near = trainer(corpus, tmp_path, max_steps=12, eval_every=4, max_time=1000.0)
    # the time left after step k is (9.5 - k) of its mean steps: 5.5 after step 4 (more than
    # half an interval, 2), 1.5 after step 8 (less), and the limit reached at step 10

    def elapsed():
        steps = near.time.steps
        return 1000.0 - (9.5 - steps) * near.time.spent["steps"] / steps if steps else 0.0

    monkeypatch.setattr(near, "elapsed", elapsed)
    assert validated(near) == [4, 10]
