"""Running a command line in a subprocess for the tests."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def run_cli(module, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc


def error_lines(proc):
    """The stderr lines that are ours (TF's C++ start-up chatter removed)."""
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")
            or line.startswith("Traceback")]


def run_ok(module, *args, workdir):
    """Runs a command with ``--workdir=workdir``, asserts it succeeded and returns its
    ``results.json`` record."""
    import json  # pylint: disable=import-outside-toplevel
    proc = run_cli(module, *args, f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(os.path.join(str(workdir), "results.json"), encoding="utf-8") as handle:
        return json.load(handle)
