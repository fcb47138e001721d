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

from model_free.base import flatten
from open_l2o_tf.classic import first_order

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

    def use_imitation(self, episode, stage):
        del episode
        p = self.probability if self.probability is not None else imitation_probability(
            stage, self.kind)
        return bool(self.rng.random() < p)

    def train_episode(self, opt, il_opt, optimizee, instance, params, horizon, truncation,
                      seed):
        grads, moves = adam_trajectory(optimizee, instance, params, horizon, seed, self.lr)
        n = float(sum(int(tf.size(p)) for p in params))
        state = opt.initial_state(params)
        total = 0.0
        for start in range(0, horizon, truncation):
            with tf.GradientTape() as tape:
                loss = tf.constant(0.0)
                for t in range(start, min(start + truncation, horizon)):
                    step, state = opt.network(grads[t], state)
                    loss += 0.5 * tf.reduce_sum(tf.square(moves[t] - step)) / n
            variables = opt.trainable_variables
            meta_grads = tape.gradient(loss, variables)
            if np.isfinite(float(loss)):
                il_opt.apply_gradients(zip(meta_grads, variables))
            state = tf.nest.map_structure(tf.stop_gradient, state)
            total += float(loss)
        return total
