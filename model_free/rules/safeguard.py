"""Safeguarded learned update rules (Safe-L2O; paper Section 3.4.1, Heaton et al. AAAI 2023).

The learned optimizer proposes ``y^k = x^k + update(grads(x^k))``; the safeguard
(:class:`open_l2o_tf.safeguard.Safeguard`) keeps it for the instances whose energy at
``y^k`` is at most ``(1 - delta) mu_k`` and takes the matching classic step elsewhere, one
decision per problem instance (an instance is one row of the batch-first parameters).

* Lasso (:class:`open_l2o_tf.optimizees.lasso.Lasso`, shared ``A``): fallback ``ista`` or
  ``fista`` (the proximal classic solvers of Fig. 6), energy ``residual`` (ISTA's
  fixed-point residual, default) or ``objective``.
* Any other deterministic optimizee (e.g. Rastrigin): the fallback is a classic
  ``GradientTransformation`` (GD, Adam, RMSProp) fed the per-instance gradients, and the
  energy is the per-instance objective minus ``energy_offset`` (Rastrigin: its lower bound
  ``alpha (n - ||c||_1)``, so the energy is non-negative and the relative margin means
  something).  Rastrigin is not convex: the safeguard then bounds the energy of the
  accepted steps, without the convergence guarantee of the convex case.

The learned optimizer's recurrent state advances on every step with the gradients at
``x^k`` (as does the classic fallback's), whichever step is taken.  Minibatch
(stochastic) optimizees are refused: the energy must be a deterministic function of ``x``.
"""
import tensorflow as tf

from open_l2o_tf import safeguard as sg
from open_l2o_tf.errors import UserError, require, require_positive_int


def _on_first(fallback):
    """A Lasso fallback on tensors ``(B, n)`` as one on the parameter list ``[x]``."""
    def step(params, state, grads=None):
        x, state = fallback.step(params[0], state, None)
        return [x], state
    return sg.Fallback(lambda params: fallback.init(params[0]), step,
                       lambda state, x_next, accepted: fallback.commit(state, x_next[0],
                                                                       accepted))


def lasso_safeguard(optimizee, instance, rule, *, energy="residual", fallback="fista",
                    mode="on", shadow="best"):
    """The safeguard of a learned optimizer on Lasso instances with the shared ``A``."""
    require(getattr(optimizee, "A", None) is not None,
            "the Lasso safeguard needs the data set's shared A (Lasso.from_data)")
    op = sg.LassoOperator(optimizee.A, instance["y"], optimizee.lam)
    energy_fn = op.energy(energy)
    return sg.Safeguard(rule, lambda params: energy_fn(params[0]),
                        _on_first(sg.lasso_fallback(fallback, op)), mode, shadow=shadow)


def objective_safeguard(optimizee, instance, rule, transform, *, energy_offset=None,
                        mode="on", shadow="best"):
    """The safeguard with the per-instance objective (minus ``energy_offset``) as the
    energy and the classic ``transform`` as the fallback."""
    offset = 0.0 if energy_offset is None else tf.convert_to_tensor(energy_offset,
                                                                     tf.float32)

    def energy_fn(params):
        return optimizee.instance_losses(params, instance) - offset

    def loss_fn(params):
        return optimizee.instance_losses(params, instance)

    return sg.Safeguard(rule, energy_fn, sg.transform_fallback(transform, loss_fn), mode,
                        shadow=shadow)


def evaluate(optimizer, optimizee, num_steps, instance, params, guard, grad_scale=None,
             jit_compile=False):
    """Runs the learned optimizer for ``num_steps`` under ``guard``.

    The learned optimizer sees the gradient of the mean loss over the instances
    (``grad_scale``, default ``1/B``, as :func:`model_free.meta.meta_trainer.evaluate`); the
    fallback sees each instance's own gradient.

    Returns a dict of NumPy arrays ``(num_steps + 1, B)``: ``loss`` (per-instance
    objective), ``energy``, ``accepted`` (True at ``k = 0`` by convention), and
    ``rejected`` ``(num_steps + 1,)``: instances whose learned step was rejected per step.
    """
    require_positive_int(int(num_steps), "num_steps")
    if getattr(optimizee, "stochastic", False):
        raise UserError("the safeguard needs a deterministic objective; "
                        f"{getattr(optimizee, 'name', 'this optimizee')} is stochastic")
    params = [tf.convert_to_tensor(p, tf.float32) for p in params]
    batch = int(optimizee.instance_losses(params, instance).shape[0])
    scale = (1.0 / batch) if grad_scale is None else float(grad_scale)

    @tf.function(jit_compile=jit_compile)
    def run(params):
        lstate = optimizer.initial_state(params) if guard.mode != "classic" else ()
        state = guard.init(params)
        tas = {name: tf.TensorArray(dtype, size=num_steps + 1) for name, dtype in
               (("loss", tf.float32), ("energy", tf.float32), ("accepted", tf.bool))}

        def write(tas, k, x, state, accepted):
            x, e_out = guard.output(x, state)
            return {"loss": tas["loss"].write(k, optimizee.instance_losses(x, instance)),
                    "energy": tas["energy"].write(k, e_out),
                    "accepted": tas["accepted"].write(k, accepted)}

        tas = write(tas, 0, params, state, tf.ones([batch], tf.bool))

        def body(k, x, lstate, state, tas):
            with tf.GradientTape() as tape:
                tape.watch(x)
                total = tf.reduce_sum(optimizee.instance_losses(x, instance))
            grads = tape.gradient(total, x)
            if guard.mode == "classic":
                candidate = x
            else:
                steps, lstate = optimizer.update([g * scale for g in grads], lstate, x)
                candidate = [p + d for p, d in zip(x, steps)]
            x, state, accepted = guard.step(x, candidate, state, grads)
            return k + 1, x, lstate, state, write(tas, k + 1, x, state, accepted)

        _, _, _, _, tas = tf.while_loop(lambda k, *_: k < num_steps, body,
                                        (tf.constant(0), params, lstate, state, tas))
        return {name: ta.stack() for name, ta in tas.items()}

    out = {k: v.numpy() for k, v in run(params).items()}
    out["rejected"] = (~out["accepted"]).sum(axis=1)
    if guard.mode == "classic":
        out["rejected"][:] = 0
    return out


def compare(optimizer, optimizee, num_steps, instance, params, make_guard, *,
            classic_label, grad_scale=None):
    """The three curves at equal iterations: ``learned`` (plain), ``safeguarded`` and the
    classic fallback alone (``classic_label``).  ``make_guard(mode)`` builds the
    :class:`open_l2o_tf.safeguard.Safeguard` for ``mode`` in ``off``/``on``/``classic``.
    Returns a JSON-ready dict with ``curves`` (per-iteration mean loss), ``rejected``
    (per-iteration counts of the safeguarded run), ``instances`` and the rule's options."""
    curves, rejected, guard = {}, None, None
    for label, mode in (("learned", "off"), ("safeguarded", "on"), (classic_label, "classic")):
        guard = make_guard(mode)
        out = evaluate(optimizer, optimizee, num_steps, instance, params, guard,
                       grad_scale=grad_scale)
        curves[label] = out["loss"].mean(axis=1).tolist()
        if mode == "on":
            rejected = [int(v) for v in out["rejected"]]
    return {**guard.rule.config(), "fallback": classic_label, "iterations": int(num_steps),
            "metric": "loss", "instances": int(out["loss"].shape[1]), "curves": curves,
            "rejected": rejected}
