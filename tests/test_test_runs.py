"""Test runs that survive an interrupt: ``run.workdir.resumable_runs`` keeps each finished
run in ``WORKDIR/ckpt/test_runs.npz`` and a re-run starts at the first unfinished one;
``open_l2o_tf.responsive.call`` keeps the main thread free, so Ctrl-C / SIGTERM stop a
command at once even inside a compiled call of thousands of steps (a Fig. 8 ConvNet run:
5-10 minutes in one ``tf.function``, during which a Python signal handler never ran)."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import _thread

import numpy as np
import pytest

from open_l2o_tf import responsive
from open_l2o_tf.errors import UserError
from run import workdir as wd
from tests.test_datasets import _write_idx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
ENV.pop("OPEN_L2O_DATA_DIR", None)


def _curve(k):
    return np.arange(5, dtype=np.float32) * (k + 1)


def test_resumable_runs_resume_at_the_first_unfinished_run(tmp_path):
    calls = []

    def stopping(k):
        calls.append(k)
        if k == 2:
            raise KeyboardInterrupt
        return _curve(k)

    with pytest.raises(KeyboardInterrupt):
        wd.resumable_runs(str(tmp_path), 4, stopping)
    assert calls == [0, 1, 2]
    calls.clear()
    seen = []
    curves, seconds = wd.resumable_runs(str(tmp_path), 4, lambda k: (calls.append(k),
                                                                    _curve(k))[1],
                                        progress=lambda k, c: seen.append(k))
    assert calls == [2, 3]                   # runs 0 and 1 were not redone
    assert seen == [1, 2, 3, 4] and len(seconds) == 4
    np.testing.assert_array_equal(curves, np.stack([_curve(k) for k in range(4)]))
    assert curves.dtype == np.float32        # the mean over runs as without the record
    assert not [n for n in os.listdir(tmp_path / "ckpt") if n.startswith(".tmp")]


def test_resumable_runs_refuse_a_corrupt_record(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / wd.TEST_RUNS).write_bytes(b"not an npz")
    with pytest.raises(UserError, match=r"test_runs\.npz is not a readable record.*delete it"):
        wd.resumable_runs(str(tmp_path), 2, _curve)


def test_responsive_call_returns_raises_and_yields_to_an_interrupt(monkeypatch):
    monkeypatch.setitem(responsive._STATE, "abandoned", False)   # pylint: disable=protected-access
    assert responsive.call(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        responsive.call(lambda: 1 / 0)
    assert not responsive.abandoned()
    release = threading.Event()
    # Python's SIGINT handler, as run.startup installs it in every command: a process started
    # with SIGINT ignored (some background launchers) keeps it ignored, and interrupt_main
    # then does nothing
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, _thread.interrupt_main).start()
        start = time.time()
        with pytest.raises(KeyboardInterrupt):
            responsive.call(release.wait, 30)    # a call that would block for 30 s
        assert time.time() - start < 5
    finally:
        signal.signal(signal.SIGINT, old)
    assert responsive.abandoned()
    release.set()


def _mnist(folder):
    rng = np.random.default_rng(0)
    os.makedirs(folder)
    for split, n in (("train", 256), ("t10k", 64)):
        _write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"),
                   rng.integers(0, 256, (n, 28, 28)))
        _write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"),
                   rng.integers(0, 10, n))


def test_sigterm_in_a_long_test_run_stops_at_once_and_resumes(tmp_path):
    """run.nn_training: SIGTERM during the 2nd of 2 test runs exits 143 within seconds with
    ``interrupted at test run 2/2 (SIGTERM)``; the same command then redoes only run 2 and
    its results equal an uninterrupted run's.  The runs are 20,000 steps (about 3-8 s each
    here), long enough that abandoning one is told apart from waiting for it under load."""
    mnist = str(tmp_path / "mnist")
    _mnist(mnist)

    def args(work):
        return [sys.executable, "-m", "run.nn_training", "--optimizer=sgd",
                "--problem=mnist_mlp_relu", "--steps=20000", "--runs=2",
                f"--mnist_dir={mnist}", f"--workdir={work}"]

    ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
    done = subprocess.run(args(ref), cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    proc = subprocess.Popen(args(cut), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    record = os.path.join(cut, "ckpt", wd.TEST_RUNS)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not os.path.exists(record):
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before its first run was recorded"
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    waited = time.time() - sent
    lines = [l for l in err.splitlines() if l.startswith(("interrupted", "error:"))]
    assert proc.returncode == 143, err[-2000:]
    assert lines == ["interrupted at test run 2/2 (SIGTERM); re-run the same command to "
                     "resume"], err[-2000:]
    assert "Traceback" not in err
    with np.load(record) as saved:
        assert saved["curves"].shape == (1, 20001)
    # the 2nd run (20,000 steps) was abandoned, not waited for
    ref_seconds = json.load(open(os.path.join(ref, "results.json")))["run_seconds"]
    assert waited < 0.5 * ref_seconds[1], (waited, ref_seconds)
    again = subprocess.run(args(cut), cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert re.search(r"\[resume\] 1 of 2 test runs already done", again.stdout), again.stdout
    first = json.load(open(os.path.join(ref, "results.json")))
    second = json.load(open(os.path.join(cut, "results.json")))
    assert second["curve"] == first["curve"]
    assert second["final_per_run"] == first["final_per_run"]


def test_a_diverging_test_run_is_reported_with_its_step(tmp_path):
    """run.nn_training: a run whose loss becomes NaN/Inf says from which step (its progress
    line, a warning, ``nonfinite_step_per_run`` in results.json), not only ``nan`` at the
    end; the record's per-run detail reads such a results.json."""
    from open_l2o_tf import metrics, reproduction
    assert metrics.first_nonfinite([1.0, 2.0, np.inf, np.nan]) == 2
    assert metrics.first_nonfinite(np.ones(4)) is None
    mnist, work = str(tmp_path / "mnist"), str(tmp_path / "w")
    _mnist(mnist)
    proc = subprocess.run([sys.executable, "-m", "run.nn_training", "--optimizer=sgd",
                           "--lr=1e38", "--problem=mnist_mlp_relu", "--steps=6", "--runs=2",
                           f"--mnist_dir={mnist}", f"--workdir={work}"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("final_loss=nan (non-finite from step 1)") == 2, proc.stdout
    assert ("warning: 2 of 2 runs became non-finite (at steps 1, 1), so the mean curve is "
            "non-finite from step 1") in proc.stdout
    record = json.load(open(os.path.join(work, "results.json")))
    assert record["nonfinite_step_per_run"] == [1, 1]
    assert record["final_per_run"] == [None, None] and record["curve"][0] is not None
    record.update(final_per_run=[0.5, None], nonfinite_step_per_run=[None, 3870])
    detail = reproduction._runs_detail(record)      # pylint: disable=protected-access
    assert "per-run loss at step 6: 0.5000 nan" in detail
    assert "1 of 2 runs became non-finite (run 2 at step 3,870)" in detail
