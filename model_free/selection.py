"""Model selection of the meta-trainer: the score of the learned optimizer on fixed held-out
instances (lower is better).

``"last_truncation"``, the original's (``train_dm.py``: ``util.run_epoch`` returns the cost
of the *last* unroll): the sum of the losses ``f(x_{H-T}) .. f(x_H)`` of the last truncation
of the evaluation horizon ``H``; ``"horizon_mean"``: the mean loss over the whole horizon
(favours early descent; the quick preset's).  The held-out instances, starts and initial
states are functions of the seed, so every evaluation scores the same problems.
"""
import numpy as np
import tensorflow as tf

from model_free.evaluation import batch_count, make_runner, stateless_seed


class ModelSelection:
    """``score(horizon)`` on ``recipe.eval_instances`` held-out instances (one compiled
    runner per horizon, without XLA: measured slower here, CPU 25x50 Lasso 50 s vs 15 s)."""

    def __init__(self, opt, optimizee, recipe):
        self.opt, self.optimizee = opt, optimizee
        self.selection, self.truncation = recipe.selection, int(recipe.truncation)
        self.instances, self.seed = int(recipe.eval_instances), int(recipe.seed)
        self._runners = {}

    def score(self, horizon, instances=None):
        horizon = int(horizon)
        scores = []
        for i in range(instances or self.instances):
            seed = stateless_seed(10 ** 6 + self.seed, i)
            instance = self.optimizee.sample_instance(seed)
            params = list(self.optimizee.init_params(seed + [0, 1], instance))
            if horizon not in self._runners:
                scale = 1.0 / batch_count(self.optimizee, params, instance, 10 ** 6 + i)
                self._runners[horizon] = make_runner(self.opt, self.optimizee, horizon, scale,
                                                     jit_compile=False, seeded_state=True)
            curve = self._runners[horizon](params, instance,
                                           tf.constant(10 ** 6 + i, tf.int32),
                                           stateless_seed(10 ** 6 + i, 0)).numpy()
            if self.selection == "last_truncation":
                tail = curve[-(min(self.truncation, horizon) + 1):]
                scores.append(float(np.mean(np.sum(tail, axis=0))))
            else:
                scores.append(float(np.mean(curve)))
        return np.mean(scores)
