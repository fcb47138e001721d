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


def alternating_gda(problem, instance, params, num_half_steps, lr=0.01, method="gda"):
    """Returns the per-instance saddle distance after every half-step,
    ``(num_half_steps + 1, B)``, as a numpy array."""
    require_positive_int(num_half_steps, "num_half_steps")
    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}")
    make = first_order.gd if method == "gda" else first_order.adam
    t_min, t_max = make(lr), make(lr)

    @tf.function
    def run(u, v):
        s_min, s_max = t_min.init([u]), t_max.init([v])
        ta = tf.TensorArray(tf.float32, size=num_half_steps + 1)
        ta = ta.write(0, problem.saddle_distance([u, v], instance))

        def grads(u, v):
            with tf.GradientTape() as tape:
                tape.watch([u, v])
                f = tf.reduce_sum(problem.instance_losses([u, v], instance))
            return tape.gradient(f, [u, v])

        def body(i, u, v, s_min, s_max, ta):
            g_u, g_v = grads(u, v)

            def move_min():
                (d,), s = t_min.update([g_u], s_min, [u])
                return u + d, v, s, s_max

            def move_max():
                (d,), s = t_max.update([-g_v], s_max, [v])
                return u, v + d, s_min, s

            u, v, s_min, s_max = tf.cond(tf.equal(i % 2, 0), move_min, move_max)
            return (i + 1, u, v, s_min, s_max,
                    ta.write(i + 1, problem.saddle_distance([u, v], instance)))

        out = tf.while_loop(lambda i, *_: i < num_half_steps, body,
                            (tf.constant(0), u, v, s_min, s_max, ta))
        return out[-1].stack()

    return run(params[0], params[1]).numpy()
