"""A trained learned optimizer as a ``keras.optimizers.Optimizer``.

    opt = LearnedKerasOptimizer(l2o)            # any learned update rule (interface "update")
    model.compile(optimizer=opt, loss=...)
    model.fit(...)
    model.save("m.keras")                       # keras.saving.load_model("m.keras") after
                                                # `import model_free`

Each step applies the learned update of paper Section 4,
``theta_{t+1} = theta_t + learning_rate * d_t`` with ``d_t, state_{t+1} = l2o.update(g_t,
state_t)`` (``learning_rate`` defaults to 1.0: the learned step as is); the learned
network's own weights are not trained.  Two forms, chosen from the learned optimizer:

* **per variable** (a coordinate-wise rule with its own ``network``: L2O-DM, L2O-enhanced,
  L2O-RNNprop): every model variable gets the recurrent state as optimizer variables (one
  per state leaf, e.g. LSTM h and c of shape ``(size, 20)``) and Keras's ``update_step``
  runs ``d, state = l2o.network(g, state)`` on it;
* **coupled** (a rule whose update couples the tensors: L2O-Scale's tensor- and
  problem-level GRUs read means over coordinates): one ``l2o.update(grads, state, params)``
  over the whole list of trainable variables per step (the optimizer's collective update
  step, run after Keras's gradient clipping and accumulation), its hierarchical state
  (per coordinate, per tensor, global) kept as one optimizer variable per state leaf.
  The variables are the optimizer's tensors in the model's ``trainable_variables`` order;
  a variable without a gradient this step takes a zero gradient in the coupled update and
  is left unchanged.  One device only (no multi-replica strategy).

Random draws of the initial state (L2O-Scale's initial learning rates) are taken from the
stateless ``seed`` (two int32) when given (``l2o.seeded_initial_state``), else from
TensorFlow's global RNG, once, when the optimizer is built.

Saving: the class is registered with Keras; ``get_config`` holds the learned optimizer's
Keras-registered class name and config (no arrays), and its weights are kept as (frozen)
optimizer variables beside the recurrent states, so a saved model carries them in its
weights file and training continues from the loaded state exactly.
"""
import keras
import numpy as np
import tensorflow as tf

from model_free.rules.base import LearnedOptimizer
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError


def per_variable(learned):
    """Whether ``learned`` has a per-coordinate ``network`` of its own (else its update
    couples the tensors and runs over the whole variable list)."""
    return getattr(type(learned), "network", LearnedOptimizer.network) is not \
        LearnedOptimizer.network


def _learned_class(spec):
    """The class a saved config names: its Keras-registered name (``"package>Class"``), or
    (files written before) the bare class name of a registered learned optimizer."""
    name = spec.get("class") if isinstance(spec, dict) else None
    found = keras.saving.get_registered_object(name) if isinstance(name, str) else None
    if found is None and isinstance(name, str):
        for cls in registry.import_all("learned").values():
            if getattr(cls, "__name__", None) == name.split(">")[-1]:
                found = cls
                break
    if not (isinstance(found, type) and issubclass(found, LearnedOptimizer)):
        known = sorted({getattr(c, "__name__", str(c))
                        for c in registry.import_all("learned").values()})
        raise UserError(f"LearnedKerasOptimizer config holds no known learned optimizer "
                        f"({spec!r:.80}); expected one of {known} (import the module that "
                        "registers it first)")
    return found


def _seed_list(seed):
    if seed is None:
        return None
    values = np.asarray(seed, np.int64).reshape(-1).tolist()
    if len(values) == 1:
        values = [values[0], 0]
    if len(values) != 2:
        raise UserError(f"seed must be an int or two ints, got {seed!r}")
    return [int(v) for v in values]


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class LearnedKerasOptimizer(keras.optimizers.Optimizer):

    def __init__(self, learned, learning_rate=1.0, seed=None, name="learned_optimizer",
                 **kwargs):
        if not isinstance(learned, LearnedOptimizer):
            raise UserError(f"LearnedKerasOptimizer takes a learned update rule (a "
                            f"model_free.rules.base.LearnedOptimizer), got "
                            f"{type(learned).__name__}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.learned = learned
        self.seed = _seed_list(seed)
        self.coupled = not per_variable(learned)
        self._slots = {}
        self._templates = {}
        self._learned_copies = []
        self._state_vars = []
        self._pack_state = None

    def _initial_state(self, params):
        if self.seed is None:
            return self.learned.initial_state(params)
        return self.learned.seeded_initial_state(params, tf.constant(self.seed, tf.int32))

    def build(self, var_list):
        if self.built:
            return
        # model.fit builds the optimizer while tracing its first train step: the initial
        # values are computed and assigned eagerly, once (not ops of the step)
        with tf.init_scope():
            self._build(var_list)

    def _build(self, var_list):
        super().build(var_list)
        # the learned network's weights travel with the optimizer's variables (frozen)
        self._learned_copies = [
            self.add_variable(shape=tuple(w.shape), dtype="float32", initializer="zeros",
                              name=f"learned_w{i}")
            for i, w in enumerate(self.learned.weights)]
        for copy, w in zip(self._learned_copies, self.learned.weights):
            copy.assign(w)
        if self.coupled:
            self._build_coupled(var_list)
            return
        for var in var_list:
            size = int(np.prod(var.shape))
            template = self._initial_state([tf.zeros([size])])
            leaves = tf.nest.flatten(template)
            slots = [self.add_variable(shape=tuple(leaf.shape), dtype="float32",
                                       initializer="zeros",
                                       name=f"{var.name.replace('/', '_')}_state{i}")
                     for i, leaf in enumerate(leaves)]
            for slot, leaf in zip(slots, leaves):
                slot.assign(leaf)
            self._slots[self._var_key(var)] = slots
            self._templates[self._var_key(var)] = template

    def _build_coupled(self, var_list):
        """One optimizer variable per leaf of the learned optimizer's state over the whole
        list (e.g. L2O-Scale: per-coordinate GRU states and moments, per-tensor and global
        GRU states, the step counter)."""
        params = [tf.zeros(tuple(v.shape), tf.float32) for v in var_list]
        template = self._initial_state(params)
        leaves = tf.nest.flatten(template)
        self._state_vars = [self.add_variable(shape=tuple(leaf.shape), dtype="float32",
                                              initializer="zeros", name=f"state{i}")
                            for i, leaf in enumerate(leaves)]
        for var, leaf in zip(self._state_vars, leaves):
            var.assign(tf.cast(leaf, tf.float32))
        self._pack_state = lambda values: tf.nest.pack_sequence_as(template, values)

    def load_own_variables(self, store):
        """Loads the recurrent states and the learned network's weights."""
        super().load_own_variables(store)
        for copy, w in zip(self._learned_copies, self.learned.weights):
            w.assign(copy)

    def update_step(self, gradient, variable, learning_rate):
        key = self._var_key(variable)
        slots = self._slots[key]
        state = tf.nest.pack_sequence_as(self._templates[key],
                                         [tf.convert_to_tensor(s) for s in slots])
        g = tf.reshape(tf.cast(gradient, tf.float32), [-1, 1])
        step, new_state = self.learned.network(g, state)
        for slot, value in zip(slots, tf.nest.flatten(new_state)):
            slot.assign(value)
        lr = tf.cast(learning_rate, variable.dtype)
        variable.assign_add(lr * tf.cast(tf.reshape(step, variable.shape), variable.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """The coupled form: one learned update over every variable the optimizer was built
        with (Keras calls this once per step with all gradients)."""
        if not self.coupled:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        if tf.distribute.has_strategy() and \
                tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise UserError(f"{type(self.learned).__name__} couples the tensors: as a Keras "
                            "optimizer it runs on one device, not under a multi-replica "
                            "tf.distribute strategy")
        everything = self._trainable_variables
        full = [tf.zeros(tuple(v.shape), tf.float32) for v in everything]
        for grad, var in zip(grads, trainable_variables):
            full[self._get_variable_index(var)] = tf.cast(tf.convert_to_tensor(grad),
                                                          tf.float32)
        state = self._pack_state([tf.convert_to_tensor(v) for v in self._state_vars])
        params = [tf.cast(tf.convert_to_tensor(v), tf.float32) for v in everything]
        steps, new_state = self.learned.update(full, state, params)
        for var, value in zip(self._state_vars, tf.nest.flatten(new_state)):
            var.assign(value)
        for var in trainable_variables:
            step = steps[self._get_variable_index(var)]
            lr = tf.cast(learning_rate, var.dtype)
            var.assign_add(lr * tf.cast(step, var.dtype))
        return None

    def get_config(self):
        config = super().get_config()
        learned_config = {k: v for k, v in self.learned.get_config().items()
                          if k not in ("name", "trainable", "dtype")}
        config["learned"] = {"class": keras.saving.get_registered_name(type(self.learned)),
                             "config": learned_config}
        config["seed"] = None if self.seed is None else [int(v) for v in self.seed]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        spec = config.pop("learned", None)
        learned = _learned_class(spec)(**spec.get("config", {}))
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = keras.optimizers.schedules.deserialize(
                config["learning_rate"], custom_objects=custom_objects)
        return cls(learned, **config)
