"""Faults rather than typos: a busy workdir, Ctrl-C / SIGTERM, a full disk, a workdir
without its identity or deleted mid-run, broken data.  Each fault runs in a subprocess at
tiny sizes and must give one line (``error: ...`` or ``interrupted ...``), the documented
exit status, no traceback, and leave what was there byte-identical (see
docs/reliability.md)."""
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np

from tests.test_bad_inputs import TINY_SR, _run_module

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
SMALL = ["--m=8", "--n=16", "--num_val=16", "--num_test=16"]


def _errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _tree(path):
    out = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _make_data(out, num_train=64, seed=0):
    proc = subprocess.run([sys.executable, "-m", "run.make_data", "--setting=noiseless",
                           f"--out={out}", f"--num_train={num_train}", f"--seed={seed}"]
                          + SMALL, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_full_disk_make_data_leaves_no_data(tmp_path):
    """RLIMIT_FSIZE of 4 KB: the 12 KB train split fails with EFBIG; one error line naming
    the file, exit 2, and no A.npy / meta.json / temporary file left behind."""
    out = tmp_path / "d"
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # noqa: E731
    proc = subprocess.run([sys.executable, "-m", "run.make_data", "--setting=noiseless",
                           f"--out={out}", "--num_train=512"] + SMALL, cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False,
                          preexec_fn=limit)
    errors = _errors(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and f"cannot write {out}/train_data.npy" in errors[0], errors
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(out)) == [".lock"]     # nothing that looks like data


def test_busy_workdir_is_refused(tmp_path):
    """A command on a workdir locked by another process: one line naming its PID, exit 2,
    the workdir byte-identical."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "results.json").write_text("{}\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from run import common; "
         "common.lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
         str(work)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _tree(work)
        proc = subprocess.run([sys.executable, "-m", "run.make_data", "--setting=noiseless",
                               f"--out={work}"] + SMALL, cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=300, check=False)
        errors = _errors(proc.stderr)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(errors) == 1 and f"in use by PID {holder.pid}" in errors[0], errors
        assert "Traceback" not in proc.stderr
        assert _tree(work) == before
    finally:
        holder.kill()
        holder.wait()


def _bad_data(base, name, change):
    """A copy of the tiny data directory with one file replaced."""
    src = os.path.join(base, "data")
    dst = os.path.join(base, name)
    os.makedirs(dst)
    for fname in os.listdir(src):
        if not fname.startswith("."):
            with open(os.path.join(src, fname), "rb") as a, \
                    open(os.path.join(dst, fname), "wb") as b:
                b.write(a.read())
    change(dst)
    return dst


def _edit_npy(fname, fn):
    def change(folder):
        path = os.path.join(folder, fname)
        np.save(path, fn(np.load(path)))
    return change


def _edit_meta(folder):
    path = os.path.join(folder, "meta.json")
    meta = json.load(open(path, encoding="utf-8"))
    meta["m"] = 32
    json.dump(meta, open(path, "w", encoding="utf-8"))


def _set(index, value):
    def fn(a):
        a = a.copy()
        a[index] = value
        return a
    return fn


def test_bad_data_and_identity_in_one_process(tmp_path):
    """Broken data (NaN, Inf, integers, empty, meta.json contradicting A.npy) and a workdir
    with results but no run.json: one error line each, exit 2, nothing changed."""
    base = str(tmp_path)
    _make_data(os.path.join(base, "data"))
    cases = {
        "nan_A": (_edit_npy("A.npy", _set((0, 0), np.nan)), "A.npy holds 1 non-finite"),
        "inf_A": (_edit_npy("A.npy", _set((1, 2), np.inf)), "Inf at index (1, 2)"),
        "nan_train": (_edit_npy("train_data.npy", _set((3, 1), np.nan)),
                      "train_data.npy holds 1 non-finite"),
        "int_A": (_edit_npy("A.npy", lambda a: np.ones(a.shape, np.int64)), "int64"),
        "empty_train": (_edit_npy("train_data.npy", lambda a: a[:0]), "is empty"),
        "meta": (_edit_meta, "meta.json says m=32"),
    }
    spec = []
    for name, (change, expect) in cases.items():
        folder = _bad_data(base, name, change)
        args = ["--model=lista", f"--workdir={base}/w_{name}", f"--data_dir={folder}"] + \
            TINY_SR[1:]
        spec.append((args, expect, [folder]))
    orphan = os.path.join(base, "w_orphan")
    os.makedirs(os.path.join(orphan, "ckpt"))
    with open(os.path.join(orphan, "results.json"), "w", encoding="utf-8") as handle:
        handle.write("{\"final\": 1}\n")
    spec.append((["--model=lista", f"--workdir={orphan}", f"--data_dir={base}/data"]
                 + TINY_SR[1:], "but no run.json", [orphan + "/results.json"]))
    results = _run_module("run.sparse_recovery", spec, {}, base)
    failures = []
    for (args, expect, _), result in zip(spec, results):
        errors = _errors(result["stderr"])
        if (result["code"] != 2 or len(errors) != 1 or expect not in errors[0]
                or "Traceback" in result["stderr"] or result["changed"]):
            failures.append(f"{args[1]}: exit {result['code']} {errors} "
                            f"{result['changed']} {result['stderr'][-600:]}")
    assert not failures, "\n".join(failures)


def _snapshot_workdir(work):
    return {k: v for k, v in _tree(work).items() if k != ".lock"}


def test_sigint_of_a_run(tmp_path):
    """run.sparse_recovery interrupted by SIGINT: one 'interrupted' line, exit 130, no
    traceback; a checkpoint left, no temporary file."""
    base = str(tmp_path)
    _make_data(os.path.join(base, "data"), num_train=256)
    work = os.path.join(base, "w")
    args = [sys.executable, "-m", "run.sparse_recovery", "--model=lista", f"--workdir={work}",
            f"--data_dir={base}/data", "--num_layers=6", "--steps_per_epoch=2",
            "--max_epochs=200", "--patience=200", "--batch_size=16", "--nojit"]
    # a shell's background job (as CI may run us) inherits SIGINT ignored; a user's
    # terminal delivers it: restore the default before exec so Python installs its handler
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    ckpt = os.path.join(work, "ckpt")
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ckpt) and any(n.endswith(".json") for n in os.listdir(ckpt)):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [l for l in err.splitlines() if l.startswith(("interrupted", "error:"))]
    assert proc.returncode == 130, err[-2000:]
    assert lines == ["interrupted (SIGINT); re-run the same command to resume"], err[-2000:]
    assert "Traceback" not in err
    before = _snapshot_workdir(work)
    assert any(k.startswith("ckpt/") for k in before), before
    assert not [k for k in before if os.path.basename(k).startswith(".tmp-")]
