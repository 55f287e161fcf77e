"""BLAS threads: the chooser's decisions on simulated step times, a run's count, its notes, and
the model it trains on each count."""

from pathlib import Path

import numpy as np
import pytest

from charrnn import blas, checkpoint, training
from charrnn.data import read_corpus

ROOT = Path(__file__).resolve().parents[1]
needs_threads = pytest.mark.skipif(blas.openblas() is None or blas.openblas().get() < 2,
                                   reason="needs OpenBLAS with two or more threads")


class FakeBLAS:
    """A thread count that records every change."""

    def __init__(self, n=2):
        self.n, self.changes = n, []
        self.library = blas.OpenBLAS(lambda: self.n, self.set)

    def set(self, n):
        self.n = n
        self.changes.append(n)


def choose(seconds_for, steps, n=2, free=1.0):
    """A chooser on a fake count of ``n`` whose look finds ``free`` idle cores, fed ``steps``
    steps timed by seconds_for(threads, step): (the count at each step, the notes by step)."""
    fake = FakeBLAS(n)
    chooser = blas.ThreadChooser(fake.library, free_cores=lambda: free)
    chooser.begin()
    counts, notes = [], {}
    for step in range(steps):
        counts.append(fake.n)
        if note := chooser.record(seconds_for(fake.n, step)):
            notes[step] = note
    chooser.close()
    return counts, notes, fake


def tries(counts, of=1):
    """The steps where a try of the count ``of`` begins."""
    return [k for k in range(1, len(counts)) if counts[k] == of != counts[k - 1]]


def test_an_idle_machine_moves_to_its_threads_silently_and_tries_one_less_and_less_often():
    counts, notes, fake = choose(lambda n, _: 1.0 if n == 2 else 1.35, 3000)
    assert counts[:3] == [1, 1, 1] and counts[3:5] == [2, 2] and notes == {}
    # each try of one thread is two steps; the gaps double up to the longest wait (800)
    starts = tries(counts)
    assert [b - a - 2 for a, b in zip(starts, starts[1:], strict=False)] == [100, 200, 400, 800,
                                                                              800]
    assert fake.n == 2 and fake.changes[-1] == 2  # closing restores the library's count


def test_without_a_free_core_more_threads_are_never_tried():
    counts, notes, fake = choose(lambda n, _: 1.0, 1000, free=0.3)
    assert set(counts) == {1} and notes == {} and fake.changes == [1, 2]


def test_a_busy_machine_moves_to_one_thread_and_back_when_it_is_free_again():
    def seconds(n, step):
        busy = 10 <= step < 110
        return (2.0 if busy else 0.7) if n == 2 else 1.0

    counts, notes, _ = choose(seconds, 310)
    assert counts[9] == 2 and counts[109] == 1 and counts[-1] == 2
    assert list(notes.values()) == [
        "1 BLAS thread now: 2.0x faster steps (other processes keep the cores busy)",
        "2 BLAS threads again: 1.4x faster steps"]


def test_a_far_slower_or_stalled_try_delays_the_next_by_20_times_its_time_at_most_10x_longest():
    counts, _, _ = choose(lambda n, _: 100.0 if n == 2 else 1.0, 5000)
    assert tries(counts, of=2) == [3, 2004, 4005]  # each 20 x 100 s of one-thread steps later
    hour = lambda n, step: 3600.0 if step == 3 else 1.0  # noqa: E731 (the try's first step)
    counts, _, _ = choose(hour, 20000)
    assert tries(counts, of=2)[:2] == [3, 3 + 1 + 8000]  # not 72,000 steps later


def test_one_thread_or_no_openblas_leaves_nothing_to_choose(monkeypatch):
    counts, notes, fake = choose(lambda n, _: 1.0, 100, n=1)
    assert set(counts) == {1} and fake.changes == []
    monkeypatch.setattr(blas, "_FOUND", [None])
    assert not blas.ThreadChooser().active
    with blas.threads(1):  # nothing to set
        pass


def test_idle_cores_are_read_from_proc_stat(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    stat = tmp_path / "stat"

    def write(*cpus):  # (busy, idle) ticks of each CPU
        stat.write_text("cpu  1 2 3 4 5 6 7 8 9 10\n" + "".join(
            f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0\n" for n, (busy, idle) in enumerate(cpus))
            + "intr 5 6\n")

    write((100, 100), (100, 100), (100, 100))
    cores = blas.IdleCores(str(stat))
    write((200, 100), (150, 150), (100, 200))  # cpu0 busy, cpu1 half idle; cpu2 is not ours
    assert cores.free() == pytest.approx(0.5)
    assert cores.free() is None  # no tick since: too short to tell
    assert blas.IdleCores(str(tmp_path / "missing")).free() is None


def _run(tmp_path, threads, stop_at=None, steps=50, name="m"):
    """A small run's BLAS count at each step report (stopped after ``stop_at``), its notes."""
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    run = training.train(read_corpus([corpus_file]), tmp_path / f"{name}.npz",
                         model_options={"hidden_size": 8, "num_layers": 1},
                         train_options={"batch_size": 4, "seq_len": 16, "max_steps": steps},
                         threads=threads)
    counts, notes = [], []
    for report in run:
        notes += [report.text] if report.kind == "notice" else []
        if report.kind == "step":
            counts.append(blas.openblas().get() if blas.openblas() else None)
            if report.step == stop_at:
                break
    run.close()
    return counts, notes


@pytest.mark.parametrize("threads", [None, "auto", 1, 3])
def test_a_run_follows_the_load_or_holds_a_pinned_count_and_restores_it(
        tmp_path, monkeypatch, threads):
    import os

    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake.library])
    monkeypatch.setattr(blas.IdleCores, "free", lambda self: 1.0)  # a core is always free
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    counts, notes = _run(tmp_path, threads, stop_at=3)
    # following the load: one thread, and a try of two from the fourth step
    assert counts == ([1, 1, 2] if threads in (None, "auto") else [threads] * 3)
    assert fake.n == 2 and fake.changes[-1] == 2  # restored, though stopped early
    assert notes == ([] if threads != 3 else ["threads=3 is more than this machine's 2 core(s): "
                                              "threads beyond the cores wait for each other, "
                                              "which makes training slower"])


def test_without_openblas_a_thread_option_is_a_note_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(blas, "_FOUND", [None])
    for threads in (None, 1, "auto"):
        counts, notes = _run(tmp_path, threads, steps=3, name=str(threads))
        assert counts == [None] * 3 and len(notes) == (threads is not None)
        assert all(n.startswith("threads has no effect here") for n in notes)


@needs_threads
def test_one_and_two_threads_train_the_same_model_to_float32_rounding(tmp_path):
    """Pinned to 1 and to 2 threads, a run writes the same model but for the rounding of
    BLAS's float32 sums, which may depend on the count: after 12 steps of a 2x64 GRU, every
    weight within 1e-4 of the other run's, relative to the array's largest."""
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:20000])
    files = []
    for threads in (1, 2):
        list(training.train(read_corpus([corpus_file]), tmp_path / f"{threads}.npz",
                            model_options={"hidden_size": 64, "num_layers": 2, "dropout": 0.1},
                            train_options={"batch_size": 16, "seq_len": 32, "max_steps": 12,
                                           "eval_every": 5, "seed": 7}, threads=threads))
        files.append(checkpoint.load(tmp_path / f"{threads}.npz"))
    one, two = files
    for k, v in one.resume.params.items():
        np.testing.assert_allclose(v, two.resume.params[k], rtol=0,
                                   atol=1e-4 * np.abs(v).max(), err_msg=k)
    for a, b in zip(one.history, two.history, strict=True):
        assert a["step"] == b["step"] and a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


@needs_threads
def test_the_real_openblas_count_is_set_and_restored():
    real = blas.openblas()
    before = real.get()
    with blas.threads(1):
        assert real.get() == 1
    with blas.threads(None):
        assert real.get() == before
    assert real.get() == before
