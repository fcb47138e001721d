"""Absurd values: every float flag of every command refuses what is not a finite float32
number (NaN, +-inf, beyond float32's range, non-zero below its smallest normal number), in
one ``error:`` line naming the flag and exit status 2; the identity a run records reads
back exactly."""
import json
import os
import subprocess
import sys

import pytest

from run import cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
# the float flags each command must have (so the sweep cannot pass by finding none)
SOME_FLOAT_FLAGS = {"rastrigin": "lr", "sparse_recovery": "lr", "nn_training": "lr",
                    "minimax": "lr", "lasso": "lam", "ood": "shift_snr_db",
                    "reproduction": "train_seconds"}


@pytest.fixture(scope="module")
def sweeps():
    """``{command: [[flag, value, status, stderr], ...]}``, the commands in parallel."""
    procs = {name: subprocess.Popen([sys.executable, os.path.join("tests", "flag_sweep.py"),
                                     f"run.{name}"], cwd=ROOT, env=ENV, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in cli.COMMANDS}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, (name, stderr[-2000:])
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_every_float_flag_refuses_non_finite_and_float32_values(sweeps):
    seen = {name: {row[0] for row in rows} for name, rows in sweeps.items()}
    for name, flag in SOME_FLOAT_FLAGS.items():
        assert flag in seen[name], (name, seen[name])
    for name, rows in sweeps.items():
        for flag, value, status, stderr in rows:
            lines = stderr.splitlines()
            assert status == 2 and len(lines) == 1, (name, flag, value, status, stderr)
            assert lines[0].startswith(f"error: flag --{flag}="), (name, flag, value, stderr)


def test_the_listed_cases_say_why(sweeps):
    """--lr=inf (accepted before by rastrigin, sparse-recovery, nn-training, minimax),
    1e39 (inf in float32) and 1e-50 (0 in float32)."""
    for name in ("rastrigin", "sparse_recovery", "nn_training", "minimax"):
        rows = {(flag, value): stderr for flag, value, _, stderr in sweeps[name]}
        assert "is infinite" in rows[("lr", "inf")], (name, rows[("lr", "inf")])
        assert "float32's range" in rows[("lr", "1e39")], name
        assert "the computation would see 0" in rows[("lr", "1e-50")], name


def test_run_identity_reads_back_exactly(tmp_path, monkeypatch):
    """A stored identity (run.json) equals the one the same command computes: a value JSON
    cannot hold (inf, written as null) would make a command refuse its own workdir."""
    from open_l2o_tf import logging as olog
    from run import workdir as wd
    monkeypatch.setattr(wd, "flag_values_dict",
                        lambda: {"lr": float("inf"), "lam": None, "seeds": [1.5, float("nan")],
                                 "name": "x"})
    identity = wd.run_identity(extra={"big": float("-inf")})
    olog.atomic_write_json(str(tmp_path / "run.json"), identity)
    assert olog.read_json(str(tmp_path / "run.json")) == identity
    assert identity["flags"]["lr"] != identity["flags"]["lam"]


def test_sizes_that_cannot_fit_are_refused_at_once(tmp_path, monkeypatch):
    """The estimate is checked against the machine's memory before anything is allocated:
    make_data's paper-size setting with --m/--n 1000x larger is refused in milliseconds,
    naming the flags, the estimate and the machine's memory; nothing is written."""
    import time
    from open_l2o_tf import memory
    from open_l2o_tf.data import sparse_recovery
    from open_l2o_tf.errors import UserError
    available, total = memory.machine_memory()
    assert 0 < available <= total
    start = time.time()
    with pytest.raises(UserError, match=r"^--m=256000 --n=512000 needs about \d+ GiB \(W "
                       r"\d+ GiB, A \d+ GiB, .*\) but this machine has .* available"):
        sparse_recovery.generate("noiseless", str(tmp_path / "d"), m=256000, n=512000)
    assert time.time() - start < 1 and not os.path.exists(tmp_path / "d")
    monkeypatch.setenv(memory.ENV, str(2 << 30))          # a machine of 2 GiB
    with pytest.raises(UserError, match=r"--num_layers=9 needs about 3\.0 GiB \(model 2\.0 "
                       r"GiB, data 1\.0 GiB\) but this machine has 2\.0 GiB available"):
        memory.check_fits("--num_layers=9", {"model": 2 << 30, "data": 1 << 30})
    assert memory.check_fits("--num_layers=9", {"model": 1 << 30}) == 1 << 30
