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


def chooser_for(fake, free=1.0, **kw):
    """A chooser on ``fake`` whose look at the other cores sees ``free`` idle ones; begun."""
    chooser = blas.ThreadChooser(fake, first=3, every=50, longest=800, free_cores=lambda: free,
                                 **kw)
    chooser.begin()
    return chooser


def test_an_idle_machine_moves_to_its_threads_silently_and_probes_less_and_less_often():
    fake = FakeBLAS(2)
    chooser = chooser_for(fake)
    assert fake.n == 1  # every run starts on one thread
    probes = []
    for step in range(3000):
        if step > 5 and fake.n == 1 and (not probes or probes[-1] != step - 1):
            probes.append(step)
        assert chooser.record(1.0 if fake.n == 2 else 1.35) is None
        if step == 4:
            assert fake.n == 2  # a two-step probe after the first three steps
    assert fake.n == 2 and chooser.current == 2
    # each probe of one thread is two steps; the gaps double up to the longest wait
    gaps = [b - a - 2 for a, b in zip(probes, probes[1:], strict=False)]
    assert gaps == [100, 200, 400, 800, 800]
    chooser.close()
    assert fake.n == 2


def test_without_a_free_core_more_threads_are_never_tried():
    fake = FakeBLAS(2)
    looks = []
    chooser = blas.ThreadChooser(fake, first=3, every=50,
                                 free_cores=lambda: looks.append(1) or 0.3)
    chooser.begin()
    assert run(chooser, fake, lambda n, _: 1.0, 1000) == {}
    assert fake.changes == [1] and len(looks) == 1 + 20  # begin; then a look every 50 steps


def test_a_busy_machine_switches_to_one_thread_and_back_when_it_is_free_again():
    fake = FakeBLAS(2)
    chooser = chooser_for(fake)
    run(chooser, fake, lambda n, _: 0.7 if n == 2 else 1.0, 10)
    assert fake.n == 2
    busy = lambda n, step: 2.0 if n == 2 else 1.0  # noqa: E731
    notes = run(chooser, fake, busy, 100, start=10)
    assert fake.n == 1 and list(notes.values()) == [
        "1 BLAS thread now: 2.0x faster steps (other processes keep the cores busy)"]
    idle = lambda n, step: 0.7 if n == 2 else 1.0  # noqa: E731
    notes = run(chooser, fake, idle, 200, start=110)
    assert fake.n == 2 and list(notes.values()) == ["2 BLAS threads again: 1.4x faster steps"]
    chooser.close()
    assert fake.n == 2


def test_a_probe_step_far_slower_ends_the_probe_and_delays_the_next():
    """With a core idle but more threads 100x slower (a machine whose load the look misses):
    one such step per probe, and the next probe waits for 20 times that in steps."""
    fake = FakeBLAS(2)
    chooser = chooser_for(fake)
    steps_on_two = []
    for step in range(5000):
        if fake.n == 2:
            steps_on_two.append(step)
        chooser.record(100.0 if fake.n == 2 else 1.0)
    # the probe after the first three steps, then each 20 x 100 s of one-thread steps later
    assert steps_on_two == [3, 2004, 4005]


def test_a_stalled_probe_delays_the_next_by_at_most_the_longest_wait():
    fake = FakeBLAS(2)
    chooser = chooser_for(fake)
    times = iter([1.0] * 3 + [3600.0] + [1.0] * 20000)  # the probe's first step: an hour
    probes = []
    for step in range(20000):
        if fake.n == 2 and (not probes or probes[-1] != step - 1):
            probes.append(step)
        chooser.record(next(times))
    # 20 x 3600 s would be 72,000 one-second steps; the wait is capped at 10 x 800
    assert probes[0] == 3 and probes[1] == 3 + 1 + 8000


def test_holding_a_count_ends_the_choosing_and_closing_restores():
    fake = FakeBLAS(2)
    chooser = chooser_for(fake)
    chooser.hold(1)
    assert not chooser.active and fake.n == 1
    assert run(chooser, fake, lambda n, _: 0.1 if n == 2 else 1.0, 100) == {}
    assert fake.n == 1
    chooser.close()
    assert fake.n == 2 and fake.changes == [1, 1, 2]


def test_idle_cores_are_read_from_proc_stat(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    stat = tmp_path / "stat"

    def write(cpu0, cpu1, cpu2):  # (busy, idle) ticks of each CPU
        stat.write_text("cpu  1 2 3 4 5 6 7 8 9 10\n" + "".join(
            f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0\n" for n, (busy, idle) in
            enumerate((cpu0, cpu1, cpu2))) + "intr 5 6\n")

    write((100, 100), (100, 100), (100, 100))
    cores = blas.IdleCores(str(stat))
    write((200, 100), (150, 150), (100, 200))  # cpu0 busy, cpu1 half idle; cpu2 is not ours
    assert cores.free() == pytest.approx(0.5)
    assert cores.free() is None  # no tick since: too short to tell
    assert blas.IdleCores(str(tmp_path / "missing")).free() is None


def test_closing_restores_and_ends_the_choosing():
    fake = FakeBLAS(2)
    chooser = chooser_for(fake)
    run(chooser, fake, lambda n, _: 1.0, 3)
    assert fake.n == 2  # a probe has begun
    chooser.close()
    assert fake.n == 2 and not chooser.active
    run(chooser, fake, lambda n, _: 1.0, 100)
    assert fake.n == 2 and fake.changes == [1, 2, 2]


def test_one_thread_leaves_nothing_to_choose():
    fake = FakeBLAS(1)
    chooser = blas.ThreadChooser(fake)
    chooser.begin()
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


@pytest.fixture
def a_free_core(monkeypatch):
    """The look at the other cores always finds one idle, whatever else the machine runs."""
    monkeypatch.setattr(blas.IdleCores, "free", lambda self: 1.0)


@needs_threads
def test_by_default_training_follows_the_load_where_the_blas_agrees_across_counts(
        tmp_path, a_free_core):
    """The default starts on one thread, probes NumPy's count after step 3, as auto does, and
    restores the count."""
    before = blas.openblas().get()
    if note := _disagreement(tmp_path):
        pytest.skip(f"this BLAS's results depend on the thread count ({note})")
    counts, after = _counts_during_a_run(tmp_path, None, 3)
    assert counts == [1, 1, before] and after == before


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


def test_the_plan_compares_each_kind_of_work_once_on_more_threads_with_one():
    from charrnn.train_threads import ThreadPlan

    fake = FakeBLAS(2)
    plan = ThreadPlan(chooser=blas.ThreadChooser(fake, free_cores=lambda: 1.0), check=True)
    plan.chooser.begin()
    calls = []

    def steady():
        calls.append(fake.n)
        return np.ones(3)

    assert np.array_equal(plan.run("training step", steady), np.ones(3))
    assert calls == [1] and plan.agrees == {}  # one thread is the reference: nothing to compare
    fake.n = 2  # the chooser tries two threads
    plan.run("training step", steady)
    assert calls == [1, 2, 1] and plan.agrees == {"training step": True} and plan.news == []
    plan.run("training step", steady)
    assert calls == [1, 2, 1, 2]  # compared once: later steps run once, on the current count

    def count_dependent():
        calls.append(fake.n)
        return np.full(3, fake.n, np.float32)

    probe_calls = []
    result = plan.run("validation", count_dependent,
                      probe=lambda: probe_calls.append(fake.n) or np.float32(fake.n))
    assert probe_calls == [2, 1] and plan.agrees["validation"] is False
    assert result[0] == 1  # computed on one thread
    assert plan.news == ["the validation gives different float32 results on 1 and 2 BLAS "
                         "threads here: it runs on 1 thread, so that the run can be repeated "
                         "exactly (--threads 2 pins the faster count)"]
    calls.clear()
    assert plan.run("validation", count_dependent)[0] == 1 and calls == [1] and fake.n == 2
    assert plan.chooser.active  # the steps still follow the load


def test_a_blas_whose_results_depend_on_the_count_keeps_one_thread_and_says_so(
        tmp_path, monkeypatch, a_free_core):
    """A stand-in BLAS whose products change with the thread count, as some builds' do."""
    from charrnn import training
    from charrnn.data import read_corpus
    from charrnn.model import CharRNN

    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake])
    real = CharRNN.loss_and_grad
    counts = []

    def count_dependent(self, *args, **kw):
        counts.append(fake.n)
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
    # three steps on one thread, the fourth on two and again on one (the check); then one
    assert counts == [1, 1, 1, 2] + [1] * 17 and fake.n == 2  # and the count restored
    assert notes == ["the training step gives different float32 results on 1 and 2 BLAS "
                     "threads here: it runs on 1 thread, so that the run can be repeated "
                     "exactly (--threads 2 pins the faster count)"]


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
def test_auto_probes_more_threads_and_restores_the_count_when_stopped(tmp_path, a_free_core):
    """The first probe starts after step 3 (the next step runs on NumPy's count); closing the
    run there restores the count."""
    before = blas.openblas().get()
    assert before >= 2
    counts, after = _counts_during_a_run(tmp_path, "auto", 3)
    assert counts == [1, 1, before] and after == before


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


def test_a_commands_loop_follows_the_load_only_where_its_work_agrees(monkeypatch, a_free_core):
    from charrnn.train_threads import following_load

    fake = FakeBLAS(2)
    monkeypatch.setattr(blas, "_FOUND", [fake])
    probed = []
    with following_load(lambda: probed.append(fake.n) or np.ones(4)) as record:
        counts = []
        for _ in range(8):
            counts.append(fake.n)
            record(0.2 if fake.n == 2 else 1.0)  # two threads 5x faster
    assert counts == [1, 1, 1, 2, 2, 2, 2, 2] and probed == [2, 1]
    assert fake.n == 2  # restored
    fake.changes.clear()
    with following_load(lambda: np.full(4, fake.n, np.float32)) as record:
        counts = []
        for _ in range(10):
            counts.append(fake.n)
            record(0.2 if fake.n == 2 else 1.0)
    assert counts == [1] * 10  # the look at the probe found other bits: one thread throughout
    assert fake.n == 2
