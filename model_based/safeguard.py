"""Safeguarded unrolled models (Safe-L2O; paper Section 3.4.1, Heaton et al. AAAI 2023).

An unrolled model's layer ``t`` is the learned step ``y^k = layer_t(x^k)``; the safeguard
(:class:`open_l2o_tf.safeguard.Safeguard`) keeps it only where the energy of ``y^k`` (the
fixed-point residual ``||x - T(x)||`` of ISTA, the default, or the Lasso objective
``1/2||Ax - y||^2 + lam||x||_1``) is at most ``(1 - delta) mu_k``, and takes the ISTA/FISTA step
from ``x^k`` (or the FISTA shadow run's iterate, if lower) elsewhere, one decision per
problem instance; the curves are those of the reported iterate
(:meth:`~open_l2o_tf.safeguard.Safeguard.output`: with the default ``shadow="best"``, the
lower-energy one of the safeguarded iterate and FISTA's own at that iteration).

Past the trained depth ``T`` the model repeats its last layer (``layer_{T-1}``), so
:func:`run` gives a curve at any iteration count ``K`` and can be compared with FISTA at
equal iterations.  Three modes share the loop: ``on`` (safeguarded), ``off`` (the plain
model, its last layer repeated without a safeguard) and ``classic`` (the fallback alone:
ISTA or FISTA from ``x_0 = 0``).

The model's side state (LAMP's ``v``, LFISTA's ``x_{t-1}``, GLISTA's support) is the one
its layer returns from ``x^k``; every model here computes it from ``x^k`` and the previous
state only, so it is the same whichever step is then taken.  The first ``min(T, K)``
layers are unrolled in Python inside one ``tf.function`` (each has its own variables), the
repeated layer runs in a ``tf.while_loop``.
"""
import numpy as np
import tensorflow as tf

from open_l2o_tf import metrics
from open_l2o_tf import safeguard as sg
from open_l2o_tf.errors import UserError, require, require_positive_int


def _layer_index(model, t):
    return min(t, model.num_layers - 1)


def make_runner(model, num_iterations, rule, A, lam, *, energy="residual", fallback="fista",
                mode="on", with_truth=True, shadow="best"):
    """A ``tf.function`` ``(y, x_true) -> dict of (K + 1, B) tensors`` (``nmse_db`` per
    sample when ``with_truth``, ``objective``, ``energy``, ``accepted``; index ``k`` is the
    iterate ``x_k``, ``x_0 = 0``, whose ``accepted`` is True by convention)."""
    K = require_positive_int(int(num_iterations), "num_iterations")
    A = tf.constant(np.asarray(A, np.float32))
    step = 1.0 / float(np.linalg.norm(np.asarray(A, np.float64), 2) ** 2)
    T = model.num_layers
    if energy not in sg.ENERGIES:
        raise UserError(f"safeguard energy must be one of {', '.join(sg.ENERGIES)}, "
                        f"got {energy!r}")

    @tf.function(reduce_retracing=True)
    def run(y, x_true):
        op = sg.LassoOperator(A, y, lam, step=step)
        guard = sg.Safeguard(rule, op.energy(energy), sg.lasso_fallback(fallback, op), mode,
                             shadow=shadow)
        x = tf.zeros([tf.shape(y)[0], model.n], tf.float32)
        lstate = model.initial_state(y)
        state = guard.init(x)
        tas = {name: tf.TensorArray(dtype, size=K + 1) for name, dtype in
               (("nmse_db", tf.float32), ("objective", tf.float32), ("energy", tf.float32),
                ("accepted", tf.bool))}

        def write(tas, k, x, state, accepted):
            x, e_out = guard.output(x, state)
            out = dict(tas)
            if with_truth:
                out["nmse_db"] = tas["nmse_db"].write(k, metrics.nmse_db_per_sample(x, x_true))
            out["objective"] = tas["objective"].write(k, op.objective(x))
            out["energy"] = tas["energy"].write(k, e_out)
            out["accepted"] = tas["accepted"].write(k, accepted)
            return out

        def one(t, x, lstate, state):
            if mode == "classic":
                candidate = x
            else:
                candidate, lstate = model.layer(t, y, x, lstate)
            x, state, accepted = guard.step(x, candidate, state)
            return x, lstate, state, accepted

        tas = write(tas, 0, x, state, tf.ones([tf.shape(y)[0]], tf.bool))
        for t in range(min(T, K)):
            x, lstate, state, accepted = one(t, x, lstate, state)
            tas = write(tas, t + 1, x, state, accepted)
        if K > T:
            def body(k, x, lstate, state, tas):
                x, lstate, state, accepted = one(T - 1, x, lstate, state)
                return k + 1, x, lstate, state, write(tas, k + 1, x, state, accepted)

            _, x, lstate, state, tas = tf.while_loop(
                lambda k, *_: k < K, body, (tf.constant(T), x, lstate, state, tas))
        out = {name: ta.stack() for name, ta in tas.items()
               if with_truth or name != "nmse_db"}
        return out

    return run


def run(model, y, num_iterations, rule=None, *, A=None, lam=0.01, x_true=None,
        energy="residual", fallback="fista", mode="on", batch_size=1024, shadow="best"):
    """Runs ``model`` (or, with ``mode="classic"``, the fallback alone) for
    ``num_iterations`` iterations on the rows of ``y`` under the safeguard.

    Args:
      model: an :class:`model_based.base.UnrolledModel`.
      y: ``(N, m)`` measurements; ``x_true``: optional ``(N, n)`` ground truth (NMSE).
      rule: a :class:`open_l2o_tf.safeguard.SafeguardRule` (default: EMA, delta 0.01).
      A: the problem's dictionary ``(m, n)`` (default: the model's ``A``); ``lam``: the
        Lasso weight of the fallback operator and the energy.
      energy: ``residual`` (``||x - T(x)||``, ISTA's fixed-point residual) or ``objective``.
      fallback: ``ista`` or ``fista``.
      mode: ``on``, ``off`` or ``classic`` (see the module docstring).
      shadow: ``best`` (default), ``strict`` or ``off``: the fallback's own run carried
        alongside (:class:`open_l2o_tf.safeguard.Safeguard`; with ``best``/``strict`` the
        reported energy is never above the classic solver's at equal iterations).

    Returns:
      a dict of NumPy arrays ``(K + 1, N)``: ``nmse_db`` (with ``x_true``), ``objective``,
      ``energy``, ``accepted`` (bool); and ``rejected`` ``(K + 1,)``: the number of
      instances whose learned step was rejected at each iteration (0 at ``k = 0``).
    """
    rule = rule or sg.SafeguardRule()
    A = model.A_np if A is None else np.asarray(A, np.float32)
    y = np.asarray(y, np.float32)
    require(y.ndim == 2 and y.shape[1] == A.shape[0],
            f"y must have shape (N, {A.shape[0]}), got {y.shape}")
    require(A.shape[1] == model.n, f"A has {A.shape[1]} columns but the model recovers "
            f"n = {model.n}")
    with_truth = x_true is not None
    if with_truth:
        x_true = np.asarray(x_true, np.float32)
        require(x_true.shape == (y.shape[0], model.n),
                f"x_true must have shape ({y.shape[0]}, {model.n}), got {x_true.shape}")
    fn = make_runner(model, num_iterations, rule, A, lam, energy=energy, fallback=fallback,
                     mode=mode, with_truth=with_truth, shadow=shadow)
    parts = []
    for start in range(0, len(y), batch_size):
        xt = x_true[start:start + batch_size] if with_truth else \
            np.zeros((min(batch_size, len(y) - start), model.n), np.float32)
        parts.append({k: v.numpy() for k, v in fn(y[start:start + batch_size], xt).items()})
    out = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
    out["rejected"] = (~out["accepted"]).sum(axis=1)
    if mode == "classic":
        out["rejected"][:] = 0
    return out


def summary(result):
    """Per-iteration means ``(K + 1,)`` of a :func:`run` result: ``nmse_db`` (per-sample
    mean dB, as the benchmark), ``objective``, ``energy``, and the rejection counts."""
    with np.errstate(over="ignore", invalid="ignore"):   # a diverging plain model
        out = {k: result[k].mean(axis=1).tolist() for k in ("nmse_db", "objective", "energy")
               if k in result}
    out["rejected"] = [int(v) for v in result["rejected"]]
    return out


def iterations_to(curve, target):
    """The first iteration ``k`` with ``curve[k] <= target`` (None if never)."""
    hits = np.nonzero(np.asarray(curve) <= target)[0]
    return int(hits[0]) if len(hits) else None


def compare(model, y, num_iterations, rule=None, *, A=None, lam=0.01, x_true=None,
            energy="residual", fallback="fista", batch_size=1024, shadow="best"):
    """The three curves of a Safe-L2O comparison at equal iterations: ``learned`` (the
    plain model, last layer repeated), ``safeguarded`` and the classic ``fallback``
    (``fista`` or ``ista`` from zero).  Returns a JSON-ready dict: the options, ``curves``
    (per-iteration mean NMSE in dB with ``x_true``, else the mean objective),
    ``objective`` (mean objective per method), ``rejected`` (per-iteration counts of the
    safeguarded run) and ``instances``."""
    rule = rule or sg.SafeguardRule()
    metric = "nmse_db" if x_true is not None else "objective"
    kwargs = dict(A=A, lam=lam, x_true=x_true, energy=energy, fallback=fallback,
                  batch_size=batch_size, shadow=shadow)
    curves, objective, rejected = {}, {}, None
    for label, mode in (("learned", "off"), ("safeguarded", "on"), (fallback, "classic")):
        out = summary(run(model, y, num_iterations, rule, mode=mode, **kwargs))
        curves[label] = out[metric]
        objective[label] = out["objective"]
        if mode == "on":
            rejected = out["rejected"]
    return {**rule.config(), "shadow": sg.check_shadow(shadow), "energy": energy,
            "fallback": fallback, "lam": float(lam),
            "iterations": int(num_iterations), "trained_depth": int(model.num_layers),
            "metric": metric, "instances": int(len(y)), "curves": curves,
            "objective": objective, "rejected": rejected}


def iterations_table(result, targets):
    """``{target: {label: first iteration at or below target}}`` for a :func:`compare`
    result (None: not reached)."""
    return {float(t): {label: iterations_to(curve, t)
                       for label, curve in result["curves"].items()} for t in targets}
