"""A trained learned optimizer as a ``keras.optimizers.Optimizer``.

    opt = LearnedKerasOptimizer(l2o)            # l2o: a trained L2ODM / L2ORNNprop
    model.compile(optimizer=opt, loss=...)
    model.fit(...)
    model.save("m.keras")                       # keras.saving.load_model("m.keras") after
                                                # `import model_free.keras_optimizer`

Every model variable gets the learned optimizer's recurrent state as optimizer variables
(one per state leaf, e.g. LSTM h and c of shape ``(size, 20)``), and each step applies
``variable += learning_rate * d`` with ``d, state = l2o.network(g, state)`` (the learned
update of paper Section 4; ``learning_rate`` defaults to 1.0, i.e. the learned step as is).
The learned network's own weights are not trained.

Saving: the class is registered with Keras; ``get_config`` holds the learned optimizer's
class and config (no arrays), and its weights are kept as (frozen) optimizer variables
beside the recurrent states, so a saved model carries them in its weights file and
training continues from the loaded recurrent state.
"""
import keras
import numpy as np
import tensorflow as tf

from model_free.base import LearnedOptimizer
from open_l2o_tf.errors import UserError


def _learned_classes():
    from model_free.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from model_free.rnnprop import L2ORNNprop  # pylint: disable=import-outside-toplevel
    return {"L2ODM": L2ODM, "L2ORNNprop": L2ORNNprop}


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class LearnedKerasOptimizer(keras.optimizers.Optimizer):

    def __init__(self, learned, learning_rate=1.0, name="learned_optimizer", **kwargs):
        if getattr(type(learned), "network", LearnedOptimizer.network) is \
                LearnedOptimizer.network:      # no per-coordinate network of its own
            raise UserError(f"{type(learned).__name__} is not coordinate-wise per variable "
                            "(its update couples tensors), so it cannot run as a per-variable "
                            "Keras optimizer; use model_free.meta_trainer.evaluate instead")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.learned = learned
        self._slots = {}
        self._templates = {}
        self._learned_copies = []

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # the learned network's weights travel with the optimizer's variables (frozen)
        self._learned_copies = [
            self.add_variable(shape=tuple(w.shape), dtype="float32", initializer="zeros",
                              name=f"learned_w{i}")
            for i, w in enumerate(self.learned.weights)]
        for copy, w in zip(self._learned_copies, self.learned.weights):
            copy.assign(w)
        for var in var_list:
            size = int(np.prod(var.shape))
            template = self.learned.initial_state([tf.zeros([size])])
            leaves = tf.nest.flatten(template)
            slots = [self.add_variable(shape=tuple(leaf.shape), dtype="float32",
                                       initializer="zeros",
                                       name=f"{var.name.replace('/', '_')}_state{i}")
                     for i, leaf in enumerate(leaves)]
            self._slots[self._var_key(var)] = slots
            self._templates[self._var_key(var)] = template

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

    def get_config(self):
        config = super().get_config()
        learned_config = {k: v for k, v in self.learned.get_config().items()
                          if k not in ("name", "trainable", "dtype")}
        config["learned"] = {"class": type(self.learned).__name__, "config": learned_config}
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        spec = config.pop("learned", None)
        classes = _learned_classes()
        if not isinstance(spec, dict) or spec.get("class") not in classes:
            raise UserError(f"LearnedKerasOptimizer config holds no known learned optimizer "
                            f"({spec!r:.80}); expected one of {sorted(classes)}")
        learned = classes[spec["class"]](**spec.get("config", {}))
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = keras.optimizers.schedules.deserialize(
                config["learning_rate"], custom_objects=custom_objects)
        return cls(learned, **config)
