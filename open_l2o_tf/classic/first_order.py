"""First-order baselines as optax-style gradient transformations.

GD, SGD with momentum, Adam (Kingma & Ba, ICLR 2015) and RMSProp (Tieleman & Hinton 2012),
the hand-designed baselines of Open-L2O (Chen et al., JMLR 2022, Section 4.2: Figs. 6-8).
Each returns a :class:`~open_l2o_tf.classic.transforms.GradientTransformation` whose
``update(grads, state, params)`` returns the *updates* (``params_new = params + updates``).
Adam and RMSprop follow the update equations of ``keras.optimizers.Adam``/``RMSprop``
(Keras 3) step for step; ``tests/test_classic.py`` checks this.
"""
import tensorflow as tf

from open_l2o_tf.classic.transforms import GradientTransformation
from open_l2o_tf.errors import require


def _check_lr(learning_rate):
    require(isinstance(learning_rate, (int, float)) and learning_rate > 0,
            f"learning_rate must be a positive number, got {learning_rate!r}")
    return float(learning_rate)


def gd(learning_rate):
    """Gradient descent with a fixed step: ``x_{t+1} = x_t - lr * g_t``.

    Args:
      learning_rate: the step size (the paper's Lasso GD baseline uses 1e-3).
    """
    lr = _check_lr(learning_rate)

    def update(grads, state, params=None):
        del params
        return [-lr * g for g in grads], state

    return GradientTransformation(lambda params: (), update)


def sgd(learning_rate, momentum=0.0):
    """SGD with heavy-ball momentum, as ``keras.optimizers.SGD``.

    ``v_{t+1} = momentum * v_t - lr * g_t``, ``x_{t+1} = x_t + v_{t+1}`` (plain SGD when
    ``momentum = 0``; the gradient is a minibatch gradient when the problem is stochastic).
    """
    lr = _check_lr(learning_rate)
    require(0.0 <= momentum < 1.0, f"momentum must be in [0, 1), got {momentum!r}")
    if momentum == 0.0:
        return gd(lr)

    def init(params):
        return [tf.zeros_like(p) for p in params]

    def update(grads, state, params=None):
        del params
        velocity = [momentum * v - lr * g for v, g in zip(state, grads)]
        return velocity, velocity

    return GradientTransformation(init, update)


def adam(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam (Kingma & Ba 2015) in the Keras-3 / TF1 form (epsilon outside the square root).

    ``m_t = beta1 m_{t-1} + (1 - beta1) g_t``, ``v_t = beta2 v_{t-1} + (1 - beta2) g_t^2``,
    ``x_t = x_{t-1} - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m_t / (sqrt(v_t) + eps)``.
    Note ``keras.optimizers.Adam`` defaults to ``eps = 1e-7``; the paper's (and the
    original TF1 ``tf.train.AdamOptimizer``'s) default is 1e-8, used here.
    """
    lr = _check_lr(learning_rate)

    def init(params):
        return (tf.zeros([], tf.int32), [tf.zeros_like(p) for p in params],
                [tf.zeros_like(p) for p in params])

    def update(grads, state, params=None):
        del params
        count, ms, vs = state
        count = count + 1
        updates, new_ms, new_vs = [], [], []
        for g, m, v in zip(grads, ms, vs):
            t = tf.cast(count, g.dtype)
            alpha = lr * tf.sqrt(1.0 - tf.pow(tf.cast(beta2, g.dtype), t)) / (
                1.0 - tf.pow(tf.cast(beta1, g.dtype), t))
            m = m + (g - m) * (1.0 - beta1)
            v = v + (tf.square(g) - v) * (1.0 - beta2)
            updates.append(-(m * alpha) / (tf.sqrt(v) + eps))
            new_ms.append(m)
            new_vs.append(v)
        return updates, (count, new_ms, new_vs)

    return GradientTransformation(init, update)


def rmsprop(learning_rate=1e-3, decay=0.9, eps=1e-10, initial_accumulator=0.0):
    """RMSProp (Tieleman & Hinton 2012), epsilon inside the square root (Keras 3 and TF1).

    ``s_t = decay s_{t-1} + (1 - decay) g_t^2``, ``x_t = x_{t-1} - lr g_t / sqrt(s_t + eps)``.

    Defaults: ``eps = 1e-10`` is the TF1 ``tf.train.RMSPropOptimizer`` default used by the
    original Open-L2O baselines (Keras 3's ``RMSprop`` default is 1e-7; pass ``eps=1e-7``
    to match it).  ``initial_accumulator`` is ``s_0``: 0 as in Keras 3; TF1's
    ``tf.train.RMSPropOptimizer`` initialises it to **1.0**, which makes the first
    hundreds of steps of lr 1e-3 tiny when gradients are small (the flat start of the
    paper's RMSProp Lasso curve, Fig. 6, is consistent with that).
    """
    lr = _check_lr(learning_rate)
    require(0.0 <= decay < 1.0, f"decay must be in [0, 1), got {decay!r}")

    def init(params):
        return [tf.fill(tf.shape(p), tf.cast(initial_accumulator, p.dtype)) for p in params]

    def update(grads, state, params=None):
        del params
        new_state = [decay * s + (1.0 - decay) * tf.square(g) for s, g in zip(state, grads)]
        updates = [-(lr * g) / tf.sqrt(s + eps) for g, s in zip(grads, new_state)]
        return updates, new_state

    return GradientTransformation(init, update)
