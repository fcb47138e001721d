"""Faults rather than typos: a busy workdir, Ctrl-C / SIGTERM, a full disk, a workdir
without its identity or deleted mid-run, broken data.  Each fault runs in a subprocess at
tiny sizes and must give one line (``error: ...`` or ``interrupted ...``), the documented
exit status, no traceback, and leave what was there byte-identical (see
docs/reliability.md)."""
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

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
         "common.lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(3600)",
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


def _save_object(fname):
    """The file as an object array (a pickle inside the .npy)."""
    def change(folder):
        path = os.path.join(folder, fname)
        array = np.load(path)
        np.save(path, np.array([[float(v) for v in row] for row in array], dtype=object),
                allow_pickle=True)
    return change


def _set(index, value):
    def fn(a):
        a = a.copy()
        a[index] = value
        return a
    return fn


def test_bad_data_and_identity_in_one_process(tmp_path):
    """Broken data (NaN, Inf, integers, empty, meta.json contradicting A.npy, a value beyond
    float32) and a workdir with results but no run.json: one error line each, exit 2,
    nothing changed."""
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
        "rank_train": (_edit_npy("train_data.npy", lambda a: a[:, :, None]),
                       "train_data.npy must hold a 2-D array, got shape (64, 24, 1)"),
        "width_train": (_edit_npy("train_data.npy", lambda a: a[:, :-1]),
                        "train_data.npy has rows of width 23, expected m + n = 24"),
        "object_A": (_save_object("A.npy"), "A.npy is not a readable .npy file (ValueError: "
                     "Object arrays cannot be loaded"),
        # finite as float64, Inf once used as float32
        "big_A": (_edit_npy("A.npy", lambda a: _set((2, 3), 1e39)(a.astype(np.float64))),
                  "A.npy holds 1 value(s) beyond float32's range (first: 1e+39 at index "
                  "(2, 3))"),
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
    # what a deleted-and-recreated workdir held before the fix: a checkpoint, no run.json;
    # the re-run with another --lr must not resume it
    orphan_ckpt = os.path.join(base, "w_orphan_ckpt")
    os.makedirs(os.path.join(orphan_ckpt, "ckpt", "layer00_stage0"))
    with open(os.path.join(orphan_ckpt, "ckpt", "progress.json"), "w",
              encoding="utf-8") as handle:
        handle.write('{"layer": 0, "stage": 0}\n')
    np.savez(os.path.join(orphan_ckpt, "ckpt", "layer00_stage0", "weights.npz"),
             w=np.zeros(3))
    spec.append((["--model=lista", f"--workdir={orphan_ckpt}", f"--data_dir={base}/data",
                  "--lr=0.001"] + TINY_SR[1:], "but no run.json", [orphan_ckpt]))
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
    assert len(lines) == 1 and re.fullmatch(
        r"interrupted at layer \d+ stage \d+ epoch \d+ \(SIGINT\); "
        r"re-run the same command to resume", lines[0]), err[-2000:]
    assert "Traceback" not in err
    before = _snapshot_workdir(work)
    assert any(k.startswith("ckpt/") for k in before), before
    assert not [k for k in before if os.path.basename(k).startswith(".tmp-")]


TRAIN = ["--model=lista", "--num_layers=2", "--steps_per_epoch=2", "--max_epochs=2",
         "--patience=2", "--batch_size=16", "--nojit"]


def _run_faults(module, cases, base, wrap=()):
    """Runs ``cases`` (dicts: args, and optionally fault + workdir, see
    tests/faults_inject.py) of ``module`` in one process (tests/cli_batch.py), its command
    line after ``wrap`` (``unshare``, ``setpriv``)."""
    cases_path = os.path.join(base, "faults.cases.json")
    results_path = os.path.join(base, "faults.results.json")
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump([dict(case, watch=[]) for case in cases], handle)
    proc = subprocess.run(list(wrap) + [sys.executable, os.path.join(ROOT, "tests", "cli_batch.py"),
                                        module, cases_path, results_path],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(results_path, encoding="utf-8") as handle:
        return json.load(handle)


def _temporaries(work):
    return [os.path.join(folder, name) for folder, dirs, files in os.walk(work)
            for name in dirs + files if name.startswith(".tmp")]


def _results(work):
    with open(os.path.join(work, "results.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    return {key: record[key] for key in ("curve", "curve_at_layer_end", "train_steps",
                                         "complete")}


@pytest.fixture(scope="module")
def training_faults(tmp_path_factory):
    """The faults during run.sparse_recovery, all in one process (tests/cli_batch.py): an
    uninterrupted reference run; SIGINT mid-stage, then the same command again; the
    kernel's file-size limit (EFBIG) hitting the TensorBoard event file; a full disk
    (ENOSPC) at a checkpoint's weights; the workdir deleted after a checkpoint."""
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    base = str(tmp_path_factory.mktemp("training_faults"))
    sparse_recovery.generate("noiseless", os.path.join(base, "data"), m=8, n=16,
                             num_train=64, num_val=16, num_test=16, seed=0, progress=None)
    args = TRAIN + [f"--data_dir={base}/data"]
    work = {name: os.path.join(base, "w_" + name)
            for name in ("ref", "cut", "tb", "ckpt", "gone")}
    longer = [a for a in args if not a.startswith(("--num_layers", "--max_epochs"))] + \
        ["--num_layers=3", "--max_epochs=3"]
    cases = [
        {"args": args + [f"--workdir={work['ref']}"]},
        {"args": args + [f"--workdir={work['cut']}"], "workdir": work["cut"],
         "fault": {"kind": "sigint", "at": "scalar", "nth": 22}},
        {"args": args + [f"--workdir={work['cut']}"]},
        {"args": longer + [f"--workdir={work['tb']}"], "workdir": work["tb"],
         "fault": {"kind": "fsize", "limit": 6000}},
        {"args": args + [f"--workdir={work['ckpt']}"], "workdir": work["ckpt"],
         "fault": {"kind": "enospc", "at": "savez", "nth": 3}},
        {"args": args + [f"--workdir={work['gone']}"], "workdir": work["gone"],
         "fault": {"kind": "delete_workdir", "at": "progress", "nth": 2}},
        # the same workdir again with another --lr: a fresh run, nothing to resume
        {"args": args + [f"--workdir={work['gone']}", "--lr=0.001"]},
    ]
    results = _run_faults("run.sparse_recovery", cases, base)
    return work, dict(zip(["ref", "cut", "resume", "tb", "ckpt", "gone", "gone_lr"], results))


def test_sigint_then_resume_gives_the_uninterrupted_results(training_faults):
    """Ctrl-C (a real SIGINT) in the middle of a stage: one 'interrupted' line, exit 130,
    no traceback; the same command then resumes and its results.json numbers equal those
    of an uninterrupted run."""
    work, results = training_faults
    assert results["ref"]["code"] == 0, results["ref"]["stderr"][-2000:]
    interrupted = results["cut"]
    lines = [line for line in interrupted["stderr"].splitlines()
             if line.startswith(("interrupted", "error:"))]
    assert interrupted["code"] == 130, interrupted["stderr"][-2000:]
    assert len(lines) == 1 and lines[0].endswith("re-run the same command to resume"), lines
    assert "Traceback" not in interrupted["stderr"]
    resumed = results["resume"]
    assert resumed["code"] == 0, resumed["stderr"][-2000:]
    assert "resuming after layer" in resumed["stdout"], resumed["stdout"][-2000:]
    assert _results(work["cut"]) == _results(work["ref"])
    assert not _temporaries(work["cut"])


def test_write_faults_during_a_training_run(training_faults):
    """The EFBIG, ENOSPC and deleted-workdir faults: each exit 2, exactly one error line
    naming the file and the errno, no traceback, no temporary file; the checkpoint and
    results as they were before the failed write (byte-identical); a deleted workdir is not
    recreated."""
    work, results = training_faults
    expected = {
        "tb": f"cannot write {work['tb']}/tb/events.out.tfevents.",
        "ckpt": f"cannot write {work['ckpt']}/ckpt/layer00_stage2/weights.npz: "
                "[Errno 28 ENOSPC] No space left on device",
        "gone": f"cannot write {work['gone']}/",
    }
    failures = []
    for name in ("tb", "ckpt", "gone"):
        result = results[name]
        errors = _errors(result["stderr"])
        problems = []
        if result["code"] != 2:
            problems.append(f"exit {result['code']}")
        if len(errors) != 1 or expected[name] not in errors[0]:
            problems.append(f"error lines {errors}")
        if "Traceback" in result["stderr"]:
            problems.append("traceback")
        if _temporaries(work[name]):
            problems.append(f"temporary files {_temporaries(work[name])}")
        if name == "gone":
            if result["after"] is not None:
                problems.append(f"the deleted workdir was recreated: {result['after']}")
            elif errors and "the workdir was deleted during the run" not in errors[0]:
                problems.append("the line does not say the workdir was deleted")
        elif result["after"] != result["snapshot"] or not any(
                k.startswith("ckpt/") for k in result["after"] or {}):
            problems.append(f"changed: before {result['snapshot']} after {result['after']}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}\n{result['stderr'][-1500:]}")
        print(f"{name}: exit {result['code']}: {errors[0] if errors else None}")
    assert not failures, "\n".join(failures)
    assert "[Errno 27 EFBIG] File too large" in _errors(results["tb"]["stderr"])[0]


def test_deleted_workdir_then_another_lr_resumes_nothing(training_faults):
    """Before the fix the deleted workdir was recreated (a checkpoint, no run.json) and a
    re-run with another --lr resumed from it.  Now nothing is recreated, so the re-run
    with --lr=0.001 is a fresh run of its own identity (a checkpoint without run.json is
    refused: test_bad_data_and_identity_in_one_process, case orphan_ckpt)."""
    work, results = training_faults
    again = results["gone_lr"]
    assert again["code"] == 0, again["stderr"][-2000:]
    assert "resuming" not in again["stdout"], again["stdout"][-2000:]
    with open(os.path.join(work["gone"], "run.json"), encoding="utf-8") as handle:
        assert json.load(handle)["flags"]["lr"] == 0.001


def test_nan_dictionary_is_refused_before_its_norms(tmp_path):
    """run.ood --dictionary=D.npy with a NaN went through the column normalisation unseen
    and stopped in the model's SVD (``LinAlgError: SVD did not converge``): the
    normalisation (also run.make_data's) checks the array first and names the flag and
    file."""
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.errors import UserError  # pylint: disable=import-outside-toplevel
    D = np.ones((4, 6))
    D[1, 2] = np.nan
    with pytest.raises(UserError, match=r"--dictionary D.npy holds 1 non-finite value\(s\) "
                       r"\(first: NaN at index \(1, 2\)\)"):
        sparse_recovery.normalise_columns(D, "--dictionary D.npy")
    with pytest.raises(UserError, match=r"all-zero column \(column 4\)"):
        sparse_recovery.normalise_columns(np.eye(4, 6), "--dictionary D.npy")


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_truncated_or_swapped_mnist_is_refused(tmp_path):
    """run.nn_training on MNIST idx files that are truncated, or with images and labels
    swapped: one error line naming the file and what was found, exit 2, no traceback."""
    base = str(tmp_path)
    images = np.zeros((3, 28, 28))
    labels = np.array([1, 2, 3])
    spec = []
    for name, expect in (("truncated", "is not a valid idx file (truncated: the header "
                                       "announces shape (3, 28, 28) = 2352 bytes, the file "
                                       "holds 2000)"),
                         ("swapped", "are the image and label files swapped?")):
        folder = os.path.join(base, name)
        os.makedirs(folder)
        for split in ("train", "t10k"):
            image_path = os.path.join(folder, f"{split}-images-idx3-ubyte")
            label_path = os.path.join(folder, f"{split}-labels-idx1-ubyte")
            if name == "swapped":
                image_path, label_path = label_path, image_path
            _idx(image_path, images)
            _idx(label_path, labels)
            if name == "truncated":
                with open(image_path, "r+b") as handle:
                    handle.truncate(16 + 2000)
        spec.append((["--optimizer=adam", "--preset=quick", "--steps=2",
                      f"--workdir={base}/w_{name}", f"--mnist_dir={folder}"], expect,
                     [folder]))
    results = _run_module("run.nn_training", spec, {}, base)
    failures = []
    for (args, expect, _), result in zip(spec, results):
        errors = _errors(result["stderr"])
        print(f"{args[-1]}: exit {result['code']}: {errors}")
        if (result["code"] != 2 or len(errors) != 1 or expect not in errors[0]
                or "Traceback" in result["stderr"] or result["changed"]):
            failures.append(f"{args[-1]}: exit {result['code']} {errors} "
                            f"{result['stderr'][-800:]}")
    assert not failures, "\n".join(failures)


def test_mnist_of_other_sizes_or_labels_is_refused(tmp_path):
    """MNIST idx files of 27x27 images, or labels beyond 9: one error naming the file."""
    from open_l2o_tf.data import datasets  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.errors import UserError  # pylint: disable=import-outside-toplevel
    images, labels = str(tmp_path / "train-images-idx3-ubyte"), \
        str(tmp_path / "train-labels-idx1-ubyte")
    _idx(images, np.zeros((3, 27, 27)))
    _idx(labels, np.array([1, 2, 3]))
    with pytest.raises(UserError, match="27x27 pixels, expected MNIST's 28x28"):
        datasets.load_mnist(str(tmp_path), "train")
    _idx(images, np.zeros((3, 28, 28)))
    _idx(labels, np.array([1, 12, 3]))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte holds label 12 at index 1"):
        datasets.load_mnist(str(tmp_path), "train")


# --- faults from the kernel itself: a real full tmpfs, EACCES without CAP_DAC_OVERRIDE,
# EROFS from a read-only bind mount (each batch in its own mount namespace) ---------------

DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search"]


def _kernel_faults_available():
    """Root with CAP_SYS_ADMIN (a private mount namespace, tmpfs, bind mounts) and setpriv;
    as root, permission bits only bite once CAP_DAC_OVERRIDE is dropped."""
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                "mount -t tmpfs -o size=64k tmpfs /mnt && "
                                + " ".join(DROP_DAC) + " true"], capture_output=True,
                               timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


needs_kernel_faults = pytest.mark.skipif(
    not _kernel_faults_available(),
    reason="needs root with CAP_SYS_ADMIN (unshare -m, mount) and setpriv")


def _in_namespace(tmpfs, free_kb=None, drop_dac=False):
    """A command prefix: a private mount namespace where ``tmpfs`` is a 300 KB tmpfs
    (filled by a ballast file to ``free_kb`` KB free when given), then optionally without
    CAP_DAC_OVERRIDE."""
    script = "mount -t tmpfs -o size=300k tmpfs \"$0\""
    if free_kb is not None:
        script += f" && dd if=/dev/zero of=\"$0/ballast\" bs=1k count={300 - free_kb} 2>/dev/null"
    script += " && exec " + (" ".join(DROP_DAC) + " " if drop_dac else "") + "\"$@\""
    os.makedirs(tmpfs, exist_ok=True)
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, tmpfs]


@pytest.fixture(scope="module")
def kernel_faults(tmp_path_factory):
    """run.sparse_recovery in one process in its own mount namespace, without
    CAP_DAC_OVERRIDE: a full disk (the workdir on a 300 KB tmpfs with 24 KB left), ckpt/
    made read-only mid-run, the workdir made read-only mid-run (results.json cannot be
    replaced), the workdir bind-mounted read-only mid-run (EROFS)."""
    if not _kernel_faults_available():
        pytest.skip("needs root with CAP_SYS_ADMIN (unshare -m, mount) and setpriv")
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    base = str(tmp_path_factory.mktemp("kernel_faults"))
    sparse_recovery.generate("noiseless", os.path.join(base, "data"), m=8, n=16,
                             num_train=64, num_val=16, num_test=16, seed=0, progress=None)
    args = TRAIN + [f"--data_dir={base}/data"]
    tmpfs = os.path.join(base, "tmpfs")
    work = {"full": os.path.join(tmpfs, "w"),
            **{name: os.path.join(base, "w_" + name)
               for name in ("ckpt_ro", "workdir_ro", "erofs")}}
    faults = {"full": {"kind": "watch"},
              "ckpt_ro": {"kind": "chmod", "path": "ckpt", "at": "progress", "nth": 1},
              "workdir_ro": {"kind": "chmod", "path": ".", "at": "progress", "nth": 1},
              "erofs": {"kind": "readonly", "at": "progress", "nth": 1}}
    cases = [{"args": args + [f"--workdir={work[name]}"], "workdir": work[name],
              "fault": faults[name]} for name in faults]
    results = _run_faults("run.sparse_recovery", cases, base,
                          wrap=_in_namespace(tmpfs, free_kb=24, drop_dac=True))
    return work, dict(zip(faults, results))


def _check_write_fault(name, result, expect):
    """Exit 2, one error line holding every string of ``expect``, no traceback, no
    temporary file, the workdir's checkpoint and results byte-identical to before the
    failed write.  Returns the problems."""
    errors = _errors(result["stderr"])
    problems = []
    if result["code"] != 2:
        problems.append(f"exit {result['code']}")
    if len(errors) != 1 or not all(e in errors[0] for e in expect):
        problems.append(f"error lines {errors}, expected {expect}")
    if "Traceback" in result["stderr"]:
        problems.append("traceback")
    if result.get("temporaries"):
        problems.append(f"temporary files {result['temporaries']}")
    if result["after"] != result["snapshot"] or not any(
            k.startswith("ckpt/") for k in result["after"] or {}):
        problems.append(f"changed: before {result['snapshot']} after {result['after']}")
    print(f"{name}: exit {result['code']}: {errors[0] if errors else None}")
    return [f"{name}: {'; '.join(problems)}\n{result['stderr'][-1500:]}"] if problems else []


@needs_kernel_faults
def test_kernel_write_faults_during_a_training_run(kernel_faults):
    """Real ENOSPC, EACCES and EROFS from the kernel in the middle of run.sparse_recovery:
    one error line naming the file and the errno, exit 2, no traceback, no temporary file,
    the previous checkpoint and results byte-identical."""
    work, results = kernel_faults
    expected = {
        "full": [f"cannot write {work['full']}/", "[Errno 28 ENOSPC] No space left on device"],
        "ckpt_ro": [f"cannot write {work['ckpt_ro']}/ckpt/",
                    "[Errno 13 EACCES] Permission denied"],
        "workdir_ro": [f"cannot write {work['workdir_ro']}/",
                       "[Errno 13 EACCES] Permission denied"],
        "erofs": [f"cannot write {work['erofs']}/", "[Errno 30 EROFS] Read-only file system"],
    }
    failures = []
    for name, expect in expected.items():
        failures += _check_write_fault(name, results[name], expect)
    assert not failures, "\n".join(failures)


@needs_kernel_faults
def test_full_disk_during_rastrigin(tmp_path):
    """run.rastrigin (L2O-DM meta-training) with its workdir on a 300 KB tmpfs, the issue's
    own fault: the second checkpoint does not fit (ENOSPC)."""
    base = str(tmp_path)
    tmpfs = os.path.join(base, "tmpfs")
    work = os.path.join(tmpfs, "w")
    cases = [{"args": ["--optimizer=l2o_dm", "--preset=quick", "--meta_episodes=4",
                       "--steps=40", "--unroll=20", "--test_instances=2", "--starts=1",
                       f"--workdir={work}"], "workdir": work, "fault": {"kind": "watch"}}]
    result, = _run_faults("run.rastrigin", cases, base, wrap=_in_namespace(tmpfs))
    failures = _check_write_fault("rastrigin", result, [
        f"cannot write {work}/", "[Errno 28 ENOSPC] No space left on device"])
    assert not failures, "\n".join(failures)


@needs_kernel_faults
def test_full_disk_make_data_on_a_300kb_tmpfs(tmp_path):
    """run.make_data into a 300 KB tmpfs (the 768 KB train split does not fit): one error
    line, exit 2, and --out holds no data file nor temporary folder afterwards."""
    tmpfs = str(tmp_path / "tmpfs")
    out = os.path.join(tmpfs, "d")
    script = ('mount -t tmpfs -o size=300k tmpfs "$0" && { "$@"; echo "exit=$?"; '
              'ls -A "$0/d"; }')
    os.makedirs(tmpfs)
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, tmpfs,
         sys.executable, "-m", "run.make_data", "--setting=noiseless", f"--out={out}",
         "--num_train=8192"] + SMALL, cwd=ROOT, env=ENV, capture_output=True, text=True,
        timeout=300, check=False)
    errors = _errors(proc.stderr)
    lines = proc.stdout.strip().splitlines()
    status = [l for l in lines if l.startswith("exit=")]
    assert status == ["exit=2"], proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(errors) == 1 and f"cannot write {out}/" in errors[0] and \
        "[Errno 28 ENOSPC]" in errors[0], errors
    assert "Traceback" not in proc.stderr
    assert lines[lines.index(status[0]) + 1:] == [".lock"], lines


# --- two commands on one workdir; the multi-worker chief ------------------------------

def _wait_for(path, proc, seconds=400):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not os.path.exists(path):
        time.sleep(0.2)
    return os.path.exists(path)


def test_two_runs_at_once_in_one_workdir(tmp_path):
    """While a run.rastrigin (L2O-DM meta-training) and a run.sparse_recovery train, the
    same command again in the same workdir (once the first has a checkpoint, as the
    issue's second run.rastrigin 12 s later): one error line naming the first's PID, exit
    2, no traceback, nothing resumed, run.json and the checkpoint's IDENTITY untouched; the
    first runs on (then Ctrl-C: 130 and its own line)."""
    base = str(tmp_path)
    _make_data(os.path.join(base, "data"), num_train=256)
    commands = {
        "run.rastrigin": ["--optimizer=l2o_dm", "--preset=quick", "--meta_episodes=5000",
                          "--steps=40", "--unroll=20", "--test_instances=2", "--starts=1",
                          f"--workdir={base}/w_ra"],
        "run.sparse_recovery": ["--model=lista", f"--workdir={base}/w_sr",
                                f"--data_dir={base}/data", "--num_layers=6",
                                "--steps_per_epoch=2", "--max_epochs=200", "--patience=200",
                                "--batch_size=16", "--nojit"],
    }
    marks = {"run.rastrigin": "ckpt/meta_state.json", "run.sparse_recovery": "ckpt/progress.json"}
    firsts = {module: subprocess.Popen(
        [sys.executable, "-m", module] + args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        for module, args in commands.items()}
    failures = []
    try:
        for module, args in commands.items():
            work = args[-1 if module == "run.rastrigin" else 1].split("=", 1)[1]
            first = firsts[module]
            assert _wait_for(os.path.join(work, marks[module]), first), \
                first.communicate(timeout=60)[1][-2000:] if first.poll() is not None else module
            stamps = {p: open(os.path.join(work, p), "rb").read()
                      for p in ("run.json", "ckpt/IDENTITY")
                      if os.path.exists(os.path.join(work, p))}
            start = time.time()
            try:    # refused before TensorFlow is imported: seconds on a quiet machine
                second = subprocess.run([sys.executable, "-m", module] + args, cwd=ROOT,
                                        env=ENV, capture_output=True, text=True, timeout=400,
                                        check=False)
            except subprocess.TimeoutExpired as err:    # not refused: it trains along
                failures.append(f"{module}: the second command still ran after 400 s: "
                                f"{(err.stdout or b'')[-500:]!r}")
                continue
            errors = _errors(second.stderr)
            print(f"{module} second: exit {second.returncode} after "
                  f"{time.time() - start:.0f} s: {errors}")
            if (second.returncode != 2 or len(errors) != 1
                    or f"is in use by PID {first.pid}" not in errors[0]
                    or "Traceback" in second.stderr or "resum" in second.stdout
                    or first.poll() is not None
                    or stamps != {p: open(os.path.join(work, p), "rb").read()
                                  for p in stamps}):
                failures.append(f"{module}: exit {second.returncode} {errors} first alive: "
                                f"{first.poll() is None}\n{second.stderr[-1500:]}")
    finally:
        for module, first in firsts.items():
            if first.poll() is None:
                first.send_signal(signal.SIGINT)
        for module, first in firsts.items():
            _, err = first.communicate(timeout=120)
            lines = [l for l in err.splitlines() if l.startswith(("interrupted", "error:"))]
            if first.returncode != 130 or len(lines) != 1 or "Traceback" in err:
                failures.append(f"{module} first: exit {first.returncode}\n{err[-1500:]}")
    assert not failures, "\n".join(failures)


CHIEF_CHECK = """
import sys
from absl import flags
from run import startup
import run.sparse_recovery as module
code = startup.run_in_process(lambda argv: print("workdir", flags.FLAGS.workdir) or 0,
                              [module.__file__] + sys.argv[1:], module.validate,
                              needs_tf=False)
sys.exit(code)
"""


def test_multi_worker_only_the_chief_locks_the_workdir(tmp_path):
    """--strategy=multi_worker, the workdir held by another process: worker 1 is not
    refused (it writes into a private folder), the chief is (one line naming the PID)."""
    work = tmp_path / "w"
    work.mkdir()
    _make_data(str(tmp_path / "data"))
    # holds the lock until killed (a loaded machine may take minutes for the two commands)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from run import common; "
         "common.lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(3600)",
         str(work)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    cluster = {"worker": ["localhost:12345", "localhost:12346"]}
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _tree(work)
        outcome = {}
        for index in (1, 0):
            env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                                  "task": {"type": "worker", "index": index}}))
            outcome[index] = subprocess.run(
                [sys.executable, "-c", CHIEF_CHECK, "--model=lista", f"--workdir={work}",
                 f"--data_dir={tmp_path}/data", "--strategy=multi_worker"] + TINY_SR[1:],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        worker, chief = outcome[1], outcome[0]
        assert worker.returncode == 0, worker.stderr[-2000:]
        assert "not the chief" in worker.stdout and f"workdir {work}\n" not in worker.stdout
        errors = _errors(chief.stderr)
        assert chief.returncode == 2 and len(errors) == 1, chief.stderr[-2000:]
        assert f"in use by PID {holder.pid}" in errors[0], errors
        assert "Traceback" not in chief.stderr
        assert _tree(work) == before
    finally:
        holder.kill()
        holder.wait()


# --- Ctrl-C and SIGTERM during run.minimax (Twin-L2O meta-training) --------------------

# Twin-L2O checkpoints at its held-out evaluations (every 5 epochs, and the last): the 2nd
# scalar is the evaluation after epoch 7, the checkpoint of epoch 5 before it
MINIMAX = ["--optimizer=twin_l2o", "--preset=quick", "--epochs=7", "--hidden=4"]


@pytest.fixture(scope="module")
def minimax_faults(tmp_path_factory):
    """In one process: an uninterrupted run; SIGINT at the 2nd scalar (the held-out
    evaluation of epoch 7), then the same command again; SIGTERM at the 2nd scalar."""
    base = str(tmp_path_factory.mktemp("minimax_faults"))
    work = {name: os.path.join(base, "w_" + name) for name in ("ref", "cut", "term")}
    cases = [
        {"args": MINIMAX + [f"--workdir={work['ref']}"]},
        {"args": MINIMAX + [f"--workdir={work['cut']}"], "workdir": work["cut"],
         "fault": {"kind": "sigint", "at": "scalar", "nth": 2}},
        {"args": MINIMAX + [f"--workdir={work['cut']}"]},
        {"args": MINIMAX + [f"--workdir={work['term']}"], "workdir": work["term"],
         "fault": {"kind": "sigterm", "at": "scalar", "nth": 2}},
    ]
    results = _run_faults("run.minimax", cases, base)
    return work, dict(zip(["ref", "cut", "resume", "term"], results))


def test_minimax_sigint_and_sigterm(minimax_faults):
    """run.minimax interrupted by SIGINT (130) or SIGTERM (143): one line saying where
    (``interrupted at episode 7/7 (SIGINT); re-run the same command to resume``), no
    traceback, the checkpoint byte-identical to before the signal, no temporary file; the
    resumed run's results equal the uninterrupted run's."""
    work, results = minimax_faults
    assert results["ref"]["code"] == 0, results["ref"]["stderr"][-2000:]
    failures = []
    for name, signame, code in (("cut", "SIGINT", 130), ("term", "SIGTERM", 143)):
        result = results[name]
        lines = [line for line in result["stderr"].splitlines()
                 if line.startswith(("interrupted", "error:"))]
        print(f"{name}: exit {result['code']}: {lines}")
        if (result["code"] != code or len(lines) != 1 or not re.fullmatch(
                rf"interrupted at episode 7/7 \({signame}\); re-run the same command to "
                r"resume", lines[0]) or "Traceback" in result["stderr"]
                or result["after"] != result["snapshot"] or result.get("temporaries")):
            failures.append(f"{name}: exit {result['code']} {lines} "
                            f"{result['snapshot']} {result['after']}\n"
                            f"{result['stderr'][-1500:]}")
    assert not failures, "\n".join(failures)
    resumed = results["resume"]
    assert resumed["code"] == 0, resumed["stderr"][-2000:]

    def numbers(path):
        with open(os.path.join(path, "results.json"), encoding="utf-8") as handle:
            record = json.load(handle)
        return {k: record[k] for k in ("curve", "final", "second_half_mean", "train_steps")}
    assert numbers(work["cut"]) == numbers(work["ref"])
