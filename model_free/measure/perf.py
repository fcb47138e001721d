"""Speed of the learned optimizers (``run.perf --what=model_free``).

On the MNIST sigmoid MLP (batch 128): the median time of one compiled step (minibatch,
gradient, update) with every registered learned optimizer of the ``update`` interface (one
name per class, built by its class for a network: ``for_problem(False)``; the paper's
L2O-DM, L2O-RNNprop, L2O-Scale) over the time of the same step with Adam,
measured in the same run, and the time of one meta-training truncation (20 steps with
BPTT and the meta-update); then :func:`model_free.measure.perf_meta.benchmark_meta_training`:
L2O-RNNprop on Lasso 25x50, L2O-DM and L2O-Scale on the MLP, the episode, the truncation and the
model selection each beside its floor (the FLOP floor of the truncation at its shapes'
and at the 1024x1024 matmul rate, the forward-only compiled loop of the selection), and a
profile of the truncation's parts.  :func:`benchmark_networks` (``--what=networks``): the step of
``run.nn_training`` on the MLPs and the ConvNet against ``keras.Model.fit`` with the same
optimizer on the same network.  :func:`benchmark_keras_fit` (``--what=keras_fit``): a
learned optimizer under ``model.fit`` (``LearnedKerasOptimizer``) against the toolbox's own
loop, same weights, minibatches and initial state: both loss curves and both step times.
"""
import time

import numpy as np
import tensorflow as tf

from model_free.measure.perf_meta import benchmark_meta_training
from model_free.meta.meta_trainer import MetaTrainer
from model_free.meta.training import build_optimizer, optimizer_class
from model_free.rules.dm import L2ODM
from open_l2o_tf import registry
from open_l2o_tf.classic.first_order import adam
from open_l2o_tf.optimizees.networks import MnistMLP
from open_l2o_tf.perf_utils import median_time


def _problem(data_dir):
    try:
        from open_l2o_tf.data.datasets import load_mnist  # pylint: disable=import-outside-toplevel
        images, labels = load_mnist(data_dir)
    except Exception:  # pylint: disable=broad-except
        rng = np.random.default_rng(0)  # timing does not depend on the pixel values
        images = rng.random((10000, 28, 28, 1), np.float32)
        labels = rng.integers(0, 10, 10000).astype(np.int32)
    return MnistMLP(images, labels, "sigmoid", batch_size=128)


def timed_optimizers():
    """The registered ``update``-interface names, the first of each class
    (``l2o_enhanced`` is the L2O-DM class)."""
    names, classes = [], set()
    for name in registry.names("learned", interface="update"):
        if optimizer_class(name) not in classes:
            classes.add(optimizer_class(name))
            names.append(name)
    return names


def benchmark_model_free(data_dir=None, repeats=30, progress=print):
    problem = _problem(data_dir)
    params = problem.init_params(0)
    results = {}

    def timed_step(update, state):
        @tf.function(jit_compile=True)
        def step(params, state):
            batch = problem.sample_batch(tf.constant([1, 2]))
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = problem.loss(params, {}, batch)
            grads = tape.gradient(loss, params)
            steps, state = update(grads, state, params)
            return [p + s for p, s in zip(params, steps)], state
        return median_time(lambda: tf.nest.map_structure(
            lambda t: t.numpy(), step(params, state)), repeats)

    transform = adam(1e-3)
    t_adam = timed_step(transform.update, transform.init(params))
    results["adam_step_ms"] = 1e3 * t_adam
    for name in timed_optimizers():
        opt = build_optimizer(name, synthetic=False)
        t = timed_step(opt.update, opt.initial_state(params))
        results[f"{name}_step_ms"] = 1e3 * t
        results[f"{name}_over_adam"] = t / t_adam
    trainer = MetaTrainer(L2ODM(), problem, unroll=20, truncation=20, progress=None)
    state = trainer.opt.initial_state(params)

    def truncation():
        out = trainer.unroller.single(params, state, {}, tf.constant([3, 4]),
                                      tf.constant(0), tf.constant(1.0))
        return float(out[2])

    results["truncation_20_steps_ms"] = 1e3 * median_time(truncation, max(3, repeats // 5), 1)
    results["truncation_over_adam_step"] = results["truncation_20_steps_ms"] / results[
        "adam_step_ms"]
    if progress:
        steps = "; ".join(f"{name} step {results[f'{name}_step_ms']:.2f} ms "
                          f"({results[f'{name}_over_adam']:.2f}x Adam)"
                          for name in timed_optimizers())
        progress(f"[perf] MNIST MLP batch 128: Adam step {results['adam_step_ms']:.2f} ms; "
                 f"{steps}; one L2O-DM meta-training truncation (20 steps) "
                 f"{results['truncation_20_steps_ms']:.1f} ms "
                 f"({results['truncation_over_adam_step']:.0f}x an Adam step)")
    results["meta_training"] = benchmark_meta_training(problem, progress=progress)
    return results


NETWORK_PROBLEMS = ("mnist_mlp_sigmoid", "mnist_mlp_relu", "mnist_conv")
NETWORK_OPTIMIZERS = ("sgd", "adam", "rmsprop", "l2o_dm", "l2o_rnnprop", "l2o_enhanced",
                      "l2o_scale")


def _keras_network(problem):
    """The Keras model of ``problem`` (same layers, same loss)."""
    import keras  # pylint: disable=import-outside-toplevel
    layers = [keras.Input(tuple(problem.images.shape[1:]))]
    if isinstance(problem, MnistMLP):
        layers += [keras.layers.Flatten(),
                   keras.layers.Dense(int(problem.shapes[0][1]), problem.activation),
                   keras.layers.Dense(10)]
    else:
        for filters, kernel in ((16, 3), (32, 5)):
            layers += [keras.layers.Conv2D(filters, kernel, problem.stride),
                       keras.layers.BatchNormalization(epsilon=1e-3), keras.layers.ReLU(),
                       keras.layers.MaxPool2D(2)]
        layers += [keras.layers.Flatten(), keras.layers.Dense(10)]
        if problem.relu_logits:
            layers.append(keras.layers.ReLU())
    return keras.Sequential(layers)


def _keras_optimizer(name, learned):
    """``model.fit``'s optimizer for ``name``: the Keras classic one at lr 1e-3, or the
    learned optimizer as a :class:`model_free.keras_optimizer.LearnedKerasOptimizer`
    (L2O-Scale in its coupled form); None when it has no Keras form."""
    import keras  # pylint: disable=import-outside-toplevel
    from model_free.keras_optimizer import LearnedKerasOptimizer  # pylint: disable=import-outside-toplevel
    classic = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
               "rmsprop": keras.optimizers.RMSprop}
    if name in classic:
        return classic[name](1e-3)
    try:
        return LearnedKerasOptimizer(learned)
    except Exception:  # pylint: disable=broad-except
        return None


def _learned(name, original_dir):
    """A learned optimizer: the original's weights where a file exists, else fresh."""
    import os  # pylint: disable=import-outside-toplevel
    from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
    files = {"l2o_dm": "dm.cw.l2l-0", "l2o_rnnprop": "rnnprop.rp.l2l-0",
             "l2o_enhanced": "dm_cl_il.cw.l2l-0"}
    path = os.path.join(original_dir or "", files.get(name, ""))
    if original_dir and name in files and os.path.isfile(path):
        return pretrained.load_optimizer(path)[1], "original"
    return build_optimizer(name, synthetic=False), "fresh"


class _KerasTimer:
    """``model.fit``'s mean step between the first and the last ``on_train_batch_end``."""

    def __init__(self, model, problem, steps):
        import keras  # pylint: disable=import-outside-toplevel
        self.model, self.steps = model, steps
        idx = np.random.default_rng(0).integers(0, problem.images.shape[0], 128 * steps)
        self.x = tf.gather(problem.images, idx).numpy()
        self.y = tf.gather(problem.labels, idx).numpy()
        self.times = []
        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                timer.times.append(time.perf_counter())
        self.callback = Callback()

    def __call__(self):
        self.times = []
        self.model.fit(self.x, self.y, batch_size=128, epochs=1, verbose=0, shuffle=False,
                       callbacks=[self.callback])
        # the mean step from the first step's end to the last's (ours: the whole loop / steps)
        return (self.times[-1] - self.times[0]) / (len(self.times) - 1)


def benchmark_networks(data_dir=None, original_dir=None, problems=NETWORK_PROBLEMS,
                       optimizers=NETWORK_OPTIMIZERS, steps=20, rounds=3, progress=print):
    """Per network and optimizer: the ms per step of ``run.nn_training``'s own loop (the
    compiled ``run_optimizer`` of the classic optimizers, ``meta_trainer.evaluate``'s runner
    of the learned ones, each with its XLA choice ``use_xla``) and of ``keras.Model.fit`` on
    the same network with the same optimizer (batch 128), the two measured in turn
    ``rounds`` times (medians), and their ratio."""
    import keras  # pylint: disable=import-outside-toplevel
    from model_free.meta import meta_trainer  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import first_order, transforms  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.optimizees import make_optimizee, use_xla  # pylint: disable=import-outside-toplevel
    rows = []
    for pname in problems:
        try:
            problem = make_optimizee(pname, data_dir=data_dir)
        except Exception:  # pylint: disable=broad-except
            rng = np.random.default_rng(0)  # timing does not depend on the pixel values
            shape = (10000, 32, 32, 3) if pname.startswith("cifar") else (10000, 28, 28, 1)
            problem = make_optimizee(pname, images=rng.random(shape, np.float32),
                                     labels=rng.integers(0, 10, 10000).astype(np.int32))
        jit = use_xla(problem)
        params = problem.init_params([0, 17])
        for name in optimizers:
            if name in ("sgd", "adam", "rmsprop"):
                transform = getattr(first_order, name)(1e-3)
                weights = "-"

                def ours(transform=transform):
                    _, curve = transforms.run_optimizer(
                        transform, problem.batch_losses, params, steps,
                        batch_fn=problem.seeded_batch, record="post", jit_compile=jit, seed=1)
                    return curve.numpy()
                learned = None
            else:
                learned, weights = _learned(name, original_dir)

                def ours(learned=learned):
                    return meta_trainer.evaluate(learned, problem, steps, {}, params, seed=1,
                                                 grad_scale=1.0, jit_compile=jit)
            optimizer = _keras_optimizer(name, learned)
            reference = name if optimizer is not None else "adam"
            if optimizer is None:
                optimizer = keras.optimizers.Adam(1e-3)
            model = _keras_network(problem)
            model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(
                from_logits=True))
            fit = _KerasTimer(model, problem, steps)
            ours()
            fit()
            t_ours, t_fit = [], []
            for _ in range(rounds):
                start = time.perf_counter()
                ours()
                t_ours.append((time.perf_counter() - start) / steps)
                t_fit.append(fit())
            row = dict(problem=pname, optimizer=name, weights=weights, xla=jit,
                       keras_optimizer=reference, keras_jit=bool(model.jit_compile),
                       ours_ms=1e3 * float(np.median(t_ours)),
                       fit_ms=1e3 * float(np.median(t_fit)))
            row["ratio"] = row["ours_ms"] / row["fit_ms"]
            rows.append(row)
            if progress:
                progress(f"[perf] {pname:18s} {name:13s} ours {row['ours_ms']:8.2f} ms/step "
                         f"(xla {'on' if jit else 'off'})  model.fit({reference}) "
                         f"{row['fit_ms']:8.2f} ms/step  ratio {row['ratio']:.2f}")
    return rows


# --- a learned optimizer under ``model.fit`` against the toolbox's own loop (Fig. 8) -------

def keras_seed(seed):
    """The stateless seed of the initial state's random draws (L2O-Scale's initial rates)
    that the toolbox's runner uses for run ``seed`` with ``seeded_state=True``
    (:func:`model_free.meta.evaluation.make_runner`): pass it as
    ``LearnedKerasOptimizer(..., seed=keras_seed(seed))`` to start from the same state."""
    from model_free.meta.evaluation import stateless_seed  # pylint: disable=import-outside-toplevel
    return [int(v) for v in (stateless_seed(seed, 0) + [0, 3]).numpy()]


def own_loop_curve(learned, problem, steps, seed=0, jit_compile=False):
    """The toolbox's own loop of ``run.nn_training`` (Fig. 8) for run ``seed``: initial
    weights ``problem.init_params([seed, 17])``, step t's gradient on minibatch
    ``sample_batch([seed, t + 1])``, the loss of the new iterate on
    ``sample_batch([seed + 7919, t + 1])``; the initial state seeded (:func:`keras_seed`).
    Returns the ``(steps + 1,)`` loss curve."""
    from model_free.meta.evaluation import make_runner, stateless_seed  # pylint: disable=import-outside-toplevel
    run = make_runner(learned, problem, steps, 1.0, jit_compile=jit_compile,
                      seeded_state=True)
    curve = run(problem.init_params([seed, 17]), {}, tf.constant(seed, tf.int32),
                stateless_seed(seed, 0))
    return curve.numpy()[:, 0]


def fit_batches(problem, steps, seed=0):
    """Images and labels of the toolbox's minibatches of run ``seed`` in step order (step
    t's gradient minibatch ``sample_batch([seed, t + 1])``), for ``model.fit(...,
    batch_size=problem.batch_size, shuffle=False)``."""
    batches = [problem.sample_batch(tf.constant([seed, t + 1], tf.int32))
               for t in range(steps)]
    return (tf.concat([b["images"] for b in batches], 0).numpy(),
            tf.concat([b["labels"] for b in batches], 0).numpy())


def keras_model_of(problem, optimizer, seed=0):
    """The Keras model of ``problem`` compiled with ``optimizer`` (mean softmax
    cross-entropy), its trainable variables set to the toolbox's initial weights of run
    ``seed``."""
    import keras  # pylint: disable=import-outside-toplevel
    model = _keras_network(problem)
    for var, value in zip(model.trainable_variables, problem.init_params([seed, 17])):
        if tuple(var.shape) != tuple(value.shape):
            raise ValueError(f"Keras variable {var.path} {tuple(var.shape)} does not match "
                             f"the optimizee's {tuple(value.shape)}")
        var.assign(value)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fit_curve(model, problem, steps, seed=0):
    """``model.fit`` over the toolbox's minibatches of run ``seed``
    (:func:`fit_batches`), the loss recorded as the toolbox's loop records it (the new
    weights on ``sample_batch([seed + 7919, t + 1])`` after step t; the first value at the
    initial weights on ``sample_batch(stateless_seed(seed, 0))``).  Returns the
    ``(steps + 1,)`` curve."""
    import keras  # pylint: disable=import-outside-toplevel
    from model_free.meta.evaluation import stateless_seed  # pylint: disable=import-outside-toplevel

    @tf.function
    def post_loss(params, t):
        batch = problem.sample_batch(tf.stack([tf.constant(seed + 7919, tf.int32), t]))
        return problem.instance_losses(params, {}, batch)[0]

    def params():
        return [tf.convert_to_tensor(v) for v in model.trainable_variables]

    first = problem.instance_losses(params(), {},
                                    problem.sample_batch(stateless_seed(seed, 0)))[0]
    curve = [float(first)]

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            curve.append(float(post_loss(params(), tf.constant(batch + 1, tf.int32))))

    x, y = fit_batches(problem, steps, seed)
    model.fit(x, y, batch_size=problem.batch_size, epochs=1, shuffle=False, verbose=0,
              callbacks=[Record()])
    return np.array(curve)


def benchmark_keras_fit(learned, problem, steps=500, seed=0, rounds=3, progress=print):
    """A learned optimizer under ``model.fit`` (:class:`LearnedKerasOptimizer`) against the
    toolbox's own loop on ``problem``, same initial weights, minibatches and initial state:
    both loss curves (:func:`fit_curve`, :func:`own_loop_curve` without XLA, whose float
    random draws differ from TensorFlow's) and both ms per step, measured in turn
    ``rounds`` times in this process (medians): ``model.fit`` (no recording callback) and
    the toolbox's loop as ``run.nn_training`` runs it (``meta_trainer.evaluate``, XLA as
    ``use_xla``) and without XLA."""
    from model_free.keras_optimizer import LearnedKerasOptimizer  # pylint: disable=import-outside-toplevel
    from model_free.meta import meta_trainer  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.optimizees import use_xla  # pylint: disable=import-outside-toplevel
    own = own_loop_curve(learned, problem, steps, seed)
    model = keras_model_of(problem, LearnedKerasOptimizer(learned, seed=keras_seed(seed)),
                           seed)
    fit = fit_curve(model, problem, steps, seed)
    jit = use_xla(problem)
    params = problem.init_params([seed, 17])
    timed = keras_model_of(problem, LearnedKerasOptimizer(learned, seed=keras_seed(seed)),
                           seed)
    fit_timer = _KerasTimer(timed, problem, steps)
    fit_timer.x, fit_timer.y = fit_batches(problem, steps, seed)

    def loop(jit_compile):
        start = time.perf_counter()
        meta_trainer.evaluate(learned, problem, steps, {}, params, seed=seed,
                              grad_scale=1.0, jit_compile=jit_compile)
        return (time.perf_counter() - start) / steps

    loop(jit)
    loop(False)
    fit_timer()
    times = {"own": [], "own_nojit": [], "fit": []}
    for _ in range(rounds):
        times["own"].append(loop(jit))
        times["own_nojit"].append(loop(False))
        times["fit"].append(fit_timer())
    row = dict(problem=problem.name, optimizer=type(learned).__name__, steps=steps,
               seed=seed, own_curve=own.tolist(), fit_curve=fit.tolist(),
               max_abs_diff=float(np.max(np.abs(own - fit))),
               max_rel_diff=float(np.max(np.abs(own - fit) / np.abs(own))),
               own_xla=jit, rounds=rounds,
               **{f"{k}_ms": 1e3 * float(np.median(v)) for k, v in times.items()})
    row["fit_over_own"] = row["fit_ms"] / row["own_ms"]
    if progress:
        progress(f"[perf] {problem.name} {row['optimizer']} {steps} steps: loss at step "
                 f"{steps} own loop {own[-1]:.6f} model.fit {fit[-1]:.6f} (max |diff| "
                 f"{row['max_abs_diff']:.2e}, relative {row['max_rel_diff']:.2e}); ms/step "
                 f"own loop {row['own_ms']:.2f} (xla {'on' if jit else 'off'}), own loop "
                 f"without xla {row['own_nojit_ms']:.2f}, model.fit {row['fit_ms']:.2f}; "
                 f"model.fit / own {row['fit_over_own']:.2f}")
    return row
