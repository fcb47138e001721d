"""Lasso minimisation (Fig. 6): one optimizer on a Lasso test set, modified relative loss (19).

    python -m run.lasso --optimizer=fista --setting=lasso_25x50 --data_dir=DIR
    python -m run.lasso --optimizer=lista --preset=quick --workdir=/tmp/lasso_lista

Problem: ``f(x) = 1/2 ||A x - y||^2 + lam ||x||_1`` with the data set's shared ``A`` and one
``y`` per test sample, ``lam = 0.005``; ``x_0 = 0``.  Metric: the modified relative loss
``R_k = E[f(x_k) - f*] / E[f*]`` (paper Eq. 19), ``f*`` from 2,000 FISTA iterations, for
``k = 0 .. --iterations``.

* Classic (``ista``, ``fista``, ``gd``, ``adam``, ``rmsprop``): run directly.  GD/Adam/RMSProp
  use lr 1e-3 (the paper's) and, by default, the original code's gradient: its ``problems.lasso``
  takes ``reduce_mean`` over a batch of 128 problems, so every instance's gradient carries a
  1/128 factor (``--grad_reduction=batch``, ``--grad_batch=128``); ``mean`` divides by the
  whole test set's size instead, ``sum`` gives every instance its own gradient.  RMSProp is
  TF1's ``tf.train.RMSPropOptimizer``: accumulator initialised to 1.0
  (``--rmsprop_accumulator``; Keras 3 starts it at 0), which with the small 1/128 gradients
  makes the figure's flat start and late drop.
* Model-based (the unrolled models whose registry entry serves ``lasso``: ``lista``,
  ``step_lista``, ``alista``): trained progressively on the data
  set's training split with the Lasso loss, then ``--num_layers`` layers followed by FISTA
  iterations up to ``--iterations`` (the dotted continuation of Fig. 6).
* Model-free (the learned update rules that serve ``lasso``: ``l2o_dm``, ``l2o_rnnprop``,
  ``l2o_enhanced``): meta-trained on Lasso instances
  built from the training split (or ``--load``-ed), then run for ``--iterations`` steps.

Without ``--data_dir`` the data set is generated into ``WORKDIR/data`` (paper sizes, or small
sizes with ``--preset=quick``).
"""
import os
import time

import numpy as np
from absl import flags

from open_l2o_tf import logging as olog
from open_l2o_tf import reference, registry
from open_l2o_tf.errors import UserError
from . import common

# the model names; their modules (TensorFlow) wait until the flags are checked
# (common.quiet_tensorflow_import imports them)
with registry.deferred_imports(__name__ == "__main__"):
    import model_based  # noqa: F401,E402  pylint: disable=wrong-import-position,unused-import
import model_free  # noqa: F401,E402  pylint: disable=wrong-import-position,unused-import
import open_l2o_tf.classic  # noqa: F401,E402  pylint: disable=wrong-import-position
from open_l2o_tf.classic.named import proximal_names, transform_names  # noqa: E402  pylint: disable=wrong-import-position

# the registry's entries that serve run.lasso (info ``commands``), by kind
OPTIMIZERS = common.define_method_flag("optimizer", "lasso", "fista", "The optimizer.",
                                       kinds=("classic", "model", "learned"))
flags.DEFINE_enum("setting", "lasso_25x50", ["lasso_5x10", "lasso_25x50"],
                  "Problem size (used to generate data when --data_dir is not given).")
flags.DEFINE_string("data_dir", None, "A directory written by run.make_data for a Lasso "
                    "setting; default: generate into WORKDIR/data.")
flags.DEFINE_integer("iterations", 1000, "Iterations of the optimizer (Fig. 6: 1,000).",
                     lower_bound=1)
flags.DEFINE_float("lam", None, "Lasso lambda (default: the data set's, 0.005).")
flags.DEFINE_float("lr", None, "Learning rate of gd/adam/rmsprop (default 1e-3).")
flags.DEFINE_enum("grad_reduction", "batch", ["batch", "mean", "sum"],
                  "gd/adam/rmsprop: per-instance gradient / --grad_batch (the original's "
                  "reduce_mean over a batch of 128), gradient of the mean over the whole "
                  "test set, or per-instance gradient.")
flags.DEFINE_integer("grad_batch", 128, "Batch of the original's reduce_mean "
                     "(--grad_reduction=batch).", lower_bound=1)
flags.DEFINE_float("rmsprop_accumulator", 1.0, "Initial RMSProp accumulator (1.0: TF1's "
                   "tf.train.RMSPropOptimizer, the original's; 0: Keras 3).", lower_bound=0.0)
flags.DEFINE_integer("test_size", None, "Use only the first N test samples (default all).",
                     lower_bound=1)
flags.DEFINE_integer("num_layers", 16, "Layers of the model-based optimizers.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Model-based training: steps per epoch "
                     "(100 in both presets: the original's 12,800 training samples / batch "
                     "128).", lower_bound=1)
common.define_meta_flags(quick_episodes=40, random_scale=False, meta_lr=False)
common.define_model_selection_flag()
flags.DEFINE_enum("meta_train_instances", "fresh", ["fresh", "fixed"],
                  "Learned optimizers: meta-train on 128 training instances drawn afresh "
                  "every episode from x_0 = 0 (fresh), or on one fixed batch, the first 128 "
                  "training instances, from x_0 ~ N(0, 0.01^2), as the original's "
                  "problems.lasso_fixed (fixed).")
flags.DEFINE_enum("ista_step", "frobenius", ["frobenius", "spectral"],
                  "Step of ISTA/FISTA (and of the FISTA continuation of lista/alista): "
                  "1/||A||_F^2 (reproduces the paper's Fig. 6 values) or 1/||A||_2^2.")
flags.DEFINE_bool("jit", True, "Compile hot loops with XLA.")
common.define_common_flags("runs/lasso")
common.define_strategy_flags()
common.bound_flags(positive=["lr", "lam"])
common.define_safeguard_flags()
FLAGS = flags.FLAGS

QUICK_SIZES = {"num_train": 4096, "num_val": 512, "num_test": 256}


def load_data(data_dir, workdir, setting="lasso_25x50", preset="paper", seed=0):
    """``(data_dir, test)``: the Lasso data set of ``data_dir``, or (``data_dir=None``) one
    of ``setting`` generated once into ``workdir/data`` (small sizes with the quick
    ``preset``)."""
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    if data_dir is None:
        data_dir = os.path.join(workdir, "data")
        if not os.path.exists(os.path.join(data_dir, "meta.json")):
            sizes = QUICK_SIZES if preset == "quick" else {}
            print(f"[lasso] generating {setting} data into {data_dir}", flush=True)
            sparse_recovery.generate(setting, data_dir, seed=seed, **sizes)
    elif not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir} does not exist; make it with "
                        f"python -m run.make_data --setting={setting} --out={data_dir}")
    test = sparse_recovery.load(data_dir, "test")
    return data_dir, test


def run_classic(name, A, y, lam, iterations, *, ista_step="frobenius", lr=None,
                grad_reduction="batch", grad_batch=128, rmsprop_accumulator=1.0, jit=True):
    """Loss curve ``(iterations + 1, B)`` of a classic optimizer from ``x_0 = 0``: a proximal
    solver (ISTA, FISTA, any entry registered with ``proximal=True``, at the ``ista_step``
    step) or a learning-rate transform (``transform=True``); the keyword arguments are the
    flags of the same names (``--jit``: ``jit``)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import metrics  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import classic  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import ista_fista, transforms  # pylint: disable=import-outside-toplevel
    if name in proximal_names("lasso"):
        solver = registry.get("classic", name)
        step = ista_fista.step_size(A.astype(np.float32), ista_step)
        _, curve = solver(A, y, lam, iterations, step=step)
        return curve.numpy()
    transform = classic.make_transform(name, lr if lr is not None else 1e-3,
                                       initial_accumulator=rmsprop_accumulator)
    reduction = grad_reduction
    if reduction == "batch":   # the original: reduce_mean over a batch of --grad_batch
        transform = transforms.chain(transforms.scale(1.0 / grad_batch), transform)
        reduction = "sum"
    A_t = tf.constant(A, tf.float32)
    y_t = tf.constant(y, tf.float32)

    def loss_fn(params, batch):
        del batch
        return metrics.lasso_objective(A_t, params[0], y_t, lam)

    x0 = tf.zeros([y.shape[0], A.shape[1]], tf.float32)
    _, curve = transforms.run_optimizer(transform, loss_fn, [x0], iterations,
                                        reduction=reduction,
                                        jit_compile=jit)
    return curve.numpy()


def run_model_based(name, data_dir, A, y, lam, iterations, *, workdir, tb=None,
                    num_layers=16, preset="paper", seed=0, load=None, steps_per_epoch=None,
                    jit=True, ista_step="frobenius", safeguard=None, strategy=None):
    """Trains (or loads) an unrolled model on the Lasso loss, then continues with FISTA;
    ``(curve, info)``.  The keyword arguments are the flags of the same names;
    ``safeguard``: the options of :func:`common.safeguard_options` (None: off)."""
    from model_based import lasso_training  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import ista_fista  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import metrics  # pylint: disable=import-outside-toplevel
    if iterations < num_layers:
        raise UserError(f"--iterations ({iterations}) must be at least --num_layers "
                        f"({num_layers})")
    model, info = lasso_training.train_or_load(
        name, data_dir, lam=lam, num_layers=num_layers, workdir=workdir, preset=preset,
        seed=seed, load=load, steps_per_epoch=steps_per_epoch, tb=tb,
        jit_compile=jit, strategy=strategy)
    outputs = model(y.astype(np.float32), num_layers=num_layers)
    f_layers = [np.zeros(y.shape[0], np.float64) + metrics.lasso_objective(
        A, np.zeros((y.shape[0], A.shape[1]), np.float32), y, lam).numpy()]
    f_layers += [metrics.lasso_objective(A, x, y, lam).numpy() for x in outputs]
    _, tail = ista_fista.fista_from(A, y, lam, outputs[-1], iterations - num_layers,
                                    step=ista_fista.step_size(A.astype(np.float32), ista_step))
    curve = np.concatenate([np.stack(f_layers), tail.numpy()[1:]], axis=0)
    if safeguard is not None:
        from model_based import safeguard as msg  # pylint: disable=import-outside-toplevel
        info = dict(info, safeguard=msg.compare(
            model, y, iterations, safeguard["rule"], A=A, lam=lam, energy=safeguard["energy"],
            shadow=safeguard["shadow"], fallback=safeguard["fallback"]))
    return curve, info


def run_learned(name, data_dir, A, y, lam, iterations, *, workdir, tb=None, preset="paper",
                seed=0, load=None, meta_episodes=None, selection=None, safeguard=None,
                strategy=None, deterministic=None, train_instances="fresh",
                lstm_init="sonnet"):
    """Meta-trains (or loads) a learned optimizer on Lasso instances, then runs it;
    ``(curve, info)``.  The keyword arguments are the flags of the same names
    (``selection``: ``--model_selection``; ``safeguard``: the options of
    :func:`common.safeguard_options`, None: off)."""
    from model_free.meta import lasso_training  # pylint: disable=import-outside-toplevel
    if safeguard is not None:
        safeguard = {key: safeguard[key] for key in ("rule", "energy", "shadow", "fallback")}
    return lasso_training.train_and_run(
        name, data_dir, A, y, lam, iterations, workdir=workdir, preset=preset,
        seed=seed, load=load, meta_episodes=meta_episodes, tb=tb,
        selection=selection, safeguard=safeguard, strategy=strategy,
        deterministic=deterministic, train_instances=train_instances,
        lstm_init=lstm_init)


def safeguard_options():
    """The ``--safeguard_*`` options with ``--safeguard=on``, else None."""
    return (common.safeguard_options(["ista", "fista"], "fista") if FLAGS.safeguard == "on"
            else None)


def kind_of(name):
    """``"classic"``, ``"model"`` or ``"learned"``: the registry table of ``--optimizer``."""
    return registry.kind_of(name, ("classic", "model", "learned"))


def validate():
    """Checks that need no TensorFlow: flags that do not apply, --load, --data_dir, the
    workdir and the run identity."""
    name = FLAGS.optimizer
    kind = kind_of(name)
    learned = registry.serving("lasso", ("learned",))
    if common.check_load_flag(FLAGS.load, name) == "model":
        common.quiet_tensorflow_import()
        import model_based  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        from open_l2o_tf.keras_files import check_unrolled_file  # pylint: disable=import-outside-toplevel
        check_unrolled_file(FLAGS.load, expected=name)
    rated = transform_names("lasso")
    if FLAGS.lr is not None and name not in rated:
        raise UserError(f"--lr applies to {'/'.join(rated)} only, not --optimizer={name}")
    if FLAGS.meta_episodes is not None and kind != "learned":
        raise UserError(f"--meta_episodes applies to {'/'.join(learned)} only, not "
                        f"--optimizer={name}")
    common.check_meta_training_flags(("lstm_init", "meta_train_instances"), kind == "learned",
                                     FLAGS.load, name)
    if FLAGS.safeguard == "on":
        if kind == "classic":
            raise UserError(f"--safeguard=on needs a learned optimizer (one of "
                            f"{', '.join(registry.serving('lasso', ('model', 'learned')))}), "
                            f"got --optimizer={name}")
        common.check_safeguard_flags(["ista", "fista"], "fista")
    if FLAGS.data_dir is not None:
        common.check_data_dir(FLAGS.data_dir)
    common.check_strategy_flags(kind != "classic" and FLAGS.load is None,
                                f"--optimizer={name} trains nothing" if kind == "classic"
                                else "--load trains nothing")
    common.prepare_workdir(FLAGS.workdir, extra=common.data_identity(FLAGS.data_dir))


def main(argv):
    del argv
    workdir = FLAGS.workdir
    data_dir, test = load_data(FLAGS.data_dir, workdir, FLAGS.setting, FLAGS.preset,
                               FLAGS.seed)
    setting = test.meta.get("setting", FLAGS.setting)
    lam = FLAGS.lam if FLAGS.lam is not None else float(test.meta.get("lam") or 0.005)
    y = test.y if FLAGS.test_size is None else test.y[:FLAGS.test_size]
    A = test.A
    name = FLAGS.optimizer
    tb = olog.TensorBoard(os.path.join(workdir, "tb"))

    from open_l2o_tf.classic import ista_fista  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import metrics  # pylint: disable=import-outside-toplevel
    start = time.time()
    f_star = ista_fista.lasso_fstar(A, y, lam).numpy()
    print(f"[lasso] {setting}: {y.shape[0]} test problems {A.shape[0]}x{A.shape[1]}, "
          f"lam={lam}, E[f*]={f_star.mean():.5g} ({time.time() - start:.1f} s)", flush=True)

    train_seconds, train_steps, extra = 0.0, 0, {}
    kind = kind_of(name)
    if kind == "classic":
        curve_f = run_classic(name, A, y, lam, FLAGS.iterations, ista_step=FLAGS.ista_step,
                              lr=FLAGS.lr, grad_reduction=FLAGS.grad_reduction,
                              grad_batch=FLAGS.grad_batch,
                              rmsprop_accumulator=FLAGS.rmsprop_accumulator, jit=FLAGS.jit)
    elif kind == "model":
        strategy = common.strategy()
        common.deterministic()   # --deterministic on a GPU: deterministic kernels
        curve_f, info = run_model_based(
            name, data_dir, A, y, lam, FLAGS.iterations, workdir=workdir, tb=tb,
            num_layers=FLAGS.num_layers, preset=FLAGS.preset, seed=FLAGS.seed,
            load=FLAGS.load, steps_per_epoch=FLAGS.steps_per_epoch, jit=FLAGS.jit,
            ista_step=FLAGS.ista_step, safeguard=safeguard_options(), strategy=strategy)
        train_seconds, train_steps = info.get("train_seconds", 0.0), info.get("train_steps", 0)
        extra["unrolled_layers"] = FLAGS.num_layers
    else:
        curve_f, info = run_learned(
            name, data_dir, A, y, lam, FLAGS.iterations, workdir=workdir, tb=tb,
            preset=FLAGS.preset, seed=FLAGS.seed, load=FLAGS.load,
            meta_episodes=FLAGS.meta_episodes, selection=FLAGS.model_selection,
            safeguard=safeguard_options(), strategy=common.strategy(),
            deterministic=common.deterministic(),
            train_instances=FLAGS.meta_train_instances, lstm_init=FLAGS.lstm_init)
        train_seconds, train_steps = info.get("train_seconds", 0.0), info.get("train_steps", 0)
        from model_free.meta import training  # pylint: disable=import-outside-toplevel
        extra["meta_training"] = training.summary(info)
    curve = metrics.relative_loss(curve_f, f_star).numpy()
    if kind != "classic" and "safeguard" in info:
        extra["safeguard"] = common.lasso_safeguard_record(info["safeguard"], f_star, workdir,
                                                           title=f"{name} on {setting}")
    bad = metrics.first_nonfinite(curve)
    if bad is not None:
        print(f"[lasso] warning: the loss became non-finite at iteration {bad}", flush=True)
    for k in sorted({0, 1, 10, 100, len(curve) - 1}):
        if k < len(curve):
            tb.scalar(f"lasso/{setting}/{name}/relative_loss", curve[k], k)
    tb.flush()
    paper = reference.lookup("lasso", setting, name)
    record = olog.make_result("lasso", name, setting, FLAGS.preset, "relative_loss", curve,
                              paper=paper, train_seconds=train_seconds,
                              train_steps=train_steps, config=common.flag_values_dict(),
                              f_star_mean=float(f_star.mean()),
                              setup={"m": int(A.shape[0]), "n": int(A.shape[1]),
                                     "iterations": FLAGS.iterations,
                                     "test_samples": int(y.shape[0]),
                                     **({"layers": FLAGS.num_layers} if kind == "model" else {})},
                              **extra)
    common.write_results(workdir, record)
    marks = sorted({k for k in (0, 1, 16, 100, len(curve) - 1) if k < len(curve)})
    print("[lasso] " + "  ".join(f"R[{k}]={curve[k]:.3g}" for k in marks)
          + f"  paper R[1000]={paper if paper is None else f'{paper:.3g}'}", flush=True)
    print(f"[lasso] wrote {os.path.join(workdir, 'results.json')}", flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate)
