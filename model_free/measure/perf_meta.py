"""Meta-training against its floors (part of ``run.perf --what=model_free``).

Three settings: L2O-RNNprop on Lasso 25x50 (Fig. 6: 128 instances per episode, truncations
of 20 steps, model selection on 20 held-out problems every 10 episodes, the last
truncation's losses), L2O-DM on the MNIST sigmoid MLP (Fig. 8: minibatch 128, the same
truncation and selection) and L2O-Scale on the same MLP (Fig. 8: its own recipe, the
truncation and the selection XLA-compiled as in its meta-training, selection every 100
episodes).  Episodes of ``unroll`` steps (default 100: 5 truncations; the
paper's 1,000-step Lasso episodes cost ten times as much, truncations and selection alike).
For each, measured in one process (medians of ``repeats`` calls):

* **truncation** (one compiled call: ``T`` optimizee gradients and optimizer steps, BPTT,
  the meta-update) beside its *FLOP floor*: the float32 FLOPs of its matrix products,
  counted from the shapes, at (a) the machine's rate *for those shapes* (every distinct
  product timed alone in a compiled call of 10 products) and (b) the 1024x1024 rate.  Per
  step ``t`` the products are: the optimizee's forward (``T + 1`` times: ``f(x_0 .. x_T)``)
  and its backward (the inner gradient ``g_t``, ``T`` times; again for the meta-gradient
  through ``f(x_t)``, ``T`` times; first order, so nothing through ``g_t``); the learned
  optimizer's forward over the ``N`` coordinates (``T`` times) and its backward (``dW`` of
  every product, ``dX`` where the input depends on the weights: not the input projection
  of RNNprop's features).  A forward product ``(M, K) x (K, N)`` costs ``2MKN``; its ``dX``
  is ``(M, N) x (N, K)``, its ``dW`` ``(K, M) x (M, N)``.  Elementwise work (gates,
  features, the loss) is left out: the floor is a lower bound.
* **selection** (``ModelSelection.score`` at the episode's horizon) beside its floor: the
  same forward steps (optimizee gradient, optimizer update, no BPTT tape), ``instances x
  horizon`` of them run as one compiled ``tf.while_loop`` on one instance, without the
  recorded loss curve.
* **episode** (``run_episode``: its truncations) beside ``truncations x`` the truncation's
  shape-rate floor; and the episode with its share of a selection (``1 / eval_every``) beside
  the same floor plus the selection floor's share.
* **profile** of one truncation: compiled calls of its parts, ``T`` steps each: the
  optimizee gradients alone, the optimizer updates alone (fixed gradients), the forward
  unroll without a tape, the forward with the tape and ``tape.gradient`` (BPTT) without
  the meta-update (the difference of those two is the backward pass), and the
  meta-optimizer's ``apply_gradients`` alone (on copies of the weights).
"""
import numpy as np
import tensorflow as tf

from model_free.meta.evaluation import initial_state, make_grads_fn, stateless_seed
from model_free.meta.meta_trainer import MetaTrainer
from model_free.meta.recipe import compiles
from model_free.rules.dm import L2ODM
from model_free.rules.rnnprop import L2ORNNprop
from model_free.rules.scale import L2OScale
from open_l2o_tf.determinism import without_graph_rewrites
from open_l2o_tf.optimizees.lasso import Lasso
from open_l2o_tf.perf_utils import matmul_flops, median_time


SETTINGS = ("l2o_rnnprop_lasso", "l2o_dm_mnist_mlp", "l2o_scale_mnist_mlp")


def _setting(which, mnist_problem, unroll):
    every = 10
    if which == "l2o_rnnprop_lasso":
        rng = np.random.default_rng(0)      # timing does not depend on the values
        problem = Lasso.from_data(rng.normal(0, 0.2, (25, 50)).astype(np.float32),
                                  rng.normal(size=(1000, 25)).astype(np.float32),
                                  lam=0.005, batch_size=128)
        opt = L2ORNNprop.for_problem(True)
    elif which == "l2o_scale_mnist_mlp":
        problem, opt, every = mnist_problem, L2OScale.for_problem(False), 100
    else:
        problem, opt = mnist_problem, L2ODM.for_problem(False)
    trainer = MetaTrainer(opt, problem, opt.meta_training(opt), unroll=unroll,
                          truncation=20, eval_every=every, eval_instances=20,
                          selection="last_truncation", progress=None)
    return trainer


def _scale_products(opt, n, groups):
    """L2O-Scale's products per update: the per-coordinate GRU and read-outs over the ``n``
    coordinates, the per-tensor GRU over the ``groups`` tensors, the global GRU, the bias
    maps."""
    h0, h1, h2 = opt.hidden0, opt.hidden1, opt.hidden2
    f0, f1 = opt.gru0.input_dim + h0, opt.gru1.input_dim + h1
    f2 = opt.gru2.input_dim + h2
    return [(n, f0, 2 * h0, True), (n, f0, h0, True),           # level 0 GRU
            (n, h0, 4, True), (n, opt.w_shortcut.shape[0], 1, True),  # read-outs
            (groups, h1, 3 * h0, True), (1, h2, 3 * h0, True),   # biases of level 0
            (groups, f1, 2 * h1, True), (groups, f1, h1, True),  # level 1 GRU
            (1, h2, 3 * h1, True),                               # bias of level 1
            (1, f2, 3 * h2, True)]           # level 2 GRU (gates and candidate: one shape)


def _optimizer_products(opt, params):
    """``(forward (M, K, N) products, whether each needs dX)`` of one update of the
    coordinates of ``params``."""
    n = int(sum(int(np.prod(p.shape)) for p in params))
    if isinstance(opt, L2OScale):
        return _scale_products(opt, n, len(params))
    h = opt.hidden
    lstm = [(n, opt.lstm_1.input_dim + h, 4 * h, True), (n, 2 * h, 4 * h, True),
            (n, h, 1, True)]
    if isinstance(opt, L2ORNNprop):
        return [(n, 2, h, False)] + lstm      # the input projection of the features
    return lstm


def _optimizee_products(problem):
    """``(forward products, backward products)`` of one loss and its gradient."""
    if isinstance(problem, Lasso):
        b, m, n = problem.batch_size, problem.m, problem.n
        return [(b, n, m)], [(b, m, n)]                    # A x; r^T A
    b, d, h = problem.batch_size, int(np.prod(problem.images.shape[1:])), problem.shapes[0][1]
    return [(b, d, h), (b, h, 10)], [(h, b, 10), (b, 10, h), (d, b, h)]


def truncation_products(trainer, params):
    """``{part: {(M, K, N): count}}`` of one truncation's matrix products (module
    docstring): the optimizee's forward and inner gradients, the optimizer's forward, the
    backward pass (BPTT)."""
    T = trainer.truncation
    counts = {"optimizee gradients": {}, "optimizer updates": {}, "BPTT backward": {}}

    def add(part, shape, times):
        counts[part][shape] = counts[part].get(shape, 0) + times
    fwd, bwd = _optimizee_products(trainer.optimizee)
    for shape in fwd:
        add("optimizee gradients", shape, T + 1)
    for shape in bwd:
        add("optimizee gradients", shape, T)
        add("BPTT backward", shape, T)
    for m, k, o, dx in _optimizer_products(trainer.opt, params):
        add("optimizer updates", (m, k, o), T)
        add("BPTT backward", (k, m, o), T)
        if dx:
            add("BPTT backward", (m, o, k), T)
    return counts


def _product_seconds(shape, copies=10, repeats=5):
    m, k, n = shape
    a = tf.random.normal([copies, m, k])
    b = tf.random.normal([k, n])
    f = tf.function(lambda: tf.add_n([tf.reduce_sum(tf.matmul(a[i], b))
                                      for i in range(copies)]))
    return median_time(lambda: f().numpy(), repeats) / copies


def flop_floors(counts, rate_1024):
    """``{part: (flops, shape-rate seconds, 1024-rate seconds)}`` of ``{part: {shape:
    count}}``, and the whole truncation's under ``"truncation"``."""
    out, seconds = {}, {}
    for part, shapes in counts.items():
        flops = sum(2.0 * m * k * n * c for (m, k, n), c in shapes.items())
        shaped = 0.0
        for shape, c in shapes.items():
            if shape not in seconds:
                seconds[shape] = _product_seconds(shape)
            shaped += c * seconds[shape]
        out[part] = (flops, shaped, flops / rate_1024)
    out["truncation"] = tuple(sum(v[i] for v in out.values()) for i in range(3))
    return out


def _parts(trainer, params, state, instance, seed):
    """Compiled parts of one truncation (``T`` steps each): name -> callable."""
    unroller, opt, T = trainer.unroller, trainer.opt, trainer.truncation
    problem = unroller.problem
    grads_fn = make_grads_fn(problem)
    variables = opt.trainable_variables
    jit = compiles(trainer.recipe, problem)     # as the meta-training compiles them
    wrap = lambda f, jit=jit: without_graph_rewrites(  # noqa: E731
        tf.function(f, jit_compile=jit), not trainer.policy.graph_rewrites)

    def gradients(x):
        total = 0.0
        for t in range(T):
            batch = problem.sample_batch(tf.stack([seed[0], seed[1] + t]))
            loss, grads, _ = grads_fn([p + 0.0 * total for p in x], instance, batch)
            total += loss
        return total

    grads0 = grads_fn(params, instance, problem.sample_batch(seed))[1]

    def updates(s):
        x = params
        for _ in range(T):
            steps, s = opt.update(grads0, s, x, training=True)
            x = [p + d for p, d in zip(x, steps)]
        return x

    def forward(x, s):
        losses, x, s = unroller._unroll(x, s, instance, seed, tf.constant(0), problem.loss)
        return tf.add_n(losses)

    def backward(x, s):
        with tf.GradientTape() as tape:
            losses, _, _ = unroller._unroll(x, s, instance, seed, tf.constant(0),
                                            problem.loss)
            total = tf.add_n(losses)
        return total, tape.gradient(total, variables)

    copies = [tf.Variable(v) for v in variables]    # the trainer's weights stay untouched
    meta_opt = type(trainer.meta_opt).from_config(trainer.meta_opt.get_config())
    meta_opt.build(copies)
    meta_grads = [tf.random.normal(v.shape, stddev=1e-3) for v in copies]

    def meta_update():
        meta_opt.apply_gradients(zip(meta_grads, copies))
        return copies[0][0]

    fns = {"optimizee gradients": (wrap(gradients), (params,)),
           "optimizer updates": (wrap(updates), (state,)),
           "forward unroll": (wrap(forward), (params, state)),
           "forward + BPTT": (wrap(backward), (params, state)),
           "meta-update": (wrap(meta_update, False), ())}
    return {name: (lambda f=f, a=a: tf.nest.map_structure(lambda t: t.numpy(), f(*a)))
            for name, (f, a) in fns.items()}


def _selection_floor(trainer, params, instance, horizon, count):
    """One compiled loop of ``count * horizon`` forward steps (no tape, no curve)."""
    opt, problem = trainer.opt, trainer.optimizee
    grads_fn = make_grads_fn(problem, 1.0 / 128)

    @tf.function(jit_compile=compiles(trainer.recipe, problem))
    def run(x, s):
        def body(k, x, s):
            batch = problem.sample_batch(tf.stack([k, k + 1]))
            _, grads, _ = grads_fn(x, instance, batch)
            steps, s = opt.update(grads, s, x)
            return k + 1, [p + d for p, d in zip(x, steps)], s
        _, x, _ = tf.while_loop(lambda k, *_: k < count * horizon, body,
                                (tf.constant(0), x, s))
        return x
    state = initial_state(opt, params, tf.constant([0, 1]))
    return lambda: [t.numpy() for t in run(list(params), state)]


def _spread(values):
    return f"{np.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def benchmark_setting(which, mnist_problem, unroll=100, repeats=3, progress=print):
    trainer = _setting(which, mnist_problem, unroll)
    seed = stateless_seed(trainer.seed, 0)
    instance = trainer.optimizee.sample_instance(seed)
    params = trainer.optimizee.init_params(seed + [0, 1], instance)
    params, state, instance, step = trainer.unroller.start(params, instance, seed + [0, 3])
    rate = matmul_flops()
    floors = flop_floors(truncation_products(trainer, params), rate)
    flops, floor_shaped, floor_1024 = floors["truncation"]
    out = {"setting": which, "unroll": unroll, "matmul_1024_gflops": rate / 1e9,
           "truncation_gflop": flops / 1e9, "truncation_floor_ms": 1e3 * floor_shaped,
           "truncation_floor_1024_ms": 1e3 * floor_1024,
           "part_floors_ms": {part: 1e3 * v[1] for part, v in floors.items()}}

    def truncation():
        return float(step(params, state, instance, seed, tf.constant(0),
                          tf.constant(1.0))[2])
    horizon, count = trainer.eval_horizon, trainer.model_selection.instances
    floor_fn = _selection_floor(trainer, params, instance, horizon, count)
    timed = {"truncation": truncation,
             "episode": lambda: trainer.run_episode(1),
             "selection": lambda: trainer.score(horizon),
             "selection floor": floor_fn}
    timed.update(_parts(trainer, params, state, instance, seed))
    for fn in timed.values():
        fn()                                # trace and warm up
    samples = {name: [] for name in timed}
    for _ in range(repeats):                # rounds: every part measured in each round
        for name, fn in timed.items():
            samples[name].append(median_time(fn, 1, 0))
    t = {name: float(np.median(v)) for name, v in samples.items()}
    per_episode = max(1, unroll // trainer.truncation)
    episode_floor = per_episode * floor_shaped
    every = trainer.eval_every
    out.update({f"{name.replace(' ', '_').replace('+', 'and')}_ms": 1e3 * v
                for name, v in t.items()})
    out["spread_ms"] = {name: [1e3 * x for x in v] for name, v in samples.items()}
    out.update(truncation_over_floor=t["truncation"] / floor_shaped,
               truncation_over_floor_1024=t["truncation"] / floor_1024,
               selection_over_floor=t["selection"] / t["selection floor"],
               episode_over_floor=t["episode"] / episode_floor,
               episode_with_selection_over_floor=(t["episode"] + t["selection"] / every) / (
                   episode_floor + t["selection floor"] / every))
    if progress:
        ms = lambda name: _spread([1e3 * x for x in samples[name]])  # noqa: E731
        progress(f"[perf] {which} (T=20, {count} held-out, unroll {unroll}): truncation "
                 f"{ms('truncation')} ms vs FLOP floor {1e3 * floor_shaped:.1f} ms at its "
                 f"shapes' rate ({out['truncation_over_floor']:.2f}x) / "
                 f"{1e3 * floor_1024:.1f} ms at the 1024^2 rate {rate / 1e9:.0f} GFLOP/s "
                 f"({out['truncation_over_floor_1024']:.2f}x); {flops / 1e9:.2f} GFLOP")
        progress(f"[perf] {which}: selection {ms('selection')} ms vs forward-only floor "
                 f"{ms('selection floor')} ms ({out['selection_over_floor']:.2f}x); episode "
                 f"{ms('episode')} ms vs {per_episode} x truncation floor "
                 f"{1e3 * episode_floor:.0f} ms ({out['episode_over_floor']:.2f}x); with 1/"
                 f"{every} selection {out['episode_with_selection_over_floor']:.2f}x")
        floor = lambda part: 1e3 * floors[part][1]  # noqa: E731
        parts = "; ".join(f"{name} {ms(name)} ms (floor {floor(name):.1f})" for name in
                          ("optimizee gradients", "optimizer updates"))
        progress(f"[perf] {which} truncation parts: {parts}; forward unroll "
                 f"{ms('forward unroll')} ms; forward + BPTT {ms('forward + BPTT')} ms; "
                 f"so BPTT backward {1e3 * (t['forward + BPTT'] - t['forward unroll']):.1f} "
                 f"ms (floor {floor('BPTT backward'):.1f}); the meta-update alone "
                 f"{ms('meta-update')} ms")
    return out


def benchmark_meta_training(mnist_problem, unroll=100, repeats=3, progress=print):
    return [benchmark_setting(which, mnist_problem, unroll, repeats, progress)
            for which in SETTINGS]
