"""Imitation of Adam (L2O-enhanced, Chen et al. 2020; spec model_free §4.2).

An episode is an imitation episode with probability ``p_stage``: DM
``(0.0, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3)`` per curriculum stage, RNNprop ``(0.3, 0.3,
0.3)`` (last value reused), 0.3 without curriculum.  The teacher, Adam(lr 0.01, beta1 0.9,
beta2 0.999, eps 1e-8), runs from the episode's start; at each step its gradient ``g_t`` and
displacement ``y_t = x_{t+1} - x_t`` are recorded.  With teacher forcing the learner gets
``g_t`` and produces ``d_t``; per truncation of 20 steps the loss is

    L_IL = sum_t 1/2 sum_coords (y_t - d_t)^2 / N_params

minimised by its own Adam(1e-3).  The learner's state starts from zeros (the original's IL
state quirk is not reproduced) and carries over between truncations.
"""
import numpy as np
import tensorflow as tf

from model_free.rules.base import flatten
from open_l2o_tf import distribute
from open_l2o_tf.classic import first_order
from open_l2o_tf.errors import UserError
from open_l2o_tf.trainer_support import apply_if_finite, pairs

DM_RATIOS = (0.0, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3)
RNNPROP_RATIOS = (0.3, 0.3, 0.3)


def imitation_probability(stage, kind="dm"):
    """Per-stage probability of an imitation episode (``stage`` None: no curriculum)."""
    if stage is None:
        return 0.3
    ratios = DM_RATIOS if kind == "dm" else RNNPROP_RATIOS
    return ratios[min(stage, len(ratios) - 1)]


def adam_trajectory(optimizee, instance, params, num_steps, seed, lr=0.01, beta1=0.9,
                    beta2=0.999, eps=1e-8):
    """Teacher gradients and displacements: two lists of ``num_steps`` flat ``(N, 1)``.

    The teacher is :func:`open_l2o_tf.classic.first_order.adam` (textbook moment form,
    bias correction in float64, as this teacher always computed it)."""
    teacher = first_order.adam(lr, beta1, beta2, eps, form="textbook", bias_dtype=tf.float64)
    x = list(params)
    state = teacher.init(x)
    grads_out, moves = [], []
    for t in range(1, num_steps + 1):
        batch = optimizee.sample_batch(tf.stack([seed[0], seed[1] + t]))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = optimizee.loss(x, instance, batch)
        g = tape.gradient(loss, x)
        step, state = teacher.update(g, state)
        grads_out.append(flatten(g))
        moves.append(flatten(step))
        x = [p + s for p, s in zip(x, step)]
    return grads_out, moves


class Imitation:
    """Decides which episodes imitate and trains them."""

    def __init__(self, kind="dm", probability=None, seed=0, lr=0.01):
        self.kind, self.probability, self.lr = kind, probability, lr
        self.rng = np.random.default_rng(seed)
        self._steps = {}

    def use_imitation(self, episode, stage):
        del episode
        p = self.probability if self.probability is not None else imitation_probability(
            stage, self.kind)
        return bool(self.rng.random() < p)

    def train_episode(self, opt, il_opt, optimizee, instance, params, horizon, truncation,
                      seed, strategy=None, on_skip=None):
        """One imitation episode; returns the sum of its truncations' losses.  A truncation
        whose loss or gradient is not finite makes no update and is reported to
        ``on_skip(truncation)`` (1-based; the episode goes on).

        Under a ``tf.distribute`` strategy every process computes the teacher's trajectory
        (cheap, deterministic) and the learner's ``N`` coordinates are split over the
        replicas in contiguous blocks of ``N / replicas`` (the learner is coordinate-wise,
        so any split of the coordinates gives the same sum; the state must hold one row per
        coordinate); each replica's loss is its block's part of ``L_IL`` (still divided
        by the whole ``N``), the gradients are all-reduced
        (:func:`open_l2o_tf.distribute.synchronous_step`) and ``il_opt`` steps once per
        process."""
        grads, moves = adam_trajectory(optimizee, instance, params, horizon, seed, self.lr)
        n = sum(int(tf.size(p)) for p in params)
        grads, moves = tf.concat(grads, axis=1), tf.concat(moves, axis=1)   # (N, horizon)
        state = opt.initial_state(params)
        step = self._step(opt, il_opt, strategy)
        if strategy is not None:
            per = distribute.per_replica_size(n, strategy, "number of coordinates of an "
                                              "imitation episode")
            for leaf in tf.nest.flatten(state):
                if leaf.shape.rank and int(leaf.shape[0]) != n:
                    raise UserError(
                        f"{type(opt).__name__}'s state tensor of shape {tuple(leaf.shape)} "
                        f"has not one row per coordinate ({n}): its imitation episodes "
                        "cannot be split over replicas")
            key = ("split", id(strategy), per)
            if key not in self._steps:
                rows = lambda t: (distribute.replica_rows(t, per) if t.shape.rank  # noqa: E731
                                  else tf.identity(t))
                self._steps[key] = distribute.splitter(
                    strategy, lambda *a: tf.nest.map_structure(rows, a))
            grads, moves, state = self._steps[key](grads, moves, state)
        total = 0.0
        for k, start in enumerate(range(0, horizon, truncation)):
            length = min(start + truncation, horizon) - start
            state, loss, finite = step(grads, moves, state, tf.constant(start), length,
                                       tf.constant(float(n)))
            if on_skip is not None and not bool(finite):
                on_skip(k + 1)
            total += float(loss)
        return total

    def _step(self, opt, il_opt, strategy):
        """The compiled truncation ``(grads, moves, state, start, length, n) -> (state,
        loss, finite)`` (one per learner, Keras optimizer and strategy)."""
        key = (id(opt), id(il_opt), id(strategy))
        if key in self._steps:
            return self._steps[key]
        variables = opt.trainable_variables

        def part(grads, moves, state, start, length, n):
            with tf.GradientTape() as tape:
                loss = tf.constant(0.0)
                for t in range(length):
                    g = tf.slice(grads, [0, start + t], [-1, 1])
                    y = tf.slice(moves, [0, start + t], [-1, 1])
                    step, state = opt.network(g, state)
                    loss += 0.5 * tf.reduce_sum(tf.square(y - step)) / n
            meta_grads = tape.gradient(loss, variables)
            return (tf.nest.map_structure(tf.stop_gradient, state),
                    distribute.replica_sum(loss), meta_grads)

        def apply(loss, meta_grads):
            return apply_if_finite(
                lambda grads: il_opt.apply_gradients(pairs(grads, variables)), meta_grads, loss)

        self._steps[key] = distribute.synchronous_step(strategy, part, apply, variables)
        return self._steps[key]
