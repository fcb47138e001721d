"""TiLISTA (tied LISTA, Liu et al. 2019 ALISTA repository; spec model_based §4.8, note).

    x_{t+1} = shrink_ss(x_t + gamma_t W^T (y - A x_t), theta_t, q_t)

ALISTA's iteration with ONE tied **learned** ``W`` (m, n), init ``A / L`` (belongs to
layer 0), ``gamma_t`` init 1, ``theta_t = lam / L``.  Not part of Open-L2O's Fig. 5;
provided for completeness.
"""
import keras

from model_based.alista import Alista


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Tilista(Alista):

    FIXED_W = False
    needs_W = False
    perf_training = False

    def __init__(self, A, num_layers=16, lam=0.4, ss_q_per_layer=1.2, ss_maxq=13.0,
                 **kwargs):
        kwargs.pop("W", None)
        super().__init__(A, None, num_layers, lam, ss_q_per_layer, ss_maxq, **kwargs)

    def create_variables(self):
        self.W = self._add("W", self.A_np / self.L, 0)
        super().create_variables()

    def weight(self):
        return self.W
