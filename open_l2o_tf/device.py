"""Which device a compiled step runs on, and the choices that depend on it.

Three choices were measured on a CPU and are right there, not on an accelerator
(docs/gpu.md):

* **the support selection's k-th largest magnitude** (:func:`model_based.shrinkage.kth_on_host`):
  on a CPU without XLA, NumPy's ``partition`` in a ``tf.numpy_function`` (0.24 ms for
  128 x 512) beats ``tf.math.top_k`` (1.7 ms); on a GPU the same call would copy the
  activations to the host and back once per layer per step, so ``top_k`` stays in the graph;
* **XLA for the support-selection models** (:func:`default_jit`): XLA's top-k is about 4x
  slower than TensorFlow's on a CPU, so those models train without XLA there by default;
  on a GPU every model is compiled as the trainer's default asks (XLA on);
* **Grappler** (:func:`graph_rewrites`): on a CPU it is off (:mod:`open_l2o_tf.determinism`:
  bit-repeatable meta-gradients, and no slower); on a GPU it is on unless bit-repeatability
  is asked for (``deterministic=True``).

The device is the strategy's (its replicas' devices) or, without a strategy, the one
TensorFlow places a step on by default: the first GPU (or TPU) when one is visible, else
the CPU.  ``logical_devices`` is the one query; a test replaces it to build a trainer as
it would be built on a GPU.
"""
import dataclasses

ACCELERATORS = ("GPU", "TPU")


def logical_devices():
    """``tf.config.list_logical_devices()`` (the query every decision here reads)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.config.list_logical_devices()


def _device_type(name):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return (tf.DeviceSpec.from_string(name).device_type or "CPU").upper()


def step_device(strategy=None):
    """``"GPU"``, ``"TPU"`` or ``"CPU"``: where the steps run.  Under a ``tf.distribute``
    strategy, the type of its replicas' devices (an accelerator if any replica is on one);
    without, an accelerator when one is visible (TensorFlow's default placement)."""
    if strategy is not None:
        names = getattr(strategy.extended, "worker_devices", None) or ()
        kinds = {_device_type(n) for n in names}
    else:
        kinds = {d.device_type.upper() for d in logical_devices()}
    for kind in ACCELERATORS:
        if kind in kinds:
            return kind
    return "CPU"


@dataclasses.dataclass(frozen=True)
class Policy:
    """The device-dependent choices of one training run (see the module docstring)."""
    device: str
    deterministic: bool

    @property
    def on_cpu(self):
        return self.device == "CPU"

    def kth_on_host(self, jit_compile):
        """Support selection's k-th value on the host (NumPy) when the step is not
        XLA-compiled, on a CPU only."""
        return self.on_cpu and not jit_compile

    def default_jit(self, support_selection):
        """XLA by default: on a CPU not for the support-selection models (top-k), on an
        accelerator for every model."""
        return not (self.on_cpu and support_selection)

    @property
    def graph_rewrites(self):
        """Grappler on for the compiled steps: off when bit-repeatability is asked for
        (on a CPU that is the default)."""
        return not self.deterministic


def policy(strategy=None, deterministic=None):
    """The :class:`Policy` for steps run under ``strategy`` (None: one device).
    ``deterministic``: bit-repeatable runs (Grappler off); None: the device's default
    (yes on a CPU, no on an accelerator)."""
    device = step_device(strategy)
    if deterministic is None:
        deterministic = device == "CPU"
    return Policy(device, bool(deterministic))


def default_jit(support_selection, strategy=None):
    """Whether a model trains XLA-compiled when no flag says (:meth:`Policy.default_jit`)."""
    return policy(strategy).default_jit(support_selection)
