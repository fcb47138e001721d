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


class Adam:
    """The one Adam of the toolbox (Kingma & Ba 2015), in the Keras-3 / TF1 form (epsilon
    outside the square root):

        m_t = beta1 m_{t-1} + (1 - beta1) c g_t,   v_t = beta2 v_{t-1} + (1 - beta2) (c g_t)^2
        x_t = x_{t-1} - s lr sqrt(1 - beta2^t) / (1 - beta1^t) * m_t / (sqrt(v_t) + eps)

    with a per-tensor gradient multiplier ``c`` (``grad_multipliers``, the progressive
    trainer's ``0.3^age``) and step multiplier ``s`` (``step_multipliers``), both 1 by
    default.  Used as the classic baseline (:func:`adam`, a functional transform), by the
    progressive trainer on slot variables (:mod:`model_based.progressive`) and as
    L2O-enhanced's teacher (:func:`model_free.meta.imitation.adam_trajectory`).

    ``form`` is the rounding form of the updates: ``"keras"`` (``m + (g - m)(1 - beta1)``,
    step ``-(m alpha) / (sqrt(v) + eps)``: Keras 3 and TF1's kernel) or ``"textbook"``
    (``beta1 m + (1 - beta1) g``, ``v``: ``beta2 v + ((1 - beta2) g) g``, step ``-(alpha m /
    (sqrt(v) + eps))``); ``bias_dtype`` the dtype of the bias correction.  They are equal
    in exact arithmetic; the progressive trainer and the imitation teacher keep the form
    they were written with (textbook; the teacher's correction in float64), so their
    numbers, also under XLA, are unchanged bit for bit.
    """

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 grad_multipliers=None, step_multipliers=None, form="keras",
                 bias_dtype=tf.float32):
        self.lr = _check_lr(learning_rate)
        require(form in ("keras", "textbook"),
                f"form must be 'keras' or 'textbook', got {form!r}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.grad_multipliers, self.step_multipliers = grad_multipliers, step_multipliers
        self.form, self.bias_dtype = form, bias_dtype

    def correction(self, count):
        """``lr sqrt(1 - beta2^t) / (1 - beta1^t)`` at step ``count`` (1-based), in
        ``bias_dtype``."""
        t = tf.cast(count, self.bias_dtype)
        return self.lr * tf.sqrt(1.0 - tf.pow(tf.constant(self.beta2, self.bias_dtype), t)) / (
            1.0 - tf.pow(tf.constant(self.beta1, self.bias_dtype), t))

    def moments(self, j, g, m, v):
        """The new ``(m, v)`` of tensor ``j`` from its gradient ``g``."""
        if self.grad_multipliers is not None:
            g = g * self.grad_multipliers[j]
        if self.form == "keras":
            return (m + (g - m) * (1.0 - self.beta1),
                    v + (tf.square(g) - v) * (1.0 - self.beta2))
        return (self.beta1 * m + (1.0 - self.beta1) * g,
                self.beta2 * v + (1.0 - self.beta2) * g * g)

    def step(self, j, m, v, correction):
        """The update of tensor ``j`` (``params_new = params + step``)."""
        alpha = tf.cast(correction, m.dtype)
        if self.step_multipliers is not None:
            alpha = self.step_multipliers[j] * alpha
        if self.form == "keras":
            return -(m * alpha) / (tf.sqrt(v) + self.eps)
        return -(alpha * m / (tf.sqrt(v) + self.eps))

    def transform(self):
        """A :class:`GradientTransformation` with state ``(count, ms, vs)``; a ``None``
        gradient leaves its slots unchanged and gives a ``None`` update."""
        def init(params):
            return (tf.zeros([], tf.int32), [tf.zeros_like(p) for p in params],
                    [tf.zeros_like(p) for p in params])

        def update(grads, state, params=None):
            del params
            count, ms, vs = state
            count = count + 1
            correction = self.correction(count)
            updates, new_ms, new_vs = [], [], []
            for j, (g, m, v) in enumerate(zip(grads, ms, vs)):
                if g is not None:
                    m, v = self.moments(j, g, m, v)
                updates.append(None if g is None else self.step(j, m, v, correction))
                new_ms.append(m)
                new_vs.append(v)
            return updates, (count, new_ms, new_vs)

        return GradientTransformation(init, update)


def adam(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **options):
    """Adam as a gradient transformation (:class:`Adam`; ``options``: its
    ``grad_multipliers``, ``step_multipliers``, ``form``, ``bias_dtype``).

    Note ``keras.optimizers.Adam`` defaults to ``eps = 1e-7``; the paper's (and the
    original TF1 ``tf.train.AdamOptimizer``'s) default is 1e-8, used here.
    """
    return Adam(learning_rate, beta1, beta2, eps, **options).transform()


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
