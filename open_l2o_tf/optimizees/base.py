"""The optimizee interface shared by classic baselines and learned optimizers.

An optimizee is a *family* of problems.  ``sample_instance`` draws the constants of a batch
of independent instances (e.g. A, b, c of the Rastrigin family), ``init_params`` a starting
point, and ``loss`` evaluates the mean loss over the batch as a differentiable function of
a **list of parameter tensors** (never variables), so that a learned optimizer can
differentiate through its own updates.

Seeds are stateless-RNG seeds (a Python int or an integer tensor of shape ``[2]``), so all
sampling works inside ``tf.function`` with ``tf.random.stateless_*`` ops.
"""
import tensorflow as tf


def as_seed(seed):
    """Normalises an int or a ``[2]`` tensor to an int32 ``[2]`` stateless seed."""
    if isinstance(seed, int):
        return tf.constant([seed & 0x7FFFFFFF, (seed >> 31) & 0x7FFFFFFF], tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        return tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
    return tf.cast(seed, tf.int32)


def split_seed(seed, num=2):
    """``num`` independent ``[2]`` seeds derived from ``seed`` (stateless)."""
    return tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), num=num))


def use_xla(optimizee, jit_compile=True):
    """Whether to XLA-compile a loop over ``optimizee``: ``jit_compile``, except on a
    machine without an accelerator for an optimizee that says ``xla_on_cpu = False`` (as
    ``keras.Model.fit``'s ``jit_compile="auto"``, which leaves XLA off on CPU-only machines;
    on a GPU XLA's convolutions are fine).  Call it before placing ops on devices."""
    if not jit_compile or getattr(optimizee, "xla_on_cpu", True):
        return bool(jit_compile)
    return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())


class Optimizee:
    """Base class of an optimizee family.

    Subclasses implement ``sample_instance``, ``init_params`` and ``instance_losses``;
    stochastic families (neural networks) also implement ``sample_batch``.

    Attributes:
      name: the registry name.
      batch_size: number of instances optimised together (synthetic families).
      xla_on_cpu: whether XLA compiles the loss and its gradient well on a CPU
        (:func:`use_xla`; False for the convnets, whose XLA CPU convolutions are an order
        of magnitude slower than TensorFlow's own kernels).
    """

    name = "optimizee"
    stochastic = False
    xla_on_cpu = True

    def sample_instance(self, seed, batch_size=None):
        """Constants of ``batch_size`` instances as a dict of tensors ({} when none)."""
        raise NotImplementedError

    def init_params(self, seed, instance):
        """A starting point: a list of tensors (batch first for synthetic families)."""
        raise NotImplementedError

    def sample_batch(self, seed):
        """A minibatch for stochastic families, else None."""
        del seed
        return None

    def instance_losses(self, params, instance, batch=None):
        """Per-instance losses, shape ``(batch_size,)`` (``(1,)`` for a single network)."""
        raise NotImplementedError

    def loss(self, params, instance, batch=None):
        """The mean loss over instances (the quantity optimizers minimise)."""
        return tf.reduce_mean(self.instance_losses(params, instance, batch))

    def loss_and_grads(self, params, instance, batch=None):
        """``(loss, grads)`` with one tape; grads is a list aligned with ``params``."""
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = self.loss(params, instance, batch)
        return value, tape.gradient(value, params)
