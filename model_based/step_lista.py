"""StepLISTA (Lasso only; spec model_based §4.9): ISTA with learned step sizes.

    x_{t+1} = eta_{lam gamma_t}(x_t + gamma_t A^T (y - A x_t))

``A`` and ``lam`` (= the Lasso lambda, 0.005) fixed; ``gamma_t`` init ``1 / L``.  At
initialisation it is ISTA with step 1/L on the Lasso with ``lam``.
"""
import keras
import tensorflow as tf

from model_based.base import UnrolledModel
from model_based.shrinkage import soft_threshold


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class StepLista(UnrolledModel):

    lasso_only = True

    def __init__(self, A, num_layers=16, lam=0.005, **kwargs):
        super().__init__(A, num_layers, lam, **kwargs)

    def create_variables(self):
        self.gamma = [self._add("step_size", 1.0 / self.L, t) for t in range(self.num_layers)]

    def layer(self, t, y, x, state):
        z = x + self.gamma[t] * tf.matmul(self.residual(y, x), self.A)
        return soft_threshold(z, self.lam * self.gamma[t]), state
