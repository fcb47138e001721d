"""Model selection of the meta-trainer: the score of the learned optimizer on fixed held-out
instances (lower is better).

``"last_truncation"``, the original's (``train_dm.py``: ``util.run_epoch`` returns the cost
of the *last* unroll): the sum of the losses ``f(x_{H-T}) .. f(x_H)`` of the last truncation
of the evaluation horizon ``H``; ``"horizon_mean"``: the mean loss over the whole horizon
(favours early descent; the quick preset's).  The held-out instances, starts and initial
states are functions of the seed, so every evaluation scores the same problems.

The instances and starts are drawn once (they are the same at every evaluation) and all
of them are run by ONE compiled call per horizon (a ``tf.while_loop`` over the instances
around :func:`model_free.evaluation.make_runner`'s loop over the steps), which returns
every loss curve at once: no Python loop, no device-to-host copy per instance.  The scores
are then taken of the curves exactly as before (the same per-instance runner, the same
float32 curves).
"""
import numpy as np
import tensorflow as tf

from model_free.evaluation import batch_count, make_runner, stateless_seed
from model_free.recipe import compiles


class ModelSelection:
    """``score(horizon)`` on ``recipe.eval_instances`` held-out instances (one compiled
    call per horizon and number of instances).  The per-instance runner is XLA-compiled
    only where :func:`model_free.recipe.compiles` says (L2O-Scale on the MNIST MLP: 2.1x
    faster); otherwise not (measured slower for the LSTM optimizers, CPU 25x50 Lasso 50 s
    vs 15 s)."""

    def __init__(self, opt, optimizee, recipe):
        self.opt, self.optimizee = opt, optimizee
        self.selection, self.truncation = recipe.selection, int(recipe.truncation)
        self.instances, self.seed = int(recipe.eval_instances), int(recipe.seed)
        self.jit_compile = compiles(recipe, optimizee)
        self._held_out, self._scale, self._fns = {}, None, {}

    def held_out(self, count):
        """The ``count`` held-out instances and starts, stacked instance-first: ``(params,
        instance, seeds, seeds0)`` (drawn once per count; they are functions of the seed)."""
        if count not in self._held_out:
            params, instances = [], []
            for i in range(count):
                seed = stateless_seed(10 ** 6 + self.seed, i)
                instance = self.optimizee.sample_instance(seed)
                instances.append(instance)
                params.append(list(self.optimizee.init_params(seed + [0, 1], instance)))
                if self._scale is None:
                    self._scale = 1.0 / batch_count(self.optimizee, params[0], instance,
                                                    10 ** 6 + i)
            stack = lambda *parts: tf.stack(parts)  # noqa: E731
            self._held_out[count] = (
                tf.nest.map_structure(stack, *params), tf.nest.map_structure(stack, *instances),
                tf.constant([10 ** 6 + i for i in range(count)], tf.int32),
                tf.stack([stateless_seed(10 ** 6 + i, 0) for i in range(count)]))
        return self._held_out[count]

    def curves(self, horizon, count):
        """The ``(count, horizon + 1, B)`` loss curves of the held-out instances (numpy)."""
        held_out = self.held_out(count)
        key = (horizon, count)
        if key not in self._fns:
            runner = make_runner(self.opt, self.optimizee, horizon, self._scale,
                                 jit_compile=self.jit_compile, seeded_state=True)

            @tf.function
            def run_all(params, instances, seeds, seeds0):
                def body(i, ta):
                    take = lambda t: t[i]  # noqa: E731
                    curve = runner([take(p) for p in params],
                                   tf.nest.map_structure(take, instances), seeds[i], seeds0[i])
                    return i + 1, ta.write(i, curve)
                _, ta = tf.while_loop(lambda i, _: i < count, body,
                                      (tf.constant(0), tf.TensorArray(tf.float32, size=count)))
                return ta.stack()
            self._fns[key] = run_all
        return self._fns[key](*held_out).numpy()

    def score(self, horizon, instances=None):
        horizon = int(horizon)
        scores = []
        for curve in self.curves(horizon, int(instances or self.instances)):
            if self.selection == "last_truncation":
                tail = curve[-(min(self.truncation, horizon) + 1):]
                scores.append(float(np.mean(np.sum(tail, axis=0))))
            else:
                scores.append(float(np.mean(curve)))
        return np.mean(scores)
