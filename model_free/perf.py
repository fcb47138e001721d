"""Speed of the learned optimizers (``run.perf --what=model_free``).

On the MNIST sigmoid MLP (batch 128): the median time of one compiled step (minibatch,
gradient, update) with every registered learned optimizer of the ``update`` interface (one
name per class, built by its class for a network: ``for_problem(False)``; the paper's
L2O-DM, L2O-RNNprop, L2O-Scale) over the time of the same step with Adam,
measured in the same run, and the time of one meta-training truncation (20 steps with
BPTT and the meta-update).
"""
import numpy as np
import tensorflow as tf

from model_free.dm import L2ODM
from model_free.meta_trainer import MetaTrainer
from model_free.training import build_optimizer, optimizer_class
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
        out = trainer._truncation_fn(params, state, {}, tf.constant([3, 4]),  # pylint: disable=protected-access
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
    return results
