"""Model selection of the meta-trainer: the score of the learned optimizer on held-out
problems (lower is better).

``"original"``, the original's rule (the paper preset's default): at every evaluation,
``eval_instances`` (20) problems freshly drawn (new constants and starts) are optimised for
the evaluation horizon ``H`` and the score is the loss at its end, ``f(x_H)``, averaged over
the problems.  In the original, ``train_dm.py`` / ``train_rnnprop.py`` sum
``util.run_epoch``'s cost over ``evaluation_epochs`` = 20 epochs, each after ``reset``
(Model_Free_L2O/L2O-DM and L2O-RNNProp/train_dm.py:177-181, train_rnnprop.py:184-190;
``reset`` re-initialises the optimizee's variables and constants, meta_dm_train.py:502-506),
and that cost is ``cost_op``, the ``fx`` of ``MetaStep(step, *info[1:])``
(meta_dm_train.py:557), i.e. ``fx_final`` = ``f(x_H)`` (meta_dm_train.py:414-416, 526).
Here the problems of an evaluation are functions of the seed and of the episode at which it
runs, so every evaluation scores new problems and a resumed run scores the same ones.

``"last_truncation"``: on ``eval_instances`` fixed held-out problems (the same at every
evaluation), the sum of the losses ``f(x_{H-T}) .. f(x_H)`` of the last truncation of the
horizon, averaged over the problems (this toolbox's rule before ``"original"``; about
``T + 1`` times the original's score).  ``"horizon_mean"``: the mean loss over the whole
horizon on fixed problems (favours early descent; the quick preset's).  Fixed problems,
starts and initial states are functions of the seed, so every evaluation scores the same
problems.

The problems and starts of an evaluation are all run by ONE compiled call per horizon (a
``tf.while_loop`` over the problems around :func:`model_free.meta.evaluation.make_runner`'s loop
over the steps), which returns every loss curve at once: no Python loop, no device-to-host
copy per problem.  The scores are then taken of the curves.
"""
import numpy as np
import tensorflow as tf

from model_free.meta.evaluation import batch_count, make_runner, stateless_seed
from model_free.meta.recipe import compiles


class ModelSelection:
    """``score(horizon, instances, draw)`` on ``recipe.eval_instances`` held-out problems
    (one compiled call per horizon and number of problems; ``draw``: the evaluation's
    episode, which picks the fresh problems of ``"original"``).  The per-instance runner is
    XLA-compiled only where :func:`model_free.meta.recipe.compiles` says (L2O-Scale on the MNIST
    MLP: 2.1x faster); otherwise not (measured slower for the LSTM optimizers, CPU 25x50
    Lasso 50 s vs 15 s)."""

    def __init__(self, opt, optimizee, recipe):
        self.opt, self.optimizee = opt, optimizee
        self.selection, self.truncation = recipe.selection, int(recipe.truncation)
        self.instances, self.seed = int(recipe.eval_instances), int(recipe.seed)
        self.jit_compile = compiles(recipe, optimizee)
        self._held_out, self._scale, self._fns = {}, None, {}

    def held_out(self, count, draw=None):
        """The ``count`` held-out instances and starts, stacked instance-first: ``(params,
        instance, seeds, seeds0)``; fixed (``draw`` None: drawn once per count, functions of
        the seed) or fresh ones of evaluation ``draw`` (functions of the seed and ``draw``)."""
        if draw is not None:
            return self._draw(count, lambda i: (stateless_seed(2 * 10 ** 6 + self.seed,
                                                               int(draw), i),
                                                2 * 10 ** 6 + 1000 * int(draw) + i))
        if count not in self._held_out:
            self._held_out[count] = self._draw(
                count, lambda i: (stateless_seed(10 ** 6 + self.seed, i), 10 ** 6 + i))
        return self._held_out[count]

    def _draw(self, count, seeds_of):
        params, instances, runs = [], [], []
        for i in range(count):
            seed, run = seeds_of(i)
            instance = self.optimizee.sample_instance(seed)
            instances.append(instance)
            params.append(list(self.optimizee.init_params(seed + [0, 1], instance)))
            runs.append(run)
            if self._scale is None:
                self._scale = 1.0 / batch_count(self.optimizee, params[0], instance,
                                                10 ** 6 + i)
        stack = lambda *parts: tf.stack(parts)  # noqa: E731
        return (tf.nest.map_structure(stack, *params), tf.nest.map_structure(stack, *instances),
                tf.constant([r & 0x7FFFFFFF for r in runs], tf.int32),
                tf.stack([stateless_seed(r, 0) for r in runs]))

    def curves(self, horizon, count, draw=None):
        """The ``(count, horizon + 1, B)`` loss curves of the held-out instances (numpy;
        ``draw``: :meth:`held_out`'s)."""
        held_out = self.held_out(count, draw)
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

    def score(self, horizon, instances=None, draw=0):
        """The score at ``horizon`` on ``instances`` problems (default the recipe's); with
        ``"original"`` the problems are evaluation ``draw``'s fresh ones."""
        horizon = int(horizon)
        count = int(instances or self.instances)
        if self.selection == "original":
            curves = self.curves(horizon, count, draw=int(draw))
            return float(np.mean(curves[:, -1, :]))      # f(x_H), mean over problems
        scores = []
        for curve in self.curves(horizon, count):
            if self.selection == "last_truncation":
                tail = curve[-(min(self.truncation, horizon) + 1):]
                scores.append(float(np.mean(np.sum(tail, axis=0))))
            else:
                scores.append(float(np.mean(curve)))
        return np.mean(scores)
