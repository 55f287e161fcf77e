"""A timed run's plan from this machine's measured speed: the probe, the thread counts it times,
its cost in the run's time, and the record in the model file."""

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from charrnn import checkpoint, model_meta, runs
from charrnn.blas import ROOM, ThreadChooser, ThreadPlan
from charrnn.cli import main
from charrnn.config import shape_name
from charrnn.npzfile import Invalid
from charrnn.speed import COST_POWER, SHARE, SpeedProbe, estimate
from charrnn.timing import RunTime

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-len", "16"]


def probe(seconds, counts=(None,)):
    return SpeedProbe(vocab_size=20, batch_size=4, seq_len=16, counts=lambda: iter(counts),
                      seconds=seconds)


def test_the_probe_times_steps_of_each_shape_once_and_records_them():
    p = probe(60.0)
    (fast, measured), (slow, _) = p.speed("gru", 8, 1), p.speed("lstm", 64, 2)
    assert fast > slow > 0 and measured
    assert p.speed("gru", 8, 1) == (fast, True)  # measured once
    record = p.record()
    assert set(record["chars_per_s"]) == {"GRU 1x8", "LSTM 2x64"}
    assert record["chars_per_s"]["GRU 1x8"] == round(fast)
    assert 0 < record["seconds"] < 60.0


def test_the_probe_keeps_the_fastest_thread_count_and_times_later_shapes_at_it():
    timed = []

    def measure(cell, width, layers, count, must):
        timed.append((width, count, must))
        return {1: 1000.0, 2: 3000.0}[count] / width

    p = probe(60.0, counts=(1, 2))
    p._measure = measure
    assert p.speed("gru", 8, 1) == (375.0, True)
    assert p.speed("gru", 16, 1) == (187.5, True)
    assert timed == [(8, 1, True), (8, 2, True), (16, 2, False)]


def test_the_first_shape_always_gets_a_speed_and_the_allowance_bounds_the_rest():
    p = probe(0.0)
    first, measured = p.speed("gru", 8, 1)
    assert first > 0 and measured
    # the 1x16 costs 4x the 1x8's multiply-adds: 4^0.8 = 3.03x its time
    assert p.speed("gru", 16, 1) == (pytest.approx(first / 4 ** COST_POWER), False)
    assert list(p.record()["chars_per_s"]) == [shape_name("gru", 8, 1)]


def test_a_shape_is_estimated_from_the_nearest_measured_one_of_its_cell():
    measured = {("gru", 256, 2): 30_000.0, ("gru", 512, 2): 10_000.0, ("lstm", 384, 2): 1.0}
    # the 2x384 costs 2.25x the 2x256's multiply-adds and 0.5625x the 2x512's: nearer the 2x256
    assert estimate(("gru", 384, 2), measured) == pytest.approx(30_000 / 2.25 ** COST_POWER)
    assert estimate(("gru", 256, 3), measured) == pytest.approx(30_000 / (5 / 3) ** COST_POWER)
    # no RNN measured: the nearest of any cell, here the GRU 2x256 of the same cost
    assert estimate(("rnn", 256, 2), measured) == 30_000.0
    assert estimate(("lstm", 256, 2), measured) == pytest.approx(2.25 ** COST_POWER)


def _steps_taken(monkeypatch):
    from charrnn.model import CharRNN
    taken = []
    real = CharRNN.loss_and_grad

    def counted(self, *args, **kwargs):
        taken.append(self.config.hidden_size)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CharRNN, "loss_and_grad", counted)
    return taken


def test_the_first_shape_gets_a_timed_step_at_every_count_however_short_the_allowance(
        monkeypatch):
    taken = _steps_taken(monkeypatch)
    p = probe(0.0, counts=(1, 2))
    assert p.speed("gru", 8, 1)[1]
    assert taken == [8] * 4  # at each count: one untimed step, one timed
    assert not p.speed("gru", 16, 1)[1] and taken == [8] * 4  # no time left for another


def test_a_count_takes_at_most_half_the_allowance_left_beyond_its_first_timed_step(
        monkeypatch):
    from charrnn import speed
    taken = _steps_taken(monkeypatch)
    assert probe(60.0).speed("gru", 8, 1)[1]
    assert len(taken) == 1 + speed.TIMED_STEPS  # time enough for every step
    clock = iter(range(0, 1000, 10))  # every reading 10 s after the one before
    monkeypatch.setattr(speed.time, "perf_counter", lambda: float(next(clock)))
    taken.clear()
    p = probe(100.0)  # every clock reading 10 s on: half of the 100 s holds the untimed step
    assert p.speed("gru", 8, 1)[1]  # and one timed step; the whole 100 s would hold two
    assert len(taken) == 2


def test_the_counts_timed_are_the_pinned_one_or_those_the_chooser_may_take():
    assert list(ThreadPlan(fixed=2).counts_to_time()) == [2]
    assert list(ThreadPlan().counts_to_time()) == [None]

    class Blas:
        def __init__(self):
            self.n = 2

        def get(self):
            return self.n

        def set(self, n):
            self.n = n

    for idle, expected in ((ROOM - 0.1, [1]), (ROOM + 0.1, [1, 2]), (None, [1, 2])):
        chooser = ThreadChooser(blas=Blas(), free_cores=lambda idle=idle: idle)
        assert list(ThreadPlan(chooser=chooser).counts_to_time()) == expected


def test_the_time_spent_measuring_counts_in_the_runs_time():
    clock = RunTime(chars_per_step=64, head_start=3.0)
    assert 3.0 <= clock.elapsed() < 3.5
    assert clock.split()["other"] >= 3.0


def _text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:4000])
    return path


def test_a_timed_run_records_the_measured_speed_shows_it_and_keeps_its_time(tmp_path):
    out = tmp_path / "m.npz"
    began = time.perf_counter()
    r = CliRunner().invoke(main, ["train", str(_text(tmp_path)), "-o", str(out), "--max-time",
                                  "3s", "--eval-every", "5", *TINY])
    took = time.perf_counter() - began
    assert r.exit_code == 0, r.output
    chosen = checkpoint.load(out).chosen
    measured = chosen["measured"]
    assert list(measured["chars_per_s"]) == ["GRU 1x8"] and measured["chars_per_s"]["GRU 1x8"] > 0
    assert measured["seconds"] <= SHARE * 3 + 1.0  # the allowance, and one step at most
    assert "characters/s, measured)" in chosen["reason"] and chosen["reason"] in r.output
    assert took < 3 + 2.0  # the measuring is inside the run's 3 seconds (startup aside)
    doc = json.loads(CliRunner().invoke(main, ["inspect", str(out), "--json"]).output)
    assert doc["chosen"]["measured"] == measured


def test_a_run_bounded_by_steps_or_with_every_option_given_measures_nothing(tmp_path,
                                                                             monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("nothing to time")

    monkeypatch.setattr(runs, "SpeedProbe", refuse)
    out = tmp_path / "m.npz"
    r = CliRunner().invoke(main, ["train", str(_text(tmp_path)), "-o", str(out), "--max-steps",
                                  "2", *TINY])
    assert r.exit_code == 0, r.output
    assert "measured" not in checkpoint.load(out).chosen
    r = CliRunner().invoke(main, ["train", str(_text(tmp_path)), "-o", str(out), "--force",
                                  "--max-time", "2s", "--cell", "gru", "--dropout", "0.1",
                                  "--epochs", "3", *TINY])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out).chosen is None


@pytest.mark.parametrize("measured", [
    {"chars_per_s": {"GRU 2x256": -1}, "seconds": 1.0},
    {"chars_per_s": {"GRU 2x256": 1000}},
    {"chars_per_s": ["GRU 2x256"], "seconds": 1.0},
    {"chars_per_s": {"GRU 2x256": 1000}, "seconds": 1.0, "more": 1},
])
def test_a_malformed_measurement_is_refused(measured):
    with pytest.raises(Invalid, match="chosen must be"):
        model_meta._check_chosen({"options": {"dropout": 0.1}, "reason": "r",
                                  "measured": measured})
    model_meta._check_chosen({"options": {"dropout": 0.1}, "reason": "r",
                              "measured": {"chars_per_s": {"GRU 2x256": 1000}, "seconds": 1}})


def test_a_small_corpus_is_timed_at_the_batch_and_window_it_trains_with(tmp_path,
                                                                       monkeypatch):
    built = []

    class Recorded(SpeedProbe):
        def __init__(self, vocab_size, batch_size, seq_len, counts, seconds):
            built.append((batch_size, seq_len))
            super().__init__(vocab_size, batch_size, seq_len, counts, seconds)

    monkeypatch.setattr(runs, "SpeedProbe", Recorded)
    path = tmp_path / "small.txt"
    path.write_text("a small text, " * 30)  # 420 characters: 378 train
    from charrnn.data import read_corpus
    state, cfg, notes = runs.new_run(read_corpus([path]), {}, {"max_time": 5.0})
    assert built == [(cfg.batch_size, cfg.seq_len)] == [(5, 64)]
