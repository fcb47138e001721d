"""Alternating gradient descent-ascent for ``min_u max_v f(u, v)`` (the classic baselines of
Twin-L2O, spec model_free §7), with any gradient transformation per player:

    u <- u + T_min(grad_u f(u, v))          (descent: T_min = gd(lr), adam(lr), ...)
    v <- v + T_max(-grad_v f(u, v))         (ascent, at the new u)

Half-steps alternate as in Twin-L2O, so ``num_half_steps`` counts both players' moves.
"""
import tensorflow as tf

from open_l2o_tf.classic import first_order
from open_l2o_tf.errors import UserError, require_positive_int

METHODS = ("gda", "adam_gda")


def alternating_runner(problem, num_half_steps, half_step):
    """The alternating loop shared by GDA and Twin-L2O, compiled: ``run(instance, u, v,
    state)`` plays ``num_half_steps`` half-steps, half-step ``i`` calling ``half_step(
    instance, i, u, v, state, minimise=(i even))`` -> ``(u, v, state)``, and returns the
    per-instance saddle distance after every half-step, ``(num_half_steps + 1, B)``.
    Traced once for arguments of the same shapes (Twin-L2O's held-out play reuses it)."""
    require_positive_int(num_half_steps, "num_half_steps")

    @tf.function
    def run(instance, u, v, state):
        ta = tf.TensorArray(tf.float32, size=num_half_steps + 1)
        ta = ta.write(0, problem.saddle_distance([u, v], instance))

        def body(i, u, v, state, ta):
            u, v, state = tf.cond(tf.equal(i % 2, 0),
                                  lambda: half_step(instance, i, u, v, state, True),
                                  lambda: half_step(instance, i, u, v, state, False))
            return i + 1, u, v, state, ta.write(i + 1, problem.saddle_distance([u, v],
                                                                              instance))

        out = tf.while_loop(lambda i, *_: i < num_half_steps, body,
                            (tf.constant(0), u, v, state, ta))
        return out[-1].stack()

    return run


def play_alternating(problem, instance, params, num_half_steps, half_step, state):
    """:func:`alternating_runner` run once with ``half_step(i, u, v, state, minimise)``
    (``instance`` fixed); a numpy array ``(num_half_steps + 1, B)``."""
    run = alternating_runner(problem, num_half_steps,
                             lambda _, *args: half_step(*args))
    return run(instance, params[0], params[1], state).numpy()


def alternating_gda(problem, instance, params, num_half_steps, lr=0.01, method="gda"):
    """Returns the per-instance saddle distance after every half-step,
    ``(num_half_steps + 1, B)``, as a numpy array."""
    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}")
    make = first_order.gd if method == "gda" else first_order.adam
    t_min, t_max = make(lr), make(lr)

    def half_step(i, u, v, state, minimise):
        del i
        g_u, g_v = problem.gradients([u, v], instance)
        s_min, s_max = state
        if minimise:
            (d,), s_min = t_min.update([g_u], s_min, [u])
            return u + d, v, (s_min, s_max)
        (d,), s_max = t_max.update([-g_v], s_max, [v])
        return u, v + d, (s_min, s_max)

    state = (t_min.init([params[0]]), t_max.init([params[1]]))
    return play_alternating(problem, instance, params, num_half_steps, half_step, state)
