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

:func:`no_graph_rewrites` turns Grappler off for the calls made inside it (the setting is
read when a function is called; it is restored afterwards).
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


def without_graph_rewrites(fn):
    """``fn`` (a compiled function) called under :func:`no_graph_rewrites`."""
    def call(*args, **kwargs):
        with no_graph_rewrites():
            return fn(*args, **kwargs)
    call.__wrapped__ = fn
    return call
