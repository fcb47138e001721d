"""Speed report: ``python -m run.perf --what=model_based|model_free|training|networks|all
[--out=F]``.

``--what=networks`` times ``run.nn_training``'s step on the MNIST MLPs and ConvNet
(``--networks``) with every classic and learned optimizer against ``keras.Model.fit`` with
the same optimizer on the same network, measured in turn in one process (the learned ones
with the original's weights from ``--original_dir`` where a file exists).

``--what=keras_fit`` runs a learned optimizer (``--fit_optimizer``, weights from ``--load``,
else freshly initialised) under ``keras.Model.fit`` as a ``LearnedKerasOptimizer`` and in
``run.nn_training``'s own loop on ``--fit_problem`` for ``--measure_steps`` steps (same
initial weights, minibatches and initial state): both loss curves (``--plot``: a PNG of
them) and both ms per step, measured in turn in one process.

``--what=training`` times the progressive trainer's real training step (the previous
one-call-per-step trainer and the compiled-epoch trainer with the stage-1 cache, in the
same run) at the quick and paper sizes (``--sizes``) and extrapolates a whole Figure 5 cell
against its matmul floor; with ``--compare_shrink`` it times the step with the current and
the previous shrinkage implementation in turn (``--rounds`` rounds, medians) instead.  ``all`` is model_based + model_free.

Times are medians of repeated compiled calls and are reported as ratios measured in the same
run (against the machine's float32 matmul throughput, against an Adam step), because the
machines are shared and noisy.
"""
from absl import flags

from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError
from . import common

flags.DEFINE_enum("what", "all", ["model_based", "model_free", "training", "networks",
                                  "keras_fit", "all"],
                  "What to time (training: the progressive trainer, old vs new).")
flags.DEFINE_list("sizes", ["quick", "paper"], "training: sizes (quick 64x128 T=8, paper "
                  "256x512 T=16).")
flags.DEFINE_integer("measure_steps", 20, "training: steps timed per depth and stage; "
                     "keras_fit: the steps of each curve.")
flags.DEFINE_bool("old", True, "training: also time the previous trainer.")
flags.DEFINE_bool("compare_shrink", False, "training: instead of the previous trainer, time "
                  "the step with the current shrinkage (float arithmetic) and with the "
                  "previous one (boolean masks, tf.where) in turn, --rounds rounds.")
flags.DEFINE_integer("rounds", 5, "training --compare_shrink: rounds (medians reported).",
                     lower_bound=1)
flags.DEFINE_string("models", None, "Comma-separated model names (model_based: default "
                    "all; training: default the classes that say perf_training, ALISTA, "
                    "LISTA-CPSS, LISTA).")
flags.DEFINE_integer("m", 256, "Rows of A.", lower_bound=1)
flags.DEFINE_integer("n", 512, "Columns of A.", lower_bound=1)
flags.DEFINE_integer("num_layers", 16, "Layers.", lower_bound=1)
flags.DEFINE_integer("batch", 128, "Batch size.", lower_bound=1)
flags.DEFINE_string("mnist_dir", None, "MNIST idx folder (model_free; random data if absent).")
flags.DEFINE_list("networks", ["mnist_mlp_sigmoid", "mnist_mlp_relu", "mnist_conv"],
                  "networks: the problems timed.")
flags.DEFINE_list("optimizers", ["sgd", "adam", "rmsprop", "l2o_dm", "l2o_rnnprop",
                                 "l2o_enhanced", "l2o_scale"], "networks: the optimizers.")
flags.DEFINE_string("original_dir", None, "networks: folder with the original Open-L2O "
                    "files (dm.cw.l2l-0, rnnprop.rp.l2l-0, dm_cl_il.cw.l2l-0); else the "
                    "learned optimizers are freshly initialised (same cost).")
flags.DEFINE_enum("fit_optimizer", "l2o_scale", ["l2o_dm", "l2o_rnnprop", "l2o_enhanced",
                                                 "l2o_scale"],
                  "keras_fit: the learned optimizer.")
flags.DEFINE_enum("fit_problem", "mnist_mlp_relu", ["mnist_mlp_sigmoid", "mnist_mlp_relu",
                                                   "mnist_conv"],
                  "keras_fit: the network (MNIST test split as run.nn_training's learned "
                  "optimizers, from --mnist_dir or $OPEN_L2O_DATA_DIR/mnist).")
common.define_load_flag("keras_fit: the learned optimizer's weights (our .npz, an original "
                        "Open-L2O file or a catalogue name); default freshly initialised.")
flags.DEFINE_integer("fit_seed", 0, "keras_fit: the run seed (initial weights, minibatches, "
                     "initial state).", lower_bound=0)
flags.DEFINE_string("plot", None, "keras_fit: also write a PNG of both loss curves here.")
flags.DEFINE_string("out", None, "Also write the figures to this JSON file.")
FLAGS = flags.FLAGS


def validate():
    """Before minutes of measuring: the model names and that --out can be written."""
    if FLAGS.out is not None:
        common.check_writable_file(FLAGS.out, "--out")
    if FLAGS.plot is not None:
        common.check_writable_file(FLAGS.plot, "--plot")
    if FLAGS.load is not None:
        if FLAGS.what != "keras_fit":
            raise UserError(f"--load applies to --what=keras_fit, not --what={FLAGS.what}")
        import model_free  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        common.check_load_flag(FLAGS.load, FLAGS.fit_optimizer)
    if FLAGS.models:
        from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
        with registry.deferred_imports():   # the model names; TensorFlow after the checks
            import model_based  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        for model in FLAGS.models.split(","):
            if model not in registry.MODELS:
                raise UserError(f"--models: unknown model {model!r}; expected names from "
                                f"{', '.join(sorted(registry.MODELS))}")
        if FLAGS.what == "model_free":
            raise UserError("--models applies to --what=model_based or all, not model_free")


def main(argv):
    del argv
    report = {}
    if FLAGS.what in ("model_based", "all"):
        from model_based.perf import benchmark_model_based, default_models  # pylint: disable=import-outside-toplevel
        from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
        models = FLAGS.models.split(",") if FLAGS.models else list(default_models())
        for model in models:
            registry.get("model", model)
        report["model_based"] = benchmark_model_based(models, FLAGS.m, FLAGS.n,
                                                      FLAGS.num_layers, FLAGS.batch)
        print(f"[perf] machine float32 matmul: {report['model_based']['matmul_gflops']:.1f} "
              f"GFLOP/s")
    if FLAGS.what == "training":
        from model_based.perf import TRAINING_SIZES, benchmark_training, training_models  # pylint: disable=import-outside-toplevel
        from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
        for size in FLAGS.sizes:
            if size not in TRAINING_SIZES:
                raise UserError(f"--sizes must name {sorted(TRAINING_SIZES)}, got {size!r}")
        if FLAGS.measure_steps <= 0:
            raise UserError(f"--measure_steps must be a positive integer, got "
                            f"{FLAGS.measure_steps}")
        models = FLAGS.models.split(",") if FLAGS.models else list(training_models())
        for model in models:
            registry.get("model", model)
        if FLAGS.compare_shrink:
            from model_based.perf import compare_shrinkage  # pylint: disable=import-outside-toplevel
            report["training"] = compare_shrinkage(models, FLAGS.sizes, FLAGS.batch,
                                                   FLAGS.measure_steps, FLAGS.rounds)
        else:
            report["training"] = benchmark_training(models, FLAGS.sizes, FLAGS.batch,
                                                    FLAGS.measure_steps, old=FLAGS.old)
            print(f"[perf] machine float32 matmul: "
                  f"{report['training']['matmul_gflops']:.1f} GFLOP/s")
    if FLAGS.what == "networks":
        from model_free.measure.perf import NETWORK_OPTIMIZERS, NETWORK_PROBLEMS, benchmark_networks  # pylint: disable=import-outside-toplevel
        for value, allowed, flag in ((FLAGS.networks, NETWORK_PROBLEMS + ("cifar_conv",),
                                      "networks"),
                                     (FLAGS.optimizers, NETWORK_OPTIMIZERS, "optimizers")):
            for item in value:
                if item not in allowed:
                    raise UserError(f"--{flag} must name {', '.join(allowed)}, got {item!r}")
        report["networks"] = benchmark_networks(FLAGS.mnist_dir, FLAGS.original_dir,
                                                FLAGS.networks, FLAGS.optimizers,
                                                FLAGS.measure_steps)
    if FLAGS.what == "keras_fit":
        report["keras_fit"] = _keras_fit()
    if FLAGS.what in ("model_free", "all"):
        from model_free.measure.perf import benchmark_model_free  # pylint: disable=import-outside-toplevel
        report["model_free"] = benchmark_model_free(FLAGS.mnist_dir)
    if FLAGS.out:
        olog.atomic_write_json(FLAGS.out, report)


def _keras_fit():
    import model_free  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    from model_free.measure.perf import benchmark_keras_fit  # pylint: disable=import-outside-toplevel
    from model_free.meta.training import build_optimizer  # pylint: disable=import-outside-toplevel
    from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.optimizees import make_optimizee  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.plotting import plot_matching_curves  # pylint: disable=import-outside-toplevel
    name = FLAGS.fit_optimizer
    if FLAGS.load:
        learned = pretrained.load_optimizer(FLAGS.load, expected=name)[1]
    else:
        learned = build_optimizer(name, synthetic=False)
    # the MNIST test split, as run.nn_training trains a network with a learned optimizer
    problem = make_optimizee(FLAGS.fit_problem, data_dir=FLAGS.mnist_dir, split="test")
    row = benchmark_keras_fit(learned, problem, FLAGS.measure_steps, seed=FLAGS.fit_seed)
    row["weights"] = FLAGS.load or "fresh"
    if FLAGS.plot:
        plot_matching_curves(
            {"toolbox loop": row["own_curve"], "model.fit": row["fit_curve"]}, FLAGS.plot,
            title=f"{name} on {FLAGS.fit_problem}: ms/step own {row['own_ms']:.1f}, "
                  f"model.fit {row['fit_ms']:.1f}", ylabel="loss (new iterate, fresh batch)")
    return row


if __name__ == "__main__":
    common.main_wrapper(main, validate)
