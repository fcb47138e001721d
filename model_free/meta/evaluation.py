"""Running a learned optimizer: the loss curve of ``num_steps`` steps on optimizee
instances (:func:`evaluate`, compiled once per optimizer, optimizee, length and scale by
:func:`make_runner`; the meta-trainer's model selection reuses the runner), the gradient
function of an optimizee (:func:`make_grads_fn`), the seeded initial state
(:func:`initial_state`) and the stateless seeds of an episode (:func:`stateless_seed`).
"""
import tensorflow as tf


def stateless_seed(*parts):
    """An int32 ``[2]`` stateless seed from integers (the run's seed, the episode, ...)."""
    value = 0
    for part in parts:
        value = (value * 1000003 + int(part)) & 0x7FFFFFFF
    return tf.constant([value, int(parts[-1]) & 0x7FFFFFFF], tf.int32)


def make_grads_fn(optimizee, grad_scale=1.0):
    """``grads_fn(params, instance, batch) -> (mean loss, grads, per-instance losses)``; the
    gradients are of the sum over instances (each instance its own), times ``grad_scale``
    (to keep the 1/128 scale of training on other batch sizes)."""

    def loss_and_grads(params, instance, batch):
        with tf.GradientTape() as tape:
            tape.watch(params)
            losses = optimizee.instance_losses(params, instance, batch)
            total = tf.reduce_sum(losses)
        grads = tape.gradient(total, params)
        return tf.reduce_mean(losses), [g * grad_scale for g in grads], losses

    return loss_and_grads


def initial_state(optimizer, params, seed):
    """The optimizer's initial state, its random draws (L2O-Scale's initial learning rates)
    from the stateless ``seed`` (``seeded_initial_state``) when it has that method."""
    seeded = getattr(optimizer, "seeded_initial_state", None)
    return seeded(params, seed) if seeded is not None else optimizer.initial_state(params)


def make_runner(optimizer, optimizee, num_steps, grad_scale, jit_compile=True,
                seeded_state=False):
    """A compiled ``run(params, instance, seed, seed0) -> (num_steps + 1, B)`` loss curve
    (see :func:`evaluate`); built once and reused for any instance of the same shapes.
    ``seeded_state``: the initial state's random draws from ``seed0``
    (:func:`initial_state`; model selection: the same draws at every evaluation, whatever
    the process ran before), else from TensorFlow's global RNG (:func:`evaluate`)."""
    grads_fn = make_grads_fn(optimizee, grad_scale)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def run(params, instance, seed, seed0):
        state = (initial_state(optimizer, params, seed0 + [0, 3]) if seeded_state
                 else optimizer.initial_state(params))
        first = optimizee.instance_losses(params, instance, optimizee.sample_batch(seed0))
        ta = tf.TensorArray(tf.float32, size=num_steps + 1).write(0, first)

        def body(t, x, s, ta):
            batch = optimizee.sample_batch(tf.stack([seed, t + 1]))
            _, grads, _ = grads_fn(x, instance, batch)
            steps, s = optimizer.update(grads, s, x)
            x = [p + d for p, d in zip(x, steps)]
            batch2 = optimizee.sample_batch(tf.stack([seed + 7919, t + 1]))
            return t + 1, x, s, ta.write(t + 1, optimizee.instance_losses(x, instance, batch2))

        _, _, _, ta = tf.while_loop(lambda t, *_: t < num_steps, body,
                                    (tf.constant(0), params, state, ta))
        return ta.stack()

    return run


def batch_count(optimizee, params, instance, seed):
    """The number of instances (or examples) ``instance_losses`` returns."""
    batch = optimizee.sample_batch(stateless_seed(seed, 0))
    return int(optimizee.instance_losses(params, instance, batch).shape[0])


def effective_step_sizes(optimizer, optimizee, instance, params, at_steps, seed=0,
                         grad_scale=1.0, jit_compile=True):
    """The learned rule's effective step size per coordinate at the steps ``at_steps``
    (1-based) of a run like :func:`evaluate`'s (the same minibatch seeds):

        eta_k = |x_k - x_{k-1}| / |g_{k-1}|     (elementwise, over every coordinate)

    with ``g_{k-1}`` the gradient the rule was fed at ``x_{k-1}`` (times ``grad_scale``):
    the learning rate plain gradient descent would need to make the same move.  Returns a
    ``(len(at_steps), coordinates)`` array; coordinates with ``g = 0`` are NaN.  The
    initial state's random draws (L2O-Scale) come from TensorFlow's global RNG."""
    at = sorted({int(k) for k in at_steps if int(k) >= 1})
    if not at:
        raise ValueError("at_steps must hold steps >= 1")
    params = [tf.convert_to_tensor(p) for p in params]
    size = sum(int(tf.size(p)) for p in params)
    grads_fn = make_grads_fn(optimizee, grad_scale)
    at_t = tf.constant(at, tf.int32)

    @tf.function(jit_compile=jit_compile)
    def trace(x, seed):
        state = optimizer.initial_state(x)
        buf = tf.fill([len(at), size], float("nan"))

        def body(t, x, s, buf):
            batch = optimizee.sample_batch(tf.stack([seed, t + 1]))
            _, grads, _ = grads_fn(x, instance, batch)
            steps, s = optimizer.update(grads, s, x)
            moved = tf.concat([tf.reshape(tf.abs(d), [-1]) for d in steps], 0)
            g = tf.concat([tf.reshape(tf.abs(gr), [-1]) for gr in grads], 0)
            ratio = tf.where(g > 0, moved / tf.where(g > 0, g, 1.0), float("nan"))
            here = tf.equal(at_t, t + 1)[:, None]
            buf = tf.where(here, ratio[None, :], buf)
            return t + 1, [p + d for p, d in zip(x, steps)], s, buf

        _, _, _, buf = tf.while_loop(lambda t, *_: t < at[-1], body,
                                     (tf.constant(0), x, state, buf))
        return buf

    return at, trace(params, tf.constant(seed, tf.int32)).numpy()


def log_step_sizes(tb, optimizer, optimizee, num_steps, instance, params, seed=0,
                   grad_scale=1.0, tag="test/effective_step", jit_compile=True):
    """Logs :func:`effective_step_sizes` at steps 1, 10, 100, 1000 (those up to
    ``num_steps``, and ``num_steps`` itself when shorter) as TensorBoard histograms
    ``tag`` (step = iteration) to ``tb``; nothing when ``tb`` writes nowhere."""
    if tb is None or tb.logdir is None or num_steps < 1:
        return
    last = min(int(num_steps), 1000)
    at = sorted({k for k in (1, 10, 100, 1000) if k <= last} | {last})
    at, sizes = effective_step_sizes(optimizer, optimizee, instance, params, at, seed,
                                     grad_scale, jit_compile)
    for k, row in zip(at, sizes):
        tb.histogram(tag, row, k)
    tb.flush()


def evaluate(optimizer, optimizee, num_steps, instance, params, seed=0, grad_scale=None,
             jit_compile=True, tb=None):
    """Runs the learned optimizer for ``num_steps``; returns the per-instance loss curve
    ``(num_steps + 1, B)`` (losses at ``x_0 .. x_T``; minibatch problems: the loss of the
    new iterate on a fresh minibatch, as the original's evaluation).

    ``grad_scale`` defaults to ``1 / B`` (the gradient of the mean over instances, the
    convention the original optimizers were trained with).  The compiled runner is kept
    for the next call with the same optimizer, optimizee, length, scale and ``jit_compile``
    (runs that differ in ``seed`` and ``params`` are not traced again).

    With ``tb`` (an :class:`open_l2o_tf.logging.TensorBoard`) the rule's effective step
    sizes ``|x_k - x_{k-1}| / |g_{k-1}|`` are also logged as histograms
    (:func:`log_step_sizes`, a second run of up to 1,000 steps)."""
    params = list(params)
    scale = (1.0 / batch_count(optimizee, params, instance, seed)) if grad_scale is None \
        else grad_scale
    key = (id(optimizer), id(optimizee), int(num_steps), float(scale), bool(jit_compile))
    cached = _RUNNERS.get(key)
    if cached is None or cached[0] is not optimizer or cached[1] is not optimizee:
        if len(_RUNNERS) >= 8:
            _RUNNERS.pop(next(iter(_RUNNERS)))
        cached = (optimizer, optimizee, make_runner(optimizer, optimizee, num_steps, scale,
                                                    jit_compile))
        _RUNNERS[key] = cached
    curve = cached[2](params, instance, tf.constant(seed, tf.int32),
                      stateless_seed(seed, 0)).numpy()
    if tb is not None:
        log_step_sizes(tb, optimizer, optimizee, num_steps, instance, params, seed, scale,
                       jit_compile=jit_compile)
    return curve


_RUNNERS = {}   # evaluate's compiled runners: key -> (optimizer, optimizee, runner)
