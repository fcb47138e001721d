"""Safeguarded L2O (Safe-L2O): take the learned step only when it lowers an energy enough.

The paper's Section 3.4.1 (Chen et al., JMLR 2022) and its reference, Heaton, Chen, Wang &
Yin, "Safeguarded learned convex optimization" (AAAI 2023; arXiv:2003.01880, Algorithm 1),
wrap a learned update ``y^k = L2O(x^k)`` around a classic operator ``T`` (ISTA, FISTA, a
gradient method) with a per-instance acceptance test on an *energy* ``E`` (the fixed-point
residual ``||x - T(x)||`` of the classic operator, or the objective):

    accept   iff  E(y^k) <= (1 - delta) mu_k                       (the safeguard, margin delta)
    x^{k+1} = y^k if accepted, else the classic step T(x^k)
    mu_1 = E(x^1);  mu_{k+1} = update(mu_k, E(y^k)) if accepted, else mu_k

with one of the reference sequences of Heaton et al.'s Table 1 (:data:`RULES`):

* ``geometric`` (GS):  ``mu_{k+1} = (1 - param) mu_k``          (param default: delta)
* ``recent``    (RT):  ``mu_{k+1} = E(y^k)``
* ``recent_max`` (RM): ``mu_{k+1} = max`` of the last ``param`` accepted energies (default 3,
  the window starts filled with ``mu_1``)
* ``arithmetic`` (AA): ``mu_{k+1}`` = the mean of ``mu_1`` and every accepted energy so far
* ``ema``       (EMA): ``mu_{k+1} = param E(y^k) + (1 - param) mu_k``  (param default 0.3;
  the paper finds EMA the most practical, it adapts to the learned rate of decrease)

Each rule changes ``mu`` only on accepted steps (``track="accepted"``, the paper's; with
``track="all"``, ours, a rejected step also lowers ``mu`` to the classic step's energy when
that is lower, see :meth:`SafeguardRule.follow`; the default, because out of distribution
the paper's stale ``mu`` let poor learned steps undo the classic progress: 64x128
LISTA-CPSS on another Gaussian A, NMSE after 200 iterations +12.7 dB with ``accepted``,
-35.7 dB with ``all``, FISTA -35.7 dB; see docs/safeguard.md), so every accepted step satisfies
``E(x^{k+1}) <= (1 - delta) mu_k`` and ``mu`` never grows above ``mu_1`` (GS, RT, RM and EMA
are non-increasing along accepted steps; AA is a mean of values below ``mu_1``).  With an
averaged operator (ISTA with step ``1/L``) and the residual energy, a rejected step does
not increase the energy either: ``||T x - T T x|| <= ||x - T x||``; the same holds for the
Lasso objective under ISTA.  FISTA is not monotone, so a FISTA fallback gives the bound only
on accepted steps; here FISTA's momentum restarts (``t = 1``, ``x_prev = x``) after every
accepted learned step, so its rejected steps are FISTA from the last accepted point.

The rule bounds the energy by ``mu``, not by the classic solver's own progress: out of
distribution a plausible learned step (it passes the test) can leave the run behind the
classic solver at equal iterations for good.  :class:`Safeguard` therefore carries, by
default (``shadow="best"``), the classic solver's own run ``z_k`` alongside (the *shadow
sequence*): rejected steps go to the better of the classic step and ``z_{k+1}``, and the
reported iterate is the lower-energy one of ``x_k`` and ``z_k``, so its energy is never
above the classic solver's at equal iterations, per instance, by construction; with the
objective as the energy and FISTA, that is FISTA's ``O(1/k^2)`` rate for every safeguarded
run.  See :class:`Safeguard` for the rule, its guarantee and the ``strict`` and
``off`` variants.

Everything is batched: ``x`` is batch-first (or a list of batch-first tensors), every
instance gets its own ``mu`` and its own accept/reject decision (``tf.where`` on a ``(B,)``
mask), and all of it runs inside ``tf.function``.  A candidate with a NaN/Inf energy is
rejected.  This module holds the rule, the Lasso operator (energies and the ISTA/FISTA
fallbacks) and a fallback built from any classic ``GradientTransformation``; the loops live
in :mod:`model_based.safeguard` (unrolled models, run past their trained depth) and
:mod:`model_free.rules.safeguard` (learned update rules).
"""
import collections

import numpy as np
import tensorflow as tf

from open_l2o_tf.errors import UserError, require
from open_l2o_tf.safeguard_options import (ENERGIES, RULES, SHADOWS, TRACKS,  # noqa: F401  pylint: disable=unused-import
                                            check_rule_options, check_shadow)


class SafeguardRule:
    """The acceptance test and the reference sequence ``mu_k`` (Heaton et al., Alg. 1 and
    Table 1; see the module docstring).

    Args:
      kind: one of :data:`RULES`.
      delta: the margin, ``0 <= delta < 1``: accept iff ``E(y) <= (1 - delta) mu``.
      param: EMA weight ``theta`` in (0, 1], GS factor in (0, 1) (default ``delta``), or the
        RM window (a positive integer); ignored by ``recent`` and ``arithmetic``.
      track: ``all`` (default, ours: after a rejected step ``mu_{k+1} = min(mu_k,
        E(x^{k+1}))``, so the reference also follows the classic steps' progress; see
        :meth:`follow`) or ``accepted`` (Heaton et al.'s Algorithm 1: ``mu`` changes only on
        accepted learned steps).  ``all`` only lowers ``mu``, so every accepted step still
        satisfies the paper's test and ``mu_k -> 0`` along infinitely many accepted steps
        (EMA: ``mu`` drops by at least ``theta delta`` per accepted step): the convergence
        argument is unchanged.
    """

    def __init__(self, kind="ema", delta=0.01, param=None, track="all"):
        self.kind, self.delta, self.param, self.track = check_rule_options(kind, delta, param,
                                                                           track)

    def config(self):
        return {"rule": self.kind, "delta": self.delta, "param": self.param,
                "track": self.track}

    def init(self, energy0):
        """State for the energies ``energy0`` (B,) of the starting points (``mu_1``)."""
        energy0 = tf.convert_to_tensor(energy0, tf.float32)
        state = {"mu": energy0, "count": tf.ones_like(energy0)}
        if self.kind == "recent_max":
            state["window"] = tf.tile(energy0[:, None], [1, self.param])
        return state

    def bound(self, state):
        """``(1 - delta) mu_k`` (B,): the largest accepted energy."""
        return (1.0 - self.delta) * state["mu"]

    def accept(self, energy, state):
        """The per-instance decision (B,) bool; non-finite energies are rejected."""
        return tf.logical_and(tf.math.is_finite(energy), energy <= self.bound(state))

    def update(self, state, energy, accepted):
        """``mu_{k+1}``: changed only where ``accepted``."""
        mu = state["mu"]
        safe_energy = tf.where(accepted, energy, mu)   # keeps NaN out of the arithmetic
        count = state["count"] + tf.cast(accepted, tf.float32)
        new = dict(state, count=count)
        if self.kind == "ema":
            mu_new = self.param * safe_energy + (1.0 - self.param) * mu
        elif self.kind == "geometric":
            mu_new = (1.0 - self.param) * mu
        elif self.kind == "recent":
            mu_new = safe_energy
        elif self.kind == "arithmetic":
            mu_new = mu + (safe_energy - mu) / count
        else:
            window = tf.concat([state["window"][:, 1:], safe_energy[:, None]], axis=1)
            window = tf.where(accepted[:, None], window, state["window"])
            new["window"] = window
            mu_new = tf.reduce_max(window, axis=1)
        new["mu"] = tf.where(accepted, mu_new, mu)
        return new

    def follow(self, state, energy, accepted):
        """With ``track="all"``: where the step was rejected, ``mu`` (and the RM window)
        drop to the energy ``E(x^{k+1})`` of the classic step if it is lower.  Without it,
        ``mu`` can stay far above the energy the classic steps have reached, and a poor
        learned step is then accepted because it beats that stale reference (EMA with
        ``delta = 0.01`` lowers ``mu`` by only ``theta delta = 0.3 %`` per accepted step)."""
        if self.track != "all":
            return state
        rejected = tf.logical_and(tf.logical_not(accepted), tf.math.is_finite(energy))
        new = dict(state, mu=tf.where(rejected, tf.minimum(state["mu"], energy), state["mu"]))
        if "window" in state:
            new["window"] = tf.where(rejected[:, None],
                                     tf.minimum(state["window"], energy[:, None]),
                                     state["window"])
        return new


def select(mask, new, old):
    """Per-instance ``tf.where`` over (nested) batch-first tensors: ``new`` where ``mask``."""
    def pick(a, b):
        m = tf.reshape(mask, [-1] + [1] * (a.shape.rank - 1))
        return tf.where(m, a, b)
    return tf.nest.map_structure(pick, new, old)


# -- the Lasso operator: energies and the ISTA / FISTA fallbacks ------------------------

class LassoOperator:
    """``f(x) = 1/2 ||A x - y||^2 + lam ||x||_1`` for a batch, and its ISTA map
    ``T(x) = eta_{lam s}(x - s A^T (A x - y))`` with step ``s = 1 / ||A||_2^2``.

    ``A`` is ``(m, n)`` (shared) or ``(B, m, n)``; ``y`` is ``(B, m)``.  Tensors ``x`` are
    ``(B, n)``.
    """

    def __init__(self, A, y, lam, step=None):
        A = np.asarray(A, np.float32) if not tf.is_tensor(A) else A
        self.A = tf.convert_to_tensor(A, tf.float32)
        self.y = tf.convert_to_tensor(y, tf.float32)
        require(self.A.shape.rank in (2, 3), f"A must be (m, n) or (B, m, n), got "
                f"{self.A.shape}")
        require(self.y.shape.rank == 2 and self.y.shape[-1] == self.A.shape[-2],
                f"y must be (B, {self.A.shape[-2]}), got {self.y.shape}")
        require(float(lam) >= 0.0, f"lam must be >= 0, got {lam}")
        self.lam = float(lam)
        if step is None:
            s = tf.linalg.svd(self.A, compute_uv=False)[..., 0]
            step = 1.0 / tf.square(s)
            step = step[:, None] if self.A.shape.rank == 3 else step
        self.step = tf.cast(step, tf.float32)

    def matvec(self, x):
        if self.A.shape.rank == 3:
            return tf.einsum("bmn,bn->bm", self.A, x)
        return tf.matmul(x, self.A, transpose_b=True)

    def rmatvec(self, r):
        if self.A.shape.rank == 3:
            return tf.einsum("bmn,bm->bn", self.A, r)
        return tf.matmul(r, self.A)

    def T(self, x):
        """One ISTA step from ``x``."""
        z = x - self.step * self.rmatvec(self.matvec(x) - self.y)
        t = self.lam * self.step
        return tf.sign(z) * tf.maximum(tf.abs(z) - t, 0.0)

    def objective(self, x):
        r = self.matvec(x) - self.y
        return 0.5 * tf.reduce_sum(tf.square(r), -1) + self.lam * tf.reduce_sum(tf.abs(x), -1)

    def residual(self, x):
        """The fixed-point residual ``||x - T(x)||_2`` (B,)."""
        return tf.norm(x - self.T(x), axis=-1)

    def energy(self, kind):
        """The energy function ``x -> (B,)``: ``residual`` or ``objective``."""
        if kind == "residual":
            return self.residual
        if kind == "objective":
            return self.objective
        raise UserError(f"safeguard energy must be one of {', '.join(ENERGIES)}, got {kind!r}")


Fallback = collections.namedtuple("Fallback", ["init", "step", "commit"])
Fallback.__doc__ = """The classic step taken where the learned step is rejected.

Attributes:
  init: ``init(x0) -> state``.
  step: ``step(x, state, grads) -> (x_classic, state)``: the classic step from ``x``
    (``grads``: the gradients at ``x`` when the caller has them, else None).
  commit: ``commit(state, x_next, accepted) -> state``, called with the chosen iterate and
    the (B,) decision after every step.
"""


def ista_fallback(op):
    """ISTA: ``x_classic = T(x)`` (stateless)."""
    return Fallback(lambda x0: (), lambda x, state, grads=None: (op.T(x), state),
                    lambda state, x_next, accepted: state)


def fista_fallback(op):
    """FISTA (Beck & Teboulle 2009) from the current point: state ``(x_prev, t)``; the
    momentum restarts (``x_prev = x^{k+1}``, ``t = 1``) wherever a learned step was
    accepted."""
    def init(x0):
        return (x0, tf.ones([tf.shape(x0)[0], 1], tf.float32))

    def step(x, state, grads=None):
        del grads
        x_prev, t = state
        t_next = 0.5 * (1.0 + tf.sqrt(1.0 + 4.0 * t * t))
        z = x + ((t - 1.0) / t_next) * (x - x_prev)
        return op.T(z), (x, t_next)

    def commit(state, x_next, accepted):
        return select(accepted, (x_next, tf.ones_like(state[1])), state)

    return Fallback(init, step, commit)


def lasso_fallback(name, op):
    """``ista`` or ``fista`` on the Lasso operator ``op``."""
    if name == "ista":
        return ista_fallback(op)
    if name == "fista":
        return fista_fallback(op)
    raise UserError(f"the Lasso safeguard fallback must be ista or fista, got {name!r}")


def transform_fallback(transform, loss_fn=None):
    """A classic ``GradientTransformation`` (GD, Adam, RMSProp, ...) as the fallback for a
    learned update rule: ``x_classic = x + update(grads)``.  Its state advances on every
    step with the gradients at the current iterate (whichever step is then taken), so
    its moments describe the path actually followed.  ``loss_fn(params) -> (B,)``, the
    per-instance objective, gives the gradients when the caller passes none (the shadow
    sequence of :class:`Safeguard`, which runs at its own points)."""
    def step(params, state, grads):
        if grads is None:
            require(loss_fn is not None, "transform_fallback needs loss_fn to step "
                    "without the caller's gradients")
            with tf.GradientTape() as tape:
                tape.watch(params)
                total = tf.reduce_sum(loss_fn(params))
            grads = tape.gradient(total, params)
        updates, state = transform.update(grads, state, params)
        return [p + u for p, u in zip(params, updates)], state

    return Fallback(lambda params: transform.init(params), step,
                    lambda state, x_next, accepted: state)


def select_state(mask, new, old):
    """:func:`select` for a fallback state: per-instance where a leaf is batch-first,
    ``old`` for scalars (e.g. Adam's step count, the same in both)."""
    def pick(a, b):
        if a.shape.rank == 0:
            return b
        m = tf.reshape(mask, [-1] + [1] * (a.shape.rank - 1))
        return tf.where(m, a, b)
    return tf.nest.map_structure(pick, new, old)


class Safeguard:
    """A rule, an energy and a fallback: :meth:`step` makes one safeguarded iteration and
    :meth:`output` gives the iterate to report.

    ``mode`` is ``on`` (the safeguard), ``off`` (always take the learned step) or
    ``classic`` (always take the fallback step, i.e. the classic solver itself): the three
    curves the comparisons need, from one code path.

    ``shadow`` (``best``, the default; ``strict``; ``off``) carries the classic solver's
    own run alongside, the *shadow sequence* ``z_0 = x_0``, ``z_{k+1} = S(z_k)`` (``S``:
    the fallback, e.g. FISTA with its momentum; the learned steps never touch it, so it is
    exactly the ``classic`` run), and uses it twice:

    * a rejected step goes to the better of the classic step from the current point and
      the shadow: ``x^{k+1} = argmin_E {S(x^k), z^{k+1}}`` (where ``z^{k+1}`` wins, the
      fallback's state, FISTA's ``x_prev`` and ``t`` or Adam's moments, jumps to the
      shadow's, so the run continues as the classic solver does; FISTA's momentum is not
      restarted by a rejection, only by an accepted learned step);
    * ``best``: the learned step is tested by the rule alone (Heaton et al., Alg. 1), and
      the reported iterate is ``xhat^k = argmin_E {x^k, z^k}`` (:meth:`output`; the run
      itself continues from ``x^k``, so a learned trajectory that is momentarily above
      the classic one in energy, as LISTA's first layers are in objective, keeps its
      layers' inputs);
    * ``strict``: the learned step must also beat the shadow at this iteration,
      ``E(y^k) <= (1 - delta) min(mu_k, E(z^{k+1}))``, and ``xhat^k = x^k``.

    Guarantee (both, per instance, by construction, not by a property of ``S``): the
    reported energy is never above the classic solver's at equal iterations,
    ``E(xhat^k) <= E(z^k)`` for every ``k``.  With the objective as the energy and FISTA
    (step ``1/L``) as ``S`` this gives every safeguarded run FISTA's rate,
    ``f(xhat^k) - f* <= 2 L ||x_0 - x*||^2 / (k + 1)^2`` (Beck & Teboulle 2009, Thm. 4.4),
    whatever the learned steps do; the rule's test and ``mu_k`` (Heaton et al., Alg. 1; the
    paper's Section 3.4.1) are kept, so every accepted step also satisfies their bound and
    their convergence argument.  The energy, not the NMSE, is what is bounded: an iterate
    with the lower objective can still be farther from the true code.  ``off`` is Heaton
    et al.'s safeguard (test against ``mu_k``, rejected step ``S(x^k)``): it bounds ``E`` by
    ``mu`` but a plausible learned step (one that passes the test yet leaves the run where
    the classic solver is slower) keeps the run behind the classic solver for good (64x128
    LISTA-CPSS on a coherent dictionary: 0.13-0.6 dB behind FISTA in NMSE; see docs/safeguard.md).
    ``strict`` keeps the iterates themselves below the shadow but rejects learned steps
    that are momentarily above it and so loses the model's trajectory (same model, in
    distribution, objective energy: -30 dB after 16-17 iterations instead of 8).  Cost: one
    more classic step and energy per iteration.
    """

    def __init__(self, rule, energy_fn, fallback, mode="on", shadow="best"):
        require(mode in ("on", "off", "classic"),
                f"safeguard mode must be on, off or classic, got {mode!r}")
        self.rule, self.energy_fn, self.fallback, self.mode = rule, energy_fn, fallback, mode
        self.shadow = check_shadow(shadow) if mode == "on" else "off"

    def init(self, x0):
        energy0 = self.energy_fn(x0)
        state = {"rule": self.rule.init(energy0), "fallback": self.fallback.init(x0),
                 "energy": energy0}
        if self.shadow != "off":
            state["shadow"] = {"z": x0, "fallback": self.fallback.init(x0), "energy": energy0}
        return state

    def output(self, x, state):
        """``(xhat, E(xhat))``: the iterate to report after a :meth:`step` (``x`` itself
        unless ``shadow="best"``, then the lower-energy one of ``x`` and the shadow's)."""
        if self.shadow != "best":
            return x, state["energy"]
        sh = state["shadow"]
        pick = sh["energy"] < state["energy"]
        pick = tf.logical_or(pick, tf.logical_not(tf.math.is_finite(state["energy"])))
        return select(pick, sh["z"], x), tf.where(pick, sh["energy"], state["energy"])

    def step(self, x, candidate, state, grads=None):
        """Returns ``(x_next, state, accepted (B,) bool)``; ``candidate`` is the learned
        step from ``x`` (ignored in ``classic`` mode)."""
        if self.mode == "off":
            energy = self.energy_fn(candidate)
            accepted = tf.ones_like(energy, tf.bool)
            fb_state = self.fallback.commit(state["fallback"], candidate, accepted)
            return candidate, dict(state, energy=energy, fallback=fb_state), accepted
        x_fb, fb_state = self.fallback.step(x, state["fallback"], grads)
        energy_fb = self.energy_fn(x_fb)
        if self.mode == "classic":
            accepted = tf.zeros_like(energy_fb, tf.bool)
            return x_fb, dict(state, energy=energy_fb, fallback=fb_state), accepted
        energy_c = self.energy_fn(candidate)
        accepted = self.rule.accept(energy_c, state["rule"])
        new = {}
        if self.shadow != "off":
            z, sh_state = self.fallback.step(state["shadow"]["z"], state["shadow"]["fallback"],
                                             None)
            energy_z = self.energy_fn(z)
            new["shadow"] = {"z": z, "fallback": sh_state, "energy": energy_z}
            if self.shadow == "strict":
                # a NaN shadow energy compares False: the learned step is rejected too
                accepted = tf.logical_and(accepted,
                                          energy_c <= (1.0 - self.rule.delta) * energy_z)
            to_shadow = tf.logical_and(
                tf.logical_not(accepted),
                tf.logical_or(energy_z < energy_fb, tf.logical_not(tf.math.is_finite(energy_fb))))
            x_fb = select(to_shadow, z, x_fb)
            fb_state = select_state(to_shadow, sh_state, fb_state)
            energy_fb = tf.where(to_shadow, energy_z, energy_fb)
        x_next = select(accepted, candidate, x_fb)
        rule_state = self.rule.update(state["rule"], energy_c, accepted)
        fb_state = self.fallback.commit(fb_state, x_next, accepted)
        energy = tf.where(accepted, energy_c, energy_fb)
        rule_state = self.rule.follow(rule_state, energy, accepted)
        new.update(rule=rule_state, fallback=fb_state, energy=energy)
        return x_next, new, accepted
