"""Run-to-run repeatability of compiled functions on one device.

Measured on TF 2.21 CPU (L2O-Swarm's meta-gradient of one truncation, 128 instances, 20
steps): the same ``tf.function`` graph (node for node identical between traces) gave
meta-gradients differing in the last bits from one trace to the next, and even from call
to call of one trace unless ``inter_op_parallelism_threads=1``; the forward values were
identical.  The cause is Grappler, TensorFlow's graph optimizer (no single pass: turning
off the arithmetic, remapping, constant-folding, layout or dependency optimizer alone did
not help); with Grappler off the gradients are bit-identical to eager execution across
traces, calls and processes, and the step is faster (Grappler's time on a graph of ~10^4
nodes is not paid back).  ``tf.config.experimental.enable_op_determinism()`` and
``TF_ENABLE_ONEDNN_OPTS=0`` do not remove it.

The :class:`model_free.meta.meta_trainer.MetaTrainer`'s truncation had it too, at 1024
Rastrigin instances (n = 10, 20 steps), in the meta-loss: L2O-DM's first truncation gave
3252.82568359375, 3252.8251953125 or 3252.824951171875 from one trace to the next, and
L2O-DM's and L2O-RNNprop's episode losses differed between two processes (their weights
after 10 episodes did not); with Grappler off every trace and process gave the same bits.
At 128 instances (two processes: L2O-DM, L2O-RNNprop, L2O-Scale, 60-300 episodes), at 256
and 512 (two traces) and for L2O-Scale at 1024 the bits were the same with it on.  The
truncation runs with Grappler off too.

:func:`no_graph_rewrites` turns Grappler off for the calls made inside it (the setting is
read when a function is called; it is restored afterwards).  The trainers do so when
:func:`open_l2o_tf.device.policy` says (on a CPU by default; on a GPU only when
bit-repeatability is asked for: ``deterministic=True``).
"""
import contextlib


@contextlib.contextmanager
def no_graph_rewrites():
    """Within the block, compiled functions run their graph as traced (Grappler off)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    before = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": bool(before.get("disable_meta_optimizer", False))})


def without_graph_rewrites(fn, enabled=True):
    """``fn`` (a compiled function) called under :func:`no_graph_rewrites`; ``fn`` itself
    when not ``enabled`` (:attr:`open_l2o_tf.device.Policy.graph_rewrites`: Grappler stays
    on, as on a GPU unless bit-repeatability is asked for)."""
    if not enabled:
        return fn

    def call(*args, **kwargs):
        with no_graph_rewrites():
            return fn(*args, **kwargs)
    call.__wrapped__ = fn
    return call
