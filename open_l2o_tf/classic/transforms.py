"""optax-style gradient transformations and a compiled loop that runs them.

A :class:`GradientTransformation` is a pair of pure functions ``init(params) -> state`` and
``update(grads, state, params) -> (updates, new_state)``; the new parameters are
``params + updates`` (as in optax, Babuschkin et al. 2020, and the ``LearnedOptimizer``
interface of this toolbox, where ``params_new = params + steps``).  Parameters, gradients,
updates and states are lists (or nested structures) of tensors, never variables, so the
same code runs inside ``tf.function``/``tf.while_loop`` and under XLA.

:func:`run_optimizer` runs ``num_steps`` updates of a batch of independent problem
instances inside one compiled ``tf.while_loop`` and returns the per-instance loss curve.
"""
import collections

import tensorflow as tf

from open_l2o_tf.errors import UserError, require, require_positive_int

GradientTransformation = collections.namedtuple("GradientTransformation", ["init", "update"])
GradientTransformation.__doc__ = """A gradient transformation (optax style).

Attributes:
  init: ``init(params: list[Tensor]) -> state`` (a nested structure of tensors).
  update: ``update(grads, state, params) -> (updates, new_state)``; the caller applies
    ``params_new = params + updates``.
"""


def identity():
    """The transformation that returns the gradients unchanged (``updates = grads``)."""
    return GradientTransformation(lambda params: (), lambda grads, state, params=None:
                                  (list(grads), state))


def scale(factor):
    """Multiplies the updates by a constant ``factor`` (e.g. ``-learning_rate``)."""
    factor = float(factor)

    def update(grads, state, params=None):
        del params
        return [factor * g for g in grads], state

    return GradientTransformation(lambda params: (), update)


def chain(*transforms):
    """Applies ``transforms`` in order; the state is the tuple of their states."""
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise UserError(f"chain argument {i} must be a GradientTransformation, "
                            f"got {type(t).__name__}")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        new_state = []
        updates = list(grads)
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params, updates):
    """``params + updates`` element-wise over the two lists."""
    return [p + u for p, u in zip(params, updates)]


def _as_param_list(params, name="params"):
    if isinstance(params, (list, tuple)):
        out = [tf.convert_to_tensor(p) for p in params]
    else:
        out = [tf.convert_to_tensor(params)]
    require(len(out) > 0, f"{name} must be a non-empty list of tensors, got an empty list")
    for p in out:
        require(p.dtype.is_floating,
                f"{name} must hold floating-point tensors, got dtype {p.dtype.name}")
    return out


def value_and_grads(loss_fn, params, *args, reduction="sum"):
    """Per-instance losses ``(B,)`` and the gradient of their sum (or mean) w.r.t. params.

    With ``reduction="sum"`` the gradient of instance b is that instance's own gradient
    (instances are independent); ``"mean"`` reproduces the originals' convention where
    the optimised scalar is the mean over the batch, so gradients carry a ``1/B`` factor.
    """
    with tf.GradientTape() as tape:
        tape.watch(params)
        losses = loss_fn(params, *args)
        total = tf.reduce_sum(losses) if reduction == "sum" else tf.reduce_mean(losses)
    grads = tape.gradient(total, params)
    grads = [tf.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return losses, grads


def step_seed(step, base_seed=0):
    """A stateless ``[2]`` int32 seed derived from a step counter (usable in a graph)."""
    return tf.stack([tf.constant(base_seed, tf.int32), tf.cast(step, tf.int32)])


def run_optimizer(transform, loss_fn, params, num_steps, batch_fn=None, record="pre",
                  reduction="sum", jit_compile=True, seed=None):
    """Runs ``num_steps`` updates of ``transform`` on a batch of instances, compiled once.

    The update is ``g_t = grad f(x_t; batch_t)``, ``(u_t, s_{t+1}) = update(g_t, s_t, x_t)``,
    ``x_{t+1} = x_t + u_t``; the whole loop is one ``tf.while_loop`` inside a single
    ``tf.function`` (XLA-compiled when ``jit_compile``), so the Python ``loss_fn`` is traced
    a fixed number of times whatever ``num_steps`` is.

    Args:
      transform: a :class:`GradientTransformation`.
      loss_fn: ``loss_fn(params, batch) -> (B,)`` per-instance losses (``batch`` is None
        when ``batch_fn`` is None).
      params: the starting point ``x_0``, a tensor or a list of tensors (batch first).
      num_steps: number of updates T (a positive int).
      batch_fn: optional ``batch_fn(step) -> batch`` for stochastic problems; it is called
        with the int32 step tensor inside the graph and should derive a stateless seed from
        it (e.g. :func:`step_seed`) so each step sees a fresh minibatch.
      record: ``"pre"``: ``curve[t] = f(x_t; batch_t)`` (the loss evaluated with the
        gradient, as the originals log it; ``curve[T] = f(x_T; batch_T)``); ``"post"``:
        ``curve[0] = f(x_0; batch_0)`` and ``curve[t+1] = f(x_{t+1}; batch_t)`` (the loss
        after the update on the batch that produced it).  Identical for deterministic
        problems.
      reduction: ``"sum"`` (each instance gets its own gradient) or ``"mean"`` (gradient of
        the batch mean, the originals' 1/B convention).
      jit_compile: compile the loop with XLA.
      seed: optional int32 scalar passed on as ``batch_fn(step, seed)`` (a loop argument,
        so runs that differ only in their seed share one traced loop).

    Returns:
      ``(final_params, curve)``: the list of final parameter tensors and the loss curve of
      shape ``(num_steps + 1, B)`` (losses at ``x_0 .. x_T``).
    """
    require(isinstance(transform, GradientTransformation),
            f"transform must be a GradientTransformation, got {type(transform).__name__}")
    require_positive_int(num_steps, "num_steps")
    require(record in ("pre", "post"), f"record must be 'pre' or 'post', got {record!r}")
    require(reduction in ("sum", "mean"),
            f"reduction must be 'sum' or 'mean', got {reduction!r}")
    params = _as_param_list(params)

    key = (transform, loss_fn, batch_fn, num_steps, record, reduction, bool(jit_compile),
           seed is not None)
    loop = _LOOP_CACHE.get(key)
    if loop is None:
        loop = _make_loop(*key)
        if len(_LOOP_CACHE) >= _LOOP_CACHE_SIZE:
            _LOOP_CACHE.pop(next(iter(_LOOP_CACHE)))
        _LOOP_CACHE[key] = loop
    final, curve = loop(params, tf.constant(0 if seed is None else seed, tf.int32))
    return list(final), curve


# Compiled loops keyed by (transform, loss_fn, batch_fn, num_steps, ...), so calling
# run_optimizer again with the same functions reuses the traced graph.
_LOOP_CACHE = {}
_LOOP_CACHE_SIZE = 32


def _make_loop(transform, loss_fn, batch_fn, num_steps, record, reduction, jit_compile,
               seeded):
    """The compiled ``tf.while_loop`` of :func:`run_optimizer`."""

    @tf.function(jit_compile=jit_compile)
    def loop(params0, seed):
        def get_batch(step):
            if batch_fn is None:
                return None
            return batch_fn(step, seed) if seeded else batch_fn(step)

        state0 = transform.init(params0)
        losses0 = loss_fn(params0, get_batch(tf.constant(0, tf.int32)))
        ta = tf.TensorArray(losses0.dtype, size=num_steps + 1, element_shape=losses0.shape)

        def body(t, x, state, ta):
            batch = get_batch(t)
            losses, grads = value_and_grads(loss_fn, x, batch, reduction=reduction)
            updates, state = transform.update(grads, state, x)
            x_new = apply_updates(x, updates)
            if record == "pre":
                ta = ta.write(t, losses)
            else:
                ta = ta.write(t + 1, loss_fn(x_new, batch))
            return t + 1, x_new, state, ta

        if record == "post":
            ta = ta.write(0, losses0)
        _, x, _, ta = tf.while_loop(lambda t, *_: t < num_steps, body,
                                    (tf.constant(0, tf.int32), params0, state0, ta))
        if record == "pre":
            ta = ta.write(num_steps, loss_fn(x, get_batch(tf.constant(num_steps, tf.int32))))
        return x, ta.stack()

    return loop
