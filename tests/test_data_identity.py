"""What a run's data is: ``make_data`` does not replace another command's data without
``--overwrite`` (the same command again does nothing), and a run's identity holds a digest
of its data, so a run does not resume on data that changed under it."""
import hashlib
import os
import subprocess
import sys

import pytest

from open_l2o_tf.errors import UserError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
SMALL = ["--m=8", "--n=16", "--num_train=32", "--num_val=16", "--num_test=16", "--noW"]


def _make_data(out, *args):
    return subprocess.run([sys.executable, "-m", "run.make_data", f"--out={out}", *SMALL,
                           *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)


def _hashes(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder)) if not name.startswith(".")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data") / "d")
    proc = _make_data(out, "--setting=noiseless")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_make_data_refuses_other_data_and_repeats_as_a_no_op(data):
    before = _hashes(data)
    for args, said in ((["--setting=noisy"], "--setting='noiseless' there, 'noisy' now"),
                       (["--setting=noiseless", "--seed=1"], "--seed=0 there, 1 now")):
        proc = _make_data(data, *args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
        assert said in errors[0] and "--overwrite" in errors[0], errors
        assert "Traceback" not in proc.stderr
        assert _hashes(data) == before
    proc = _make_data(data, "--setting=noiseless")
    assert proc.returncode == 0 and "already holds this data" in proc.stdout, proc.stderr
    assert _hashes(data) == before


def test_a_run_refuses_to_resume_on_changed_data(data, tmp_path, monkeypatch):
    """A workdir started on ``data`` (run.json with its digest and a result) is refused,
    naming the data dir, once make_data --overwrite replaced the data with another
    setting's; with the data as it was it is accepted."""
    import shutil
    from run import workdir as wd
    copy = str(tmp_path / "d")
    shutil.copytree(data, copy)
    work = str(tmp_path / "w")
    os.makedirs(work)
    monkeypatch.setattr(wd, "flag_values_dict", lambda: {"data_dir": copy, "lr": 0.1})
    wd.check_run_identity(work, extra=wd.data_identity(copy))
    wd.write_results(work, {"final": 1.0})
    wd.check_run_identity(work, extra=wd.data_identity(copy))     # same data: resumes
    proc = _make_data(copy, "--setting=noisy", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with pytest.raises(UserError, match=f"--data_dir {copy} changed since the run"):
        wd.check_run_identity(work, extra=wd.data_identity(copy))
    wd.release_workdir_locks()
