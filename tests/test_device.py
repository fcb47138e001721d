"""Device-aware choices (open_l2o_tf.device): the progressive trainer as it is built on a
GPU keeps support selection's k-th value in the graph (no numpy_function), on a CPU it
keeps the host-side NumPy partition; XLA and Grappler follow the device."""
import collections

import tensorflow as tf

from model_based import progressive
from model_based.factory import build_model
from open_l2o_tf import device
from open_l2o_tf.data import alista_weight, sparse_recovery

M, N = 16, 64
HOST_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction")
Fake = collections.namedtuple("Fake", "name device_type")


def _pretend_gpu(monkeypatch):
    monkeypatch.setattr(device, "logical_devices", lambda: [
        Fake("/device:CPU:0", "CPU"), Fake("/device:GPU:0", "GPU")])


def _op_types(concrete):
    """Every op type of a traced function, its loop bodies (function library) included."""
    graph_def = concrete.graph.as_graph_def()
    types = {op.type for op in concrete.graph.get_operations()}
    types.update(node.op for f in graph_def.library.function for node in f.node_def)
    return types


def _epoch_graph_ops(jit_compile):
    """Trains one tiny ALISTA stage as ``run.sparse_recovery`` would (``jit_compile`` as
    given) and returns the op types of the compiled epoch it ran."""
    A = sparse_recovery.gaussian_matrix(M, N, 0)
    W = alista_weight.analytic_weight(A)
    split = lambda seed, num: [a.numpy() for a in  # noqa: E731
                               sparse_recovery.sample_measurements(A, seed, num)]
    model = build_model("alista", A, W, 2)
    trainer = progressive.ProgressiveTrainer(
        model, split(1, 64), split(2, 32), None, batch_size=16, val_batch_size=32,
        steps_per_epoch=2, max_epochs=1, patience=1, progress=None, jit_compile=jit_compile)
    made = []
    make_epoch = trainer.epochs.make_epoch

    def spy(*args):
        made.append(make_epoch(*args))
        return made[-1]
    trainer.epochs.make_epoch = spy
    trainer.run_stage(0, 0)
    order = tf.zeros([trainer.epochs.num_train], tf.int32)
    # the trace the stage ran (same signature: no retrace)
    return _op_types(made[0].get_concrete_function(order, trainer.epochs.train_y, trainer.epochs.train_x,
                                                   ()))


def test_gpu_trainer_keeps_top_k_in_the_graph_cpu_keeps_numpy(monkeypatch):
    cpu = _epoch_graph_ops(jit_compile=False)
    assert any(t in cpu for t in HOST_OPS), "CPU without XLA: NumPy partition on the host"
    _pretend_gpu(monkeypatch)
    assert device.step_device() == "GPU"
    gpu = _epoch_graph_ops(jit_compile=False)
    assert not [t for t in gpu if t in HOST_OPS or "PyFunc" in t], sorted(gpu)
    assert "TopKV2" in gpu


def test_policy_by_device(monkeypatch):
    from model_based.factory import use_jit
    cpu = device.policy()
    assert cpu.device == "CPU" and cpu.deterministic and not cpu.graph_rewrites
    assert cpu.kth_on_host(False) and not cpu.kth_on_host(True)
    assert not use_jit("alista", None) and use_jit("lista", None)
    assert use_jit("alista", True)
    assert device.policy(deterministic=False).graph_rewrites   # asked for on a CPU
    _pretend_gpu(monkeypatch)
    gpu = device.policy()
    assert gpu.device == "GPU" and gpu.graph_rewrites and not gpu.kth_on_host(False)
    assert use_jit("alista", None) and not use_jit("alista", False)
    assert not device.policy(deterministic=True).graph_rewrites


def test_grappler_switch_follows_the_policy(monkeypatch):
    """The swarm's compiled runner is called with Grappler off on a CPU (and on a GPU when
    bit-repeatability is asked for), as the plain tf.function on a GPU by default."""
    from model_free.rules import swarm
    from open_l2o_tf import determinism
    compiled = type(tf.function(lambda: 0))
    assert not isinstance(swarm.swarm_runner(None, 1, None), compiled)
    _pretend_gpu(monkeypatch)
    assert isinstance(swarm.swarm_runner(None, 1, None), compiled)
    assert not isinstance(swarm.swarm_runner(None, 1, None, deterministic=True), compiled)
    off = lambda: tf.config.optimizer.get_experimental_options().get(  # noqa: E731
        "disable_meta_optimizer", False)
    seen = []
    determinism.without_graph_rewrites(lambda: seen.append(off()))()
    determinism.without_graph_rewrites(lambda: seen.append(off()), enabled=False)()
    assert seen == [True, False] and not off()


def test_step_device_of_a_strategy():
    class Extended:
        worker_devices = ("/job:localhost/replica:0/task:0/device:CPU:0",
                          "/job:localhost/replica:0/task:0/device:CPU:1")

    class Strategy:
        extended = Extended()
    assert device.step_device(Strategy()) == "CPU"
    Extended.worker_devices = ("/job:worker/replica:0/task:1/device:GPU:0",)
    assert device.step_device(Strategy()) == "GPU"
