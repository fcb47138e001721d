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
