"""LISTA-CPSS (Chen et al. 2018: coupling + support selection; spec model_based §4.3).

    x_{t+1} = shrink_ss(x_t + W_t^T (y - A x_t), theta_t, q_t),  q_t = min((t+1) p, p_max) %

``W_t`` (m, n) untied, init ``A`` (original quirk, ``faithful_init=True``) or ``A / L``;
``theta_t = lam / L``; ``p = ss_q_per_layer`` (1.2), ``p_max = ss_maxq`` (13), as
percentages.  Support selection: see :mod:`model_based.shrinkage`.
"""
import keras

from model_based.lista_cp import ListaCp
from model_based.shrinkage import shrink_ss, ss_keep_count, ss_percent


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class ListaCpss(ListaCp):

    support_selection = True
    perf_training = True

    def __init__(self, A, num_layers=16, lam=0.4, faithful_init=True, ss_q_per_layer=1.2,
                 ss_maxq=13.0, **kwargs):
        self.ss_q_per_layer = float(ss_q_per_layer)
        self.ss_maxq = float(ss_maxq)
        super().__init__(A, num_layers, lam, faithful_init, **kwargs)
        self.keep = [ss_keep_count(self.n, ss_percent(t, self.ss_q_per_layer, self.ss_maxq))
                     for t in range(self.num_layers)]

    def layer(self, t, y, x, state):
        x_new, _ = shrink_ss(self.pre_threshold(t, y, x), self.theta[t], self.keep[t])
        return x_new, state

    def get_config(self):
        return {**super().get_config(), "ss_q_per_layer": self.ss_q_per_layer,
                "ss_maxq": self.ss_maxq}
