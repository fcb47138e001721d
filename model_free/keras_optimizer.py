"""A trained learned optimizer as a ``keras.optimizers.Optimizer``.

    opt = LearnedKerasOptimizer(l2o)            # l2o: a trained L2ODM / L2ORNNprop
    model.compile(optimizer=opt, loss=...)
    model.fit(...)

Every model variable gets the learned optimizer's recurrent state as optimizer variables
(one per state leaf, e.g. LSTM h and c of shape ``(size, 20)``), and each step applies
``variable += learning_rate * d`` with ``d, state = l2o.network(g, state)`` (the learned
update of paper Section 4; ``learning_rate`` defaults to 1.0, i.e. the learned step as is).
The learned network's own weights are not trained.
"""
import keras
import numpy as np
import tensorflow as tf

from open_l2o_tf.errors import UserError


class LearnedKerasOptimizer(keras.optimizers.Optimizer):

    def __init__(self, learned, learning_rate=1.0, name="learned_optimizer", **kwargs):
        if not hasattr(learned, "network"):
            raise UserError(f"{type(learned).__name__} is not coordinate-wise per variable "
                            "(its update couples tensors), so it cannot run as a per-variable "
                            "Keras optimizer; use model_free.meta_trainer.evaluate instead")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.learned = learned
        self._slots = {}
        self._templates = {}

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
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
        config["learned"] = keras.saving.serialize_keras_object(self.learned)
        return config
