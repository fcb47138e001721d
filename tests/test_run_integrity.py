"""Files respect the umask; the command lines start quietly (TensorFlow's C++ start-up log
kept out of the terminal unless OPEN_L2O_TF_VERBOSE=1) without hiding a failing import."""
import os
import stat
import subprocess
import sys

import numpy as np

from open_l2o_tf import logging as olog

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        olog.atomic_write_json(str(tmp_path / "a.json"), {"x": 1})
        olog.atomic_save_npy(str(tmp_path / "A.npy"), np.eye(2))
        os.umask(0o077)
        olog.atomic_write_json(str(tmp_path / "private.json"), {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "A.npy").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600


def _run(args, env_extra, tmp_path, pythonpath=ROOT):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "OPEN_L2O_TF_VERBOSE")}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONPATH=pythonpath, **env_extra)
    return subprocess.run([sys.executable, "-m", "run.minimax", "--optimizer=gda",
                           "--preset=quick", "--half_steps=2", "--test_instances=1",
                           "--restarts=1", f"--workdir={tmp_path / 'w'}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_quiet_start_and_verbose_variable(tmp_path):
    quiet = _run([], {}, tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr.strip() == "", quiet.stderr     # nothing but our own output
    verbose = _run([], {"OPEN_L2O_TF_VERBOSE": "1"}, tmp_path / "v")
    assert verbose.returncode == 0
    # on this kind of machine TF logs its start-up (oneDNN / CUDA lines); they come back
    if verbose.stderr.strip():
        assert any(tag in verbose.stderr for tag in ("oneDNN", "cuda", "CUDA", "cpu_feature"))


def test_failing_tensorflow_import_is_not_hidden(tmp_path):
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os\nos.write(2, b'FAKE C++ START-UP LINE\\n')\n"
        "raise ImportError('libtensorflow.so: cannot open shared object file')\n")
    proc = _run([], {}, tmp_path, pythonpath=f"{tmp_path / 'fake'}{os.pathsep}{ROOT}")
    assert proc.returncode != 0
    assert "FAKE C++ START-UP LINE" in proc.stderr          # the captured log is replayed
    assert "libtensorflow.so: cannot open shared object file" in proc.stderr
