"""Start-up and workdir faults (subprocesses, tiny): Ctrl-C works when the process started
with SIGINT ignored (a background job, nohup) and the interrupt line says where the run
was; a checkpoint written by another run than the workdir's run.json records is refused
in one line."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from open_l2o_tf import position
from run import startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)

# a command whose main says where it is, then works until it is interrupted
SLEEPER = """
import time
from open_l2o_tf import position
from run import startup
def main(argv):
    position.set("layer 2 stage 1 epoch 7")
    print("ready", flush=True)
    time.sleep(60)
startup.main_wrapper(main, needs_tf=False)
"""


def test_interrupt_line_names_the_position():
    try:
        position.set("episode 40/100")
        assert startup.interrupt_line("SIGTERM") == \
            "interrupted at episode 40/100 (SIGTERM); re-run the same command to resume"
        position.clear()
        assert startup.interrupt_line("SIGINT") == \
            "interrupted (SIGINT); re-run the same command to resume"
    finally:
        position.clear()


@pytest.mark.parametrize("signame,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_works_when_sigint_was_ignored_at_start(signame, code):
    """SIGINT (also when the process started with it ignored) and SIGTERM from outside:
    exactly the interrupt line on stderr, exit 130 / 143."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [
        f"interrupted at layer 2 stage 1 epoch 7 ({signame}); re-run the same command to "
        "resume"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "run.rastrigin", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600, check=False)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    work = tmp_path / "w"
    args = ["--optimizer=nag_ls", "--steps=3", "--test_instances=1", "--starts=1",
            f"--workdir={work}"]
    start = time.time()
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stamp = work / "ckpt" / "IDENTITY"
    identity = json.loads(stamp.read_text())
    assert identity == json.loads((work / "run.json").read_text())
    # the checkpoint of a run with another seed brought into this workdir
    other = dict(identity, flags=dict(identity["flags"], seed=5))
    stamp.write_text(json.dumps(other))
    (work / "ckpt" / "last.npz").write_bytes(b"weights of the other run")
    before = {p: open(os.path.join(work, p), "rb").read() for p in ("run.json", "results.json")}
    proc = _run(*args)
    lines = [l for l in proc.stderr.splitlines() if l.startswith(("error:", "Traceback"))]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert re.match(r"error: --workdir .*: its checkpoint ckpt/ was written by another run "
                    r"than run\.json records \(--seed=5 there, 0 now\)", lines[0]), lines[0]
    assert before == {p: open(os.path.join(work, p), "rb").read() for p in before}
    assert time.time() - start < 300
    shutil.rmtree(work / "ckpt")
