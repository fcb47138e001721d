"""tf.distribute: 2 logical CPU devices under ``mirrored`` and 2 worker processes on
127.0.0.1 under ``multi_worker`` give the single-device results (tests/dist_job.py).

The jobs run in their own processes (logical devices and collectives are configured once
per process, before TensorFlow initialises its devices), started once for the whole file,
two at a time (the two workers; then one with the single device reference and the
2-device mirrored run, and ``run.nn_training`` under mirrored), bounded in time and killed
at the end.
Compared, on the same seeds: progressive training of a 2-layer LISTA (per-layer test NMSE
within 0.1 dB, final weights' checksum to 1e-4 relative) and meta-training (held-out score
within 1 %, the distance the weights moved within 1 %) of L2O-enhanced (L2O-DM with
meta-training and imitation episodes, the latter split by coordinates) and L2O-Swarm (the
instances split), and under mirrored also of Twin-L2O (the games split), L2O-Scale and
L2O-DM on one network (the minibatch split); under mirrored L2O-Scale's meta-training is
also resumed after episode 2 and must end exactly as uninterrupted (its carried state is per
replica).  The two workers run the progressive
training interrupted after layer 1, and the meta-training of L2O-enhanced and L2O-Swarm
interrupted after episode 2, resumed from the chief's checkpoint (which the chief
broadcasts to the other worker), which must end where the uninterrupted single-device runs
end.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from open_l2o_tf import distribute
from open_l2o_tf.errors import UserError
from tests.test_datasets import write_tiny_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600


def _free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(args, workdir, env=None):
    os.makedirs(workdir, exist_ok=True)
    log = open(os.path.join(workdir, "log.txt"), "w")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "tests.dist_job", *args, workdir], cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})), stdout=log,
        stderr=subprocess.STDOUT)
    proc.log_path = log.name
    log.close()
    return proc


def _result(proc, deadline):
    try:
        proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"distributed job timed out; log: {open(proc.log_path).read()[-2000:]}")
    text = open(proc.log_path).read()
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"job failed ({proc.returncode}): {text[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _start_nn_training(root):
    """``run.nn_training`` meta-training L2O-DM under mirrored on 2 logical CPUs, on tiny
    generated MNIST idx files (2 episodes of 2 truncations of 2 steps)."""
    data = write_tiny_mnist(root / "mnist")
    workdir = root / "nn_training"
    log = open(root / "nn_training.log", "w")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "run.nn_training", "--optimizer=l2o_dm", "--preset=quick",
         f"--mnist_dir={data}", f"--workdir={workdir}", "--meta_episodes=2", "--unroll=4",
         "--truncation=2", "--steps=5", "--runs=1", "--strategy=mirrored",
         "--cpu_replicas=2"], cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        stdout=log, stderr=subprocess.STDOUT)
    proc.log_path, proc.workdir = log.name, str(workdir)
    log.close()
    return proc


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two processes at a time (each is multi-threaded; four at once on two cores spent
    more CPU in all): the two workers, then the mirrored jobs and run.nn_training."""
    root = tmp_path_factory.mktemp("dist")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, out = {}, {}
    deadline = time.time() + TIMEOUT
    try:
        for i in range(2):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            procs[f"worker{i}"] = _start(["multi_worker", "0"], str(root / f"worker{i}"),
                                         {"TF_CONFIG": config,
                                          "DIST_JOBS": "resume,enhanced,swarm"})
        out.update({name: _result(proc, deadline) for name, proc in procs.items()})
        procs["mirrored"] = _start(["mirrored", "2"], str(root / "mirrored"),
                                   {"DIST_REFERENCE": "1"})
        procs["nn_training"] = nn_training = _start_nn_training(root)
        out["mirrored"] = _result(procs["mirrored"], deadline)
        out["default"] = out["mirrored"]["reference"]
        out = {name: value.get("run", value) for name, value in out.items()}
        try:
            nn_training.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pytest.fail("run.nn_training under mirrored timed out")
        out["nn_training"] = {"status": nn_training.returncode,
                              "log": open(nn_training.log_path).read(),
                              "workdir": nn_training.workdir}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out["root"] = str(root)
    return out


def _same(reference, other, prefix=""):
    assert len(other[prefix + "nmse"]) == 2
    for a, b in zip(reference["nmse"], other[prefix + "nmse"]):
        assert abs(a - b) < 0.1
    assert other[prefix + "weights"] == pytest.approx(reference["weights"], rel=1e-4)


def _same_meta(reference, other, names):
    for name in names:
        assert reference[name + "_moved"] > 0      # meta-training changed the weights
        assert other[name + "_score"] == pytest.approx(reference[name + "_score"], rel=0.01)
        assert other[name + "_moved"] == pytest.approx(reference[name + "_moved"], rel=0.01)


def test_mirrored_two_cpu_devices_match_one_device(results):
    ref, mirrored = results["default"], results["mirrored"]
    assert ref["replicas"] == 1 and mirrored["replicas"] == 2
    assert ref["nmse"][1] < ref["nmse"][0] < 0      # it trained
    _same(ref, mirrored)
    _same_meta(ref, mirrored, ("scale", "enhanced", "nn"))
    # L2O-Scale's state carried across episodes is per replica and in the checkpoint: 2
    # episodes + a new trainer for the third end exactly where 3 in one go end
    assert "scale_resume_max_diff" not in ref
    assert mirrored["scale_resume_max_diff"] == 0.0
    assert mirrored["scale_resume_carried_steps"] == [3 * 4, 3 * 4]


def test_mirrored_imitation_episodes_split_by_coordinates(results):
    ref, mirrored = results["default"], results["mirrored"]
    assert ref["enhanced_imitation_losses"]        # some episodes imitated Adam
    assert mirrored["enhanced_imitation_losses"] == pytest.approx(
        ref["enhanced_imitation_losses"], rel=1e-4)


def test_mirrored_swarm_and_twin_match_one_device(results):
    _same_meta(results["default"], results["mirrored"], ("swarm", "twin"))


def test_two_workers_match_one_device_and_resume(results):
    ref = results["default"]
    chief, other = results["worker0"], results["worker1"]
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["chief"] and not other["chief"]
    for worker in (chief, other):
        _same(ref, worker, "resume_")          # interrupted after layer 1, resumed
        # L2O-enhanced (DM and imitation episodes) and L2O-Swarm interrupted after
        # episode 2, resumed (Twin-L2O resumes through the same EpisodicTrainer code)
        _same_meta(ref, worker, ("enhanced", "swarm"))
        # the history is in the chief's checkpoint and broadcast with it
        assert worker["swarm_history"] == ref["swarm_history"] == [3, [2, 3]]
        assert worker["enhanced_imitation_losses"] == pytest.approx(
            ref["enhanced_imitation_losses"], rel=1e-4)
    # checkpoints: written by the chief only
    assert "progress.json" in chief["ckpt_files"] and other["ckpt_files"] == []
    root = results["root"]
    for name in ("enhanced_ckpt", "swarm_ckpt"):
        assert os.listdir(os.path.join(root, "worker0", name))
        assert not os.path.exists(os.path.join(root, "worker1", name))


def test_nn_training_meta_trains_under_mirrored(results):
    run = results["nn_training"]
    assert run["status"] == 0, run["log"][-3000:]
    assert "MirroredStrategy: 2 replicas in sync" in run["log"]
    with open(os.path.join(run["workdir"], "results.json")) as handle:
        record = json.load(handle)
    assert record["train_steps"] == 2 * 2 * 2          # episodes x truncations x steps
    assert len(record["curve"]) == 6 and np.isfinite(record["final"])
    assert record["config"]["strategy"] == "mirrored"
    with open(os.path.join(run["workdir"], "ckpt", "meta_state.json")) as handle:
        assert json.load(handle)["episode"] == 2


def test_strategy_options_checked_without_tensorflow():
    assert distribute.chief_from_tf_config({})
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    env = lambda task: {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}  # noqa: E731
    assert distribute.chief_from_tf_config(env({"type": "worker", "index": 0}))
    assert not distribute.chief_from_tf_config(env({"type": "worker", "index": 1}))
    with pytest.raises(UserError, match="TF_CONFIG is not JSON"):
        distribute.read_tf_config({"TF_CONFIG": "{nope"})
    with pytest.raises(UserError, match="not one of the cluster's tasks"):
        distribute.read_tf_config(env({"type": "worker", "index": 2}))
    with pytest.raises(UserError, match="TF_CONFIG, which is not set"):
        distribute.check_strategy_options("multi_worker", environ={})
    with pytest.raises(UserError, match="--cpu_replicas applies to --strategy=mirrored"):
        distribute.check_strategy_options("default", cpu_replicas=2)
    with pytest.raises(UserError, match="must be one of default, mirrored, multi_worker"):
        distribute.check_strategy_options("tpu")
