"""The BLAS thread count: the chooser's decisions on simulated step times, and the real
OpenBLAS controls where NumPy has them."""

from pathlib import Path

import numpy as np
import pytest

from charrnn import blas

ROOT = Path(__file__).resolve().parents[1]


class FakeBLAS(blas.OpenBLAS):
    """A thread count that records every change."""

    def __init__(self, n=2):
        self.n, self.changes = n, []
        super().__init__(lambda: self.n, self._set)

    def _set(self, n):
        self.n = n
        self.changes.append(n)


def run(chooser, fake, seconds_for, steps, start=0):
    """Record `steps` steps timed by seconds_for(threads, step); the notes, by step."""
    notes = {}
    for step in range(start, start + steps):
        note = chooser.record(seconds_for(fake.n, step))
        if note:
            notes[step] = note
    return notes


def test_an_idle_machine_keeps_its_threads_and_probes_less_and_less_often():
    fake = FakeBLAS(2)
    chooser = blas.ThreadChooser(fake, first=3, every=50, longest=800)
    probes = []
    for step in range(3000):
        if fake.n == 1 and (not probes or probes[-1] != step - 1):
            probes.append(step)
        assert chooser.record(1.0 if fake.n == 2 else 1.35) is None
    assert fake.n == 2 and set(fake.changes[::2]) == {1} and set(fake.changes[1::2]) == {2}
    # each probe is two steps; then 50, 100, 200, 400, 800, 800 steps before the next
    gaps = [b - a - 2 for a, b in zip(probes, probes[1:], strict=False)]
    assert probes[0] == 3 and gaps == [54, 100, 200, 400, 800, 800]  # 54: 20 x the probe's 2.7 s
    chooser.close()
    assert fake.n == 2


def test_a_busy_machine_switches_to_one_thread_and_back_when_it_is_free_again():
    fake = FakeBLAS(2)
    chooser = blas.ThreadChooser(fake, first=3, every=50, longest=800)
    busy = lambda n, step: 2.0 if n == 2 else 1.0  # noqa: E731
    notes = run(chooser, fake, busy, 100)
    assert fake.n == 1 and list(notes.values()) == [
        "1 BLAS thread now: 2.0x faster steps (other processes keep the cores busy)"]
    assert min(notes) <= 5  # decided by the first probe
    idle = lambda n, step: 0.7 if n == 2 else 1.0  # noqa: E731
    notes = run(chooser, fake, idle, 200, start=100)
    assert fake.n == 2 and list(notes.values()) == ["2 BLAS threads again: 1.4x faster steps"]
    chooser.close()
    assert fake.n == 2


def test_a_probe_step_far_slower_ends_the_probe_and_delays_the_next():
    """On one thread, a 2-thread step of 100 s (both cores busy): one such step per probe, and
    the next probe waits for 20 times that in steps."""
    fake = FakeBLAS(2)
    chooser = blas.ThreadChooser(fake, first=3, every=50, longest=800)
    slow = lambda n, step: 100.0 if n == 2 else 1.0  # noqa: E731
    steps_on_two = []
    for step in range(5000):
        seconds = slow(fake.n, step)
        if step >= 3 and fake.n == 2:
            steps_on_two.append(step)
        chooser.record(seconds)
    # after the first three and the probe that chose one thread (steps 3, 4): one probe step
    # 50 steps later, then each 20 x 100 s of one-thread steps after the last
    assert steps_on_two == [55, 2056, 4057]


def test_a_stalled_probe_delays_the_next_by_at_most_the_longest_wait():
    fake = FakeBLAS(2)
    chooser = blas.ThreadChooser(fake, first=3, every=50, longest=800)
    times = iter([1.0] * 3 + [3600.0] + [1.0] * 20000)  # the probe's first step: an hour
    probes = []
    for step in range(20000):
        if fake.n == 1 and (not probes or probes[-1] != step - 1):
            probes.append(step)
        chooser.record(next(times))
    # 20 x 3600 s would be 72,000 one-second steps; the wait is capped at 10 x 800
    assert probes[0] == 3 and probes[1] == 3 + 1 + 8000


def test_closing_restores_and_ends_the_choosing():
    fake = FakeBLAS(2)
    chooser = blas.ThreadChooser(fake, first=3)
    run(chooser, fake, lambda n, _: 1.0, 3)
    assert fake.n == 1  # a probe has begun
    chooser.close()
    assert fake.n == 2 and not chooser.active
    run(chooser, fake, lambda n, _: 1.0, 100)
    assert fake.n == 2 and fake.changes == [1, 2]


def test_one_thread_leaves_nothing_to_choose():
    fake = FakeBLAS(1)
    chooser = blas.ThreadChooser(fake)
    run(chooser, fake, lambda n, _: 1.0, 100)
    assert not chooser.active and fake.changes == []


@pytest.mark.skipif(blas.openblas() is None, reason="NumPy's BLAS here is not OpenBLAS")
def test_the_real_openblas_thread_count_can_be_set_and_restored():
    real = blas.openblas()
    before = real.get()
    assert before >= 1
    try:
        real.set(1)
        assert real.get() == 1
    finally:
        real.set(before)
    assert real.get() == before


def _counts_during_a_run(tmp_path, threads, stop_at, real=None):
    """The BLAS thread count at each step report of a small run, and after it is closed."""
    from charrnn import training
    from charrnn.data import read_corpus

    tmp_path.mkdir(exist_ok=True)
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    real = real or blas.openblas()
    run = training.train(read_corpus([corpus_file]), tmp_path / "m.npz",
                         model_options={"hidden_size": 8, "num_layers": 1},
                         train_options={"batch_size": 4, "seq_len": 16, "max_steps": 50},
                         threads=threads)
    counts = []
    for report in run:
        if report.kind == "step":
            counts.append(real.get())
            if report.step == stop_at:
                break
    run.close()
    return counts, real.get()


needs_threads = pytest.mark.skipif(blas.openblas() is None or blas.openblas().get() < 2,
                                   reason="needs OpenBLAS with two or more threads")


def _disagreement(tmp_path):
    """What a default run says where the real BLAS gives other bits on 1 thread, or None."""
    from charrnn import training
    from charrnn.data import read_corpus

    corpus_file = tmp_path / "agree.txt"
    corpus_file.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:20000])
    run = training.train(read_corpus([corpus_file]), tmp_path / "agree.npz",
                         model_options={"hidden_size": 64, "num_layers": 2, "dropout": 0.1},
                         train_options={"batch_size": 16, "seq_len": 32, "max_steps": 2,
                                        "eval_every": 1})
    notes = [r.text for r in run if r.kind == "notice" and "float32 results" in r.text]
    return notes[0] if notes else None


@needs_threads
def test_by_default_training_follows_the_load_where_the_blas_agrees_across_counts(tmp_path):
    """The default probes one thread after step 3, as auto does, and restores the count."""
    before = blas.openblas().get()
    if note := _disagreement(tmp_path):
        pytest.skip(f"this BLAS's results depend on the thread count ({note})")
    counts, after = _counts_during_a_run(tmp_path, None, 3)
    assert counts == [before, before, 1] and after == before


def test_same_bits_compares_every_array_exactly():
    from charrnn.train_threads import same_bits

    a = (1.5, {"w": np.ones((2, 3), np.float32)}, [np.zeros(2)])
    assert same_bits(a, (1.5, {"w": np.ones((2, 3), np.float32)}, [np.zeros(2)]))
    assert not same_bits(a, (1.5, {"w": np.ones((2, 3), np.float64)}, [np.zeros(2)]))
    assert not same_bits(a, (1.5, {"w": np.ones((3, 2), np.float32)}, [np.zeros(2)]))
    assert not same_bits(a, (1.5, {"v": np.ones((2, 3), np.float32)}, [np.zeros(2)]))
    nudged = np.nextafter(np.float32(1), np.float32(2))
    assert not same_bits(a, (1.5, {"w": np.full((2, 3), nudged)}, [np.zeros(2)]))
    assert same_bits(np.float64("nan"), np.float64("nan"))  # the same bits, though not equal


def test_the_plan_compares_each_kind_of_work_once_on_both_counts(monkeypatch):
    from charrnn.train_threads import ThreadPlan

    fake = FakeBLAS(2)
    plan = ThreadPlan(chooser=blas.ThreadChooser(fake), check=True)
    calls = []

    def steady():
        calls.append(fake.n)
        return np.ones(3)

    assert np.array_equal(plan.run("training step", steady), np.ones(3))
    assert calls == [1, 2] and plan.agrees == {"training step": True} and plan.news == []
    plan.run("training step", steady)
    assert calls == [1, 2, 2]  # compared once: later steps run once, on the current count

    def count_dependent():
        calls.append(fake.n)
        return np.full(3, fake.n, np.float32)

    probe_calls = []
    fake.n = plan.chooser.current = 1  # the chooser has moved to one thread
    result = plan.run("validation", count_dependent,
                      probe=lambda: probe_calls.append(fake.n) or np.float32(fake.n))
    assert probe_calls == [2, 1] and plan.agrees["validation"] is False
    assert result[0] == 2  # computed again on NumPy's count
    assert plan.news == ["the validation gives different float32 results on 1 and 2 BLAS "
                         "threads here: it keeps 2 threads, so that the run can be repeated "
                         "exactly"]
    calls.clear()
    assert plan.run("validation", count_dependent)[0] == 2 and calls == [2] and fake.n == 1
    assert plan.chooser.active  # the steps still follow the load


def test_a_blas_whose_results_depend_on_the_count_keeps_a_fixed_count_and_says_so(
        tmp_path, monkeypatch):
    """A stand-in BLAS whose products change with the thread count, as some builds' do."""
    from charrnn import training
    from charrnn.data import read_corpus
    from charrnn.model import CharRNN

    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake])
    real = CharRNN.loss_and_grad

    def count_dependent(self, *args, **kw):
        loss, grads, state = real(self, *args, **kw)
        grads["head.b"] += np.float32(fake.n * 1e-6)
        return loss, grads, state

    monkeypatch.setattr(CharRNN, "loss_and_grad", count_dependent)
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    run = training.train(read_corpus([corpus_file]), tmp_path / "m.npz",
                         model_options={"hidden_size": 8, "num_layers": 1},
                         train_options={"batch_size": 4, "seq_len": 16, "max_steps": 20})
    notes = [r.text for r in run if r.kind == "notice"]
    assert fake.changes == [1, 2, 2]  # the look at step 1; then the count stays 2
    assert notes == ["the training step gives different float32 results on 1 and 2 BLAS "
                     "threads here: it keeps 2 threads, so that the run can be repeated exactly"]


@needs_threads
def test_one_and_two_threads_train_the_same_model(tmp_path):
    """Where the BLAS agrees across counts, a run pinned to 1 thread and one pinned to 2
    write the same model: every array and every history figure but the times."""
    from charrnn import checkpoint, training
    from charrnn.data import read_corpus

    if note := _disagreement(tmp_path):
        pytest.skip(f"this BLAS's results depend on the thread count ({note})")
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text((ROOT / "corpora" / "sonnets.txt").read_text()[:20000])
    files = []
    for threads in (1, 2):
        out = tmp_path / f"{threads}.npz"
        list(training.train(read_corpus([corpus_file]), out,
                            model_options={"hidden_size": 64, "num_layers": 2, "dropout": 0.1},
                            train_options={"batch_size": 16, "seq_len": 32, "max_steps": 12,
                                           "eval_every": 5, "seed": 7},
                            threads=threads))
        files.append(checkpoint.load(out))
    one, two = files
    for k in one.model.params:
        np.testing.assert_array_equal(one.model.params[k], two.model.params[k])
        np.testing.assert_array_equal(one.resume.params[k], two.resume.params[k])
    assert [{**row, "time": 0} for row in one.history] == \
        [{**row, "time": 0} for row in two.history]
    assert one.best == two.best


@needs_threads
def test_a_fixed_count_holds_for_the_run_and_is_restored(tmp_path):
    before = blas.openblas().get()
    counts, after = _counts_during_a_run(tmp_path, 1, 5)
    assert counts == [1] * 5 and after == before


@needs_threads
def test_auto_probes_one_thread_and_restores_the_count_when_stopped(tmp_path):
    """The first probe starts after step 3 (the next step runs on one thread); closing the
    run there restores the count."""
    before = blas.openblas().get()
    assert before >= 2
    counts, after = _counts_during_a_run(tmp_path, "auto", 3)
    assert counts == [before, before, 1] and after == before


@needs_threads
def test_threads_block_sets_and_restores():
    real = blas.openblas()
    before = real.get()
    with blas.threads(1):
        assert real.get() == 1
    assert real.get() == before
    with blas.threads(None):
        assert real.get() == before


def test_core_share_is_the_training_threads_cpu_over_wall_once_a_window_is_in():
    share = blas.CoreShare(window=1.0)
    share.threads = 2
    share.add(0.6, 0.6, 1.2)
    assert share.share() is None  # 0.6 s: too little to judge (CPU time comes in ticks)
    share.add(0.6, 0.2, 0.6)
    assert share.share() == pytest.approx(0.8 / 1.2)
    assert share.share() is None  # a new window
    share.add(2.0, 1.0, 1.05)  # the other BLAS threads did (almost) nothing: small products
    assert share.share() is None
    share.threads = 1
    share.add(2.0, 1.0, 2.0)
    assert share.share() is None  # one thread: nothing to suggest


def test_the_training_threads_cpu_time_is_its_own():
    """CoreShare reads the stepping thread's clock: at most 1 CPU-second per wall second,
    though OpenBLAS's spinning helpers make the process's own clock run at ~2 here."""
    import time

    from charrnn import CharRNN, ModelConfig

    model = CharRNN(ModelConfig(hidden_size=64, num_layers=2, vocab_size=20))
    ids = np.random.default_rng(0).integers(0, 20, (32, 33))
    wall = cpu = 0.0
    while wall < 0.5:
        w, c = time.perf_counter(), time.thread_time()
        model.loss_and_grad(ids[:, :-1], ids[:, 1:])
        wall, cpu = wall + time.perf_counter() - w, cpu + time.thread_time() - c
    assert cpu / wall < 1.05


def test_a_fixed_count_is_set_then_restored_and_never_probed(tmp_path, monkeypatch):
    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake])
    _counts_during_a_run(tmp_path / "b", 1, 10, real=fake)
    assert fake.changes == [1, 2]


def test_without_openblas_threads_is_a_note_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(blas, "_FOUND", [None])
    from charrnn import training
    from charrnn.data import read_corpus

    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    for threads in (None, 1, "auto"):
        run = training.train(read_corpus([corpus_file]), tmp_path / f"{threads}.npz",
                             model_options={"hidden_size": 8, "num_layers": 1},
                             train_options={"batch_size": 4, "seq_len": 16, "max_steps": 3},
                             threads=threads)
        notes = [r.text for r in run if r.kind == "notice"]
        assert (notes == []) == (threads is None)
        assert all("--threads has no effect here" in n for n in notes)


def test_more_threads_than_cores_is_a_note_and_numpy_integers_are_counts(tmp_path, monkeypatch):
    import os

    from charrnn import training
    from charrnn.data import read_corpus

    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    for threads, noted in ((8, True), (np.int64(2), False)):
        run = training.train(read_corpus([corpus_file]), tmp_path / f"{threads}.npz",
                             model_options={"hidden_size": 8, "num_layers": 1},
                             train_options={"batch_size": 4, "seq_len": 16, "max_steps": 2},
                             threads=threads)
        notes = [r.text for r in run if r.kind == "notice"]
        assert any(f"--threads {threads} is more than this machine's 2 core(s)" in n
                   for n in notes) == noted
    assert fake.changes == [8, 2, 2, 2]


def test_a_commands_loop_follows_the_load_only_where_its_work_agrees(monkeypatch):
    from charrnn.train_threads import following_load

    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake])
    with following_load(lambda: np.ones(4)) as record:
        notes = [record(1.0 if fake.n == 2 else 0.2) for _ in range(8)]  # 1 thread 5x faster
        assert fake.n == 1 and any(n and "1 BLAS thread now" in n for n in notes)
    assert fake.n == 2  # and the count is restored
    fake.changes.clear()
    with following_load(lambda: np.full(4, fake.n, np.float32)) as record:
        for _ in range(10):
            record(1.0 if fake.n == 2 else 0.2)
    assert fake.changes == [1, 2, 2]  # the look at the probe, the restore; no choosing


def test_an_offer_of_the_same_work_timed_on_both_counts_switches_at_once():
    fake = FakeBLAS(2)
    chooser = blas.ThreadChooser(fake)
    assert chooser.offer(1.0, 0.6) is None and fake.changes == []  # not twice as fast
    assert chooser.offer(1.0, 0.25) == ("1 BLAS thread now: 4.0x faster steps (other processes "
                                        "keep the cores busy)")
    assert fake.n == 1 and chooser.current == 1 and chooser.other == 2
    assert run(chooser, fake, lambda n, _: 1.0 if n == 2 else 0.25, 49) == {}  # stays on 1
    assert fake.n == 1
