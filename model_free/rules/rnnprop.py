"""L2O-RNNprop (Lv, Jiang & Li 2017, "Learning gradient descent: better generalization and
longer horizons"; Open-L2O version, spec model_free §3).

Per coordinate, with Adam moments (beta1 = beta2 = 0.95):

    u = [m_hat / (sqrt(v_hat) + eps), g / (sqrt(v_hat) + eps)]
    x_{t+1} = x_t + scale * tanh(Linear(LSTM(LSTM(ELU(Linear_in(u))))))

``output_scale = 0.01`` on every problem, as Open-L2O (``util.get_config``: the RNNprop
net config has ``scale: 0.01`` whatever the problem; Lv et al.'s own code used 0.1 and
``x - out``).  Initial weights as Sonnet 1 (the original's): every projection ``w`` truncated
normal with stddev ``1/sqrt(fan_in)`` and zero bias, the LSTMs as :class:`SonnetLSTM`.
State: the two LSTM states, the moments ``m, v`` and the step counter.  ``random_scale`` (the
RNNprop training trick) is applied by the meta-trainer, not by the network.
"""
import keras
import tensorflow as tf

from model_free.rules.base import LearnedOptimizer, SonnetLSTM, num_coordinates
from model_free.rules.features import rnnprop_features


def _sonnet_linear(fan_in):
    """Sonnet 1's default ``snt.Linear`` weight initializer (its bias starts at zero)."""
    return keras.initializers.TruncatedNormal(stddev=1.0 / fan_in ** 0.5)


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class L2ORNNprop(LearnedOptimizer):

    original_selection = (10, 20)     # train_rnnprop.py evaluates every 10 episodes

    @classmethod
    def for_problem(cls, synthetic, **options):
        del synthetic
        return cls(output_scale=0.01, **options)     # on every problem, as the original

    def __init__(self, hidden=20, beta1=0.95, beta2=0.95, output_scale=0.01,
                 tied_lstm_init=False, **kwargs):
        """``tied_lstm_init``: the LSTMs' initialisation before it was made Sonnet 1's
        (:class:`model_free.rules.base.SonnetLSTM` ``tied_init``)."""
        super().__init__(**kwargs)
        self.tied_lstm_init = bool(tied_lstm_init)
        self.hidden, self.beta1, self.beta2 = int(hidden), float(beta1), float(beta2)
        self.output_scale = float(output_scale)
        self.input_projection = keras.layers.Dense(
            self.hidden, kernel_initializer=_sonnet_linear(2), name="input_projection")
        self.input_projection.build((None, 2))
        self.lstm_1 = SonnetLSTM(self.hidden, self.hidden, tied_init=self.tied_lstm_init,
                                 name="lstm_1")
        self.lstm_2 = SonnetLSTM(self.hidden, self.hidden, tied_init=self.tied_lstm_init,
                                 name="lstm_2")
        self.linear = keras.layers.Dense(1, kernel_initializer=_sonnet_linear(self.hidden),
                                         name="linear")
        self.linear.build((None, self.hidden))
        self.built = True

    def initial_state(self, params):
        n = num_coordinates(params)
        zeros = tf.zeros([n, self.hidden])
        col = tf.zeros([n, 1])
        return ((zeros, zeros), (zeros, zeros), col, col, tf.constant(0.0))

    def network(self, g, state):
        s1, s2, m, v, t = state
        t = t + 1.0
        u, m, v = rnnprop_features(g, m, v, t, self.beta1, self.beta2)
        h = tf.nn.elu(self.input_projection(u))
        h, s1 = self.lstm_1(h, s1)
        h, s2 = self.lstm_2(h, s2)
        return self.output_scale * tf.tanh(self.linear(h)), (s1, s2, m, v, t)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "beta1": self.beta1,
                "beta2": self.beta2, "output_scale": self.output_scale,
                "tied_lstm_init": self.tied_lstm_init}
