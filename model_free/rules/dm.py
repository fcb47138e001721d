"""L2O-DM (Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient
descent"; paper Section 4, spec model_free §2).

Per coordinate: ``u = pre(g)`` -> LSTM(20) -> LSTM(20) -> Linear(1), and

    x_{t+1} = x_t + scale * Linear(h2_t)

``pre`` is LogAndSign with k = 5 (MNIST problems, ``output_scale=0.01``) or the raw
gradient (synthetic problems: quadratic, Rastrigin, Lasso; ``output_scale=1.0``).  The LSTM
cells follow Sonnet-1 so the original Open-L2O weights (``*.cw.l2l-0``) load exactly.
L2O-enhanced is this network trained with curriculum + imitation.
"""
import keras
import tensorflow as tf

from model_free.meta.curriculum import Curriculum
from model_free.meta.imitation import Imitation
from model_free.rules.base import LearnedOptimizer, SonnetLSTM, num_coordinates
from model_free.rules.features import log_and_sign
from open_l2o_tf.errors import UserError


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class L2ODM(LearnedOptimizer):

    @classmethod
    def for_problem(cls, synthetic, **options):
        """Raw gradients and output scale 1 on synthetic problems, LogAndSign (k = 5) and
        0.01 on networks, as the original."""
        if synthetic:
            return cls(preprocess="identity", output_scale=1.0, **options)
        return cls(preprocess="log_and_sign", k=5.0, output_scale=0.01, **options)

    def __init__(self, hidden=20, preprocess="log_and_sign", k=5.0, output_scale=0.01,
                 tied_lstm_init=False, **kwargs):
        """``tied_lstm_init``: the LSTMs' initialisation before it was made Sonnet 1's
        (:class:`model_free.rules.base.SonnetLSTM` ``tied_init``: each ``b_gates`` a copy of the
        first row of its ``w_gates``); default False, independent draws as the original."""
        super().__init__(**kwargs)
        if preprocess not in ("log_and_sign", "identity"):
            raise UserError(f"preprocess must be 'log_and_sign' or 'identity', got "
                            f"{preprocess!r}")
        self.hidden, self.preprocess, self.k = int(hidden), preprocess, float(k)
        self.output_scale = float(output_scale)
        self.tied_lstm_init = bool(tied_lstm_init)
        in_dim = 2 if preprocess == "log_and_sign" else 1
        self.lstm_1 = SonnetLSTM(self.hidden, in_dim, tied_init=self.tied_lstm_init,
                                 name="lstm_1")
        self.lstm_2 = SonnetLSTM(self.hidden, self.hidden, tied_init=self.tied_lstm_init,
                                 name="lstm_2")
        self.linear = keras.layers.Dense(1, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=1.0 / self.hidden ** 0.5), name="linear")
        self.linear.build((None, self.hidden))
        self.built = True

    def initial_state(self, params):
        n = num_coordinates(params)
        zeros = tf.zeros([n, self.hidden])
        return ((zeros, zeros), (zeros, zeros))

    def network(self, g, state):
        u = log_and_sign(g, self.k) if self.preprocess == "log_and_sign" else g
        h1, s1 = self.lstm_1(u, state[0])
        h2, s2 = self.lstm_2(h1, state[1])
        return self.output_scale * self.linear(h2), (s1, s2)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "preprocess": self.preprocess,
                "k": self.k, "output_scale": self.output_scale,
                "tied_lstm_init": self.tied_lstm_init}


def enhanced_meta_training(opt, *, seed=0, horizons=None, meta_lr=None):
    """L2O-enhanced's recipe (the ``l2o_enhanced`` registry entry: the L2O-DM network
    trained differently): L2O-DM's (Adam at ``meta_lr``) plus the curriculum of unroll
    horizons (``horizons``, default :class:`model_free.meta.curriculum.Curriculum`'s) and the
    imitation of Adam (:class:`model_free.meta.imitation.Imitation`, seeded with ``seed``)."""
    return L2ODM.meta_training(opt, meta_lr=meta_lr).replace(
        curriculum=Curriculum(horizons) if horizons else Curriculum(),
        imitation=Imitation("dm", seed=seed))
