"""The Run-and-Inspect oracle (Chen, Sun & Yin, Math. Programming 2019) for Rastrigin.

Open-L2O (Chen et al., JMLR 2022, Fig. 7) reports it as the reference ("oracle") on the
generalised Rastrigin family ``f(x) = 1/2 ||A x - b||^2 - alpha c^T cos(2 pi x) + alpha n``;
its code is not released.  This reconstruction alternates, per instance and vectorised
over the batch:

1. **Run**: a local method -- gradient descent (default) or monotone NAG with backtracking
   Armijo line search (:mod:`open_l2o_tf.classic.line_search`) -- until the gradient is
   small (``||g|| < grad_tol``), the line search makes no progress, or ``max_run``
   iterations have passed since the last inspection.
2. **Inspect**: evaluate ``f`` at sample points ``x + r u`` (each after
   ``polish_steps`` line-search GD steps) on spheres of radii
   ``r = delta, 2 delta, ..., R`` around ``x`` (``num_directions`` random unit directions
   per sphere, fresh each inspection; for ``n > 3`` also the ``2n`` coordinate directions
   ``+-e_i``: coordinate-wise inspection, which avoids the curse of dimensionality).  If the
   best sample ``y`` gives a sufficient decrease ``f(y) < f(x) - nu``, run again from ``y``;
   otherwise the instance stops: ``x`` is an approximate R-local minimiser (globally optimal
   up to an R-dependent error for a convex function plus a bounded non-convex term).

The cosine period is 1, so ``R >= 1`` (default 1.5).  Inspections are not counted as
iterations: the curve has one entry per run iteration and is the current (= best, the
method is monotone) loss.  A per-instance lower bound to check against is
``alpha (n - ||c||_1)``.
"""
import math

import tensorflow as tf

from open_l2o_tf.classic.line_search import armijo_step, loss_and_grads
from open_l2o_tf.classic.transforms import _as_param_list
from open_l2o_tf.errors import require, require_positive_int


def _flatteners(params):
    shapes = [p.shape[1:] for p in params]
    sizes = [int(math.prod(s)) for s in shapes]

    def flatten(ps):
        return tf.concat([tf.reshape(p, [tf.shape(p)[0], -1]) for p in ps], axis=1)

    def unflatten(x):
        parts = tf.split(x, sizes, axis=1)
        return [tf.reshape(part, [-1] + list(s)) for part, s in zip(parts, shapes)]

    return flatten, unflatten, sum(sizes)


def run_and_inspect(loss_fn, params, num_iterations=1000, method="gd", initial_step=0.1,
                    shrink=0.5, c=1e-4, max_backtracks=30, grad_tol=1e-3, max_run=200,
                    radius=2.0, delta=0.2, num_directions=None, coordinate=None, nu=1e-3,
                    polish_steps=3, seed=0, jit_compile=True, progress=None, chunk=100,
                    rows_loss_fn=None, inspection=None, group=4):
    """Runs the Run-and-Inspect oracle on a batch of instances.

    Args:
      loss_fn: ``loss_fn(params) -> (B,)`` per-instance losses.
      params: starting points, a tensor or list of tensors, batch first.
      num_iterations: run-phase iterations (line-search steps) in total.
      method: ``"gd"`` or ``"nag"`` (monotone NAG) for the run phase.
      initial_step, shrink, c, max_backtracks: the backtracking Armijo search.
      grad_tol: gradient norm below which the run phase stops and an inspection starts.
      max_run: maximum run iterations between inspections.
      radius: R, the largest inspection radius.
      delta: spacing of the inspection spheres (radii delta, 2 delta, ..., R).
      num_directions: random unit directions per sphere; default ``ceil(2 pi R / delta)``
        (samples about ``delta`` apart on the largest circle) when the dimension is <= 3,
        else 16.
      coordinate: also inspect along the ``+-e_i`` (default: when the dimension is > 3).
      nu: sufficient decrease required to restart from a sample.
      polish_steps: line-search GD steps taken from every sample before it is compared
        (0 = compare raw samples).  A raw sample rarely lands at the bottom of a narrow
        cosine well, so polishing makes the inspection see deeper wells at little cost.
      seed: int seed of the stateless RNG of the inspection directions.
      jit_compile: XLA-compile the loop.
      progress: ``progress(line)`` is called after every ``chunk`` iterations with the
        iteration and the mean loss (None: silent).
      chunk: iterations per compiled call (None: all in one); the values do not depend
        on it (the same compiled iteration, the global iteration index seeds the
        inspection directions).
      rows_loss_fn: ``rows_loss_fn(rows) -> f``, ``f(params) -> (R,)``: the losses of
        ``R`` points ``params`` (batch first) for the instances ``rows`` (``(R,)`` int32
        indices into the batch of ``loss_fn``), the same per-row numbers as ``loss_fn``;
        called once per inspected group, so the instances' data are gathered once, not at
        every line-search evaluation.  Needed by the batched inspection.
      inspection: ``"batched"`` (default when ``rows_loss_fn`` is given) or ``"loop"``
        (default otherwise).  ``"loop"`` inspects the whole batch whenever any instance
        needs it, one sample after the other (a ``tf.while_loop`` over the
        ``len(radii) x directions`` samples).  ``"batched"`` inspects only the instances
        that need it, ``group`` at a time, all their samples stacked along the batch
        (one polish of ``group x samples`` rows), and selects the same sample (the first
        best finite one, strictly below ``f(x)``).  The per-row arithmetic is the same, so
        the curve is the same bit for bit (observed with XLA on CPU, where a row's loss
        does not depend on the rows around it; tests/test_classic.py checks it, and
        run.rastrigin's n = 2 and n = 10 draw-0 curves over 1,000 iterations equal the
        loop's), at a fraction of the cost (the samples are not serial, the instances
        that need no inspection are not polished): 14x faster over 100 n = 10
        iterations.  Hence the default; ``"loop"`` stays for a ``loss_fn`` without a
        per-row form.
      group: instances per batched inspection step (``"batched"`` only; the values do
        not depend on it; 2-4 were the fastest at n = 10, 8-32 up to 40% slower).

    Returns:
      ``(params, final_losses, curve)``: final list of tensors, final per-instance losses
      ``(B,)`` and the curve of the (best) loss at iterations ``0 .. K``, ``(K + 1, B)``.
    """
    params = _as_param_list(params)
    flatten, unflatten, dim = _flatteners(params)
    num_directions, coordinate, radii = _check(num_iterations, num_directions, polish_steps,
                                               max_run, method, radius, delta, coordinate,
                                               dim)
    search = (initial_step, shrink, c, max_backtracks)

    def f_flat(x):
        return loss_fn(unflatten(x))

    if inspection is None:
        inspection = "loop" if rows_loss_fn is None else "batched"
    require(inspection in ("loop", "batched"),
            f"inspection must be 'loop' or 'batched', got {inspection!r}")
    require(inspection == "loop" or rows_loss_fn is not None,
            "inspection='batched' needs rows_loss_fn")
    require_positive_int(group, "group")
    directions = _make_directions(dim, num_directions, coordinate, seed)
    if inspection == "loop":
        inspect = _make_inspect(f_flat, directions, radii, polish_steps, search)
    else:
        def f_rows(rows):
            loss_rows = rows_loss_fn(rows)
            return lambda x: loss_rows(unflatten(x))

        inspect = _make_batched_inspect(f_rows, directions, radii, polish_steps, search,
                                        group)
    run = _make_run(f_flat, inspect, num_iterations, method, grad_tol, max_run, nu, search,
                    jit_compile, chunk, progress)
    x, f_final, curve = run(flatten(params))
    return unflatten(x), f_final, curve


def _check(num_iterations, num_directions, polish_steps, max_run, method, radius, delta,
           coordinate, dim):
    """Checks the arguments; returns ``(num_directions, coordinate, radii)`` with the
    defaults filled in."""
    require_positive_int(num_iterations, "num_iterations")
    if num_directions is None:
        num_directions = int(math.ceil(2 * math.pi * radius / delta)) if dim <= 3 else 16
    require_positive_int(num_directions, "num_directions")
    require(isinstance(polish_steps, int) and polish_steps >= 0,
            f"polish_steps must be an integer >= 0, got {polish_steps!r}")
    require_positive_int(max_run, "max_run")
    require(method in ("gd", "nag"), f"method must be 'gd' or 'nag', got {method!r}")
    require(radius > 0 and delta > 0 and delta <= radius,
            f"need 0 < delta <= radius, got delta={delta!r}, radius={radius!r}")
    if coordinate is None:
        coordinate = dim > 3
    num_radii = int(math.ceil(radius / delta - 1e-9))
    return num_directions, coordinate, [min(delta * (j + 1), radius) for j in range(num_radii)]


def _make_directions(dim, num_directions, coordinate, seed):
    """``directions(k, batch, dtype) -> (D, batch, dim)``: the inspection's unit directions
    at iteration ``k`` (``num_directions`` random ones, then, with ``coordinate``, the
    ``+-e_i``)."""

    def directions(k, batch, dtype):
        key = tf.stack([tf.constant(seed, tf.int32), tf.cast(k, tf.int32)])
        u = tf.random.stateless_normal([num_directions, batch, dim], key, dtype=dtype)
        u = u / tf.norm(u, axis=-1, keepdims=True)
        if coordinate:
            eye = tf.eye(dim, dtype=dtype)
            coords = tf.concat([eye, -eye], 0)[:, None, :] * tf.ones([1, batch, 1], dtype)
            u = tf.concat([u, coords], 0)
        return u  # (D, B, dim)

    return directions


def _polish(f, y, polish_steps, search):
    """``polish_steps`` line-search GD steps from the rows ``y`` of ``f``."""
    for _ in range(polish_steps):
        fy, gy = loss_and_grads(lambda ps: f(ps[0]), [y])
        y = armijo_step(lambda ps: f(ps[0]), [y], fy, gy, *search)[0][0]
    return y


def _make_inspect(f_flat, directions, radii, polish_steps, search):
    """``inspect(k, x, fx, need) -> (y, f(y))``: the best (polished) sample on the spheres
    of ``radii`` around ``x`` along the ``directions``, for every instance (``need`` is
    not used: the whole batch is inspected), one sample after the other; ``search``: the
    Armijo search's ``(initial_step, shrink, c, max_backtracks)``."""

    def inspect(k, x, fx, need):
        """Best sample on the spheres around x: (y, f(y))."""
        del need
        u = directions(k, tf.shape(x)[0], x.dtype)
        offsets = tf.concat([r * u for r in radii], 0)  # (S, B, dim)
        num = offsets.shape[0]

        def body(i, best_y, best_f):
            y = _polish(f_flat, x + offsets[i], polish_steps, search)
            fy = f_flat(y)
            better = tf.logical_and(tf.math.is_finite(fy), fy < best_f)
            return (i + 1, tf.where(better[:, None], y, best_y), tf.where(better, fy, best_f))

        _, y, fy = tf.while_loop(lambda i, *_: i < num, body, (tf.constant(0), x, fx))
        return y, fy

    return inspect


def first_best(fy, fx):
    """``(index, value, better)`` of the sequential selection over the samples' losses
    ``fy`` ``(S, M)`` from ``fx`` ``(M,)``: per column, the first sample with the least
    finite loss, ``better`` where that loss is strictly below ``fx`` (a running
    ``if isfinite(f_i) and f_i < best: best = f_i`` over ``i = 0 .. S-1`` picks the same)."""
    finite = tf.where(tf.math.is_finite(fy), fy, tf.fill(tf.shape(fy),
                                                         tf.constant(float("inf"), fy.dtype)))
    least = tf.reduce_min(finite, axis=0)
    num = tf.shape(fy)[0]
    position = tf.range(num)[:, None] * tf.ones_like(fy, tf.int32)
    index = tf.reduce_min(tf.where(finite == least[None], position,
                                   tf.fill(tf.shape(position), num)), axis=0)
    return tf.minimum(index, num - 1), least, least < fx


def _make_batched_inspect(f_rows, directions, radii, polish_steps, search, group):
    """``inspect(k, x, fx, need) -> (y, f(y))`` as :func:`_make_inspect`'s for the rows
    where ``need`` holds (the other rows: garbage, the caller discards them): the needing
    instances ``group`` at a time (a loop over ``ceil(count / group)`` steps), the
    ``S`` samples of each step stacked along the batch (``S x group`` rows of
    ``f_rows(rows)(y)``), then :func:`first_best`."""

    def inspect(k, x, fx, need):
        batch = tf.shape(x)[0]
        u = directions(k, batch, x.dtype)
        # the needing rows first (stable), then the others; a dummy row `batch` pads
        order = tf.argsort(tf.cast(tf.logical_not(need), tf.int32), stable=True)
        order = tf.concat([tf.cast(order, tf.int32), tf.fill([group], batch)], 0)
        count = tf.reduce_sum(tf.cast(need, tf.int32))
        pad_x = tf.concat([x, x[:1]], 0)
        pad_f = tf.concat([fx, fx[:1]], 0)
        pad_u = tf.concat([u, u[:, :1]], 1)

        def body(start, best_y, best_f):
            idx = tf.slice(order, [start], [group])                   # (M,)
            xg, fg = tf.gather(pad_x, idx), tf.gather(pad_f, idx)
            ug = tf.gather(pad_u, idx, axis=1)                        # (D, M, dim)
            offsets = tf.concat([r * ug for r in radii], 0)           # (S, M, dim)
            num = offsets.shape[0]
            rows = tf.tile(tf.minimum(idx, batch - 1), [num])         # (S * M,)
            f = f_rows(rows)
            y = _polish(f, tf.reshape(xg[None] + offsets, [-1, xg.shape[-1]]), polish_steps,
                        search)
            fy = tf.reshape(f(y), [num, -1])
            index, least, better = first_best(fy, fg)
            y = tf.gather_nd(tf.reshape(y, [num, -1, xg.shape[-1]]),
                             tf.stack([index, tf.range(tf.shape(idx)[0])], 1))
            at = idx[:, None]
            return (start + group,
                    tf.tensor_scatter_nd_update(best_y, at, tf.where(better[:, None], y, xg)),
                    tf.tensor_scatter_nd_update(best_f, at, tf.where(better, least, fg)))

        _, y, fy = tf.while_loop(lambda start, *_: start < count, body,
                                 (tf.constant(0), pad_x, pad_f))
        return y[:-1], fy[:-1]

    return inspect


def _make_run(f_flat, inspect, num_iterations, method, grad_tol, max_run, nu, search,
              jit_compile, chunk=None, progress=None):
    """``run(x0) -> (x, f(x), curve)``: line-search steps (GD or monotone NAG) per
    instance; an instance whose gradient is small, that stalled or ran ``max_run`` steps is
    inspected, restarts from a sample better by ``nu`` or freezes.  The loop runs as
    compiled calls of ``chunk`` iterations each (one per length), ``progress`` reporting
    after each."""
    chunk = num_iterations if not chunk else min(int(chunk), num_iterations)
    compiled = {}
    initial = tf.function(f_flat, jit_compile=jit_compile)

    def chunk_fn(length):
        if length not in compiled:
            compiled[length] = tf.function(
                lambda k0, state: _run_chunk(k0, state, length), jit_compile=jit_compile)
        return compiled[length]

    def _run_chunk(k0, state, length):
        ta = tf.TensorArray(state[3].dtype, size=length, element_shape=state[3].shape)

        def body(k, x, x_prev, t, fx, stalled, frozen, run_count, ta):
            if method == "nag":
                t_next = 0.5 * (1.0 + tf.sqrt(1.0 + 4.0 * t * t))
                z = x + ((t - 1.0) / t_next)[:, None] * (x - x_prev)
            else:
                t_next, z = t, x
            fz, g = loss_and_grads(lambda ps: f_flat(ps[0]), [z])
            gnorm = tf.norm(g[0], axis=1)
            grad_x = gnorm if method == "gd" else tf.norm(
                loss_and_grads(lambda ps: f_flat(ps[0]), [x])[1][0], axis=1)
            need = tf.logical_and(tf.logical_not(frozen), tf.logical_or(
                tf.logical_or(grad_x < grad_tol, stalled), run_count >= max_run))

            def do_inspect():
                y, fy = inspect(k, x, fx, need)
                improved = tf.logical_and(need, fy < fx - nu)
                return (tf.where(improved[:, None], y, x), tf.where(improved, fy, fx),
                        tf.logical_or(frozen, tf.logical_and(need, tf.logical_not(improved))))

            x_i, fx_i, frozen_i = tf.cond(tf.reduce_any(need), do_inspect,
                                          lambda: (x, fx, frozen))
            # Run step for the active instances that were not inspected this iteration.
            x_s, f_s, _, accepted = armijo_step(lambda ps: f_flat(ps[0]), [z], fz, g,
                                                *search)
            x_s, f_s = x_s[0], f_s
            ok = tf.logical_and(accepted, f_s <= fx)
            active = tf.logical_and(tf.logical_not(need), tf.logical_not(frozen))
            take = tf.logical_and(active, ok)
            x_new = tf.where(take[:, None], x_s, x_i)
            f_new = tf.where(take, f_s, fx_i)
            progress = fx - f_s > 1e-6 * (1.0 + tf.abs(fx))
            stalled_new = tf.logical_and(active, tf.logical_not(tf.logical_and(ok, progress)))
            # Momentum restarts after an inspection or a rejected step.
            restart = tf.logical_not(take)
            t_new = tf.where(restart, tf.ones_like(t_next), t_next)
            x_prev_new = tf.where(restart[:, None], x_new, x)
            run_count = tf.where(need, tf.zeros_like(run_count), run_count + 1)
            return (k + 1, x_new, x_prev_new, t_new, f_new, stalled_new, frozen_i, run_count,
                    ta.write(k - k0, f_new))

        out = tf.while_loop(lambda k, *_: k < k0 + length, body, (k0,) + tuple(state) + (ta,))
        return tuple(out[1:8]), out[8].stack()

    def run(x0):
        x0 = tf.convert_to_tensor(x0)
        f0 = initial(x0)
        batch = tf.shape(x0)[0]
        false, zero_i = tf.zeros([batch], tf.bool), tf.zeros([batch], tf.int32)
        state = (x0, x0, tf.ones_like(f0), f0, false, false, zero_i)
        parts = [f0[None]]
        for k0 in range(0, num_iterations, chunk):
            length = min(chunk, num_iterations - k0)
            state, values = chunk_fn(length)(tf.constant(k0), state)
            parts.append(values)
            if progress is not None:
                progress(f"[oracle] iteration {k0 + length}/{num_iterations} "
                         f"mean loss {float(tf.reduce_mean(state[3])):.4f} "
                         f"frozen {int(tf.reduce_sum(tf.cast(state[5], tf.int32)))}")
        return state[0], state[3], tf.concat(parts, axis=0)

    return run
