"""Neural-network training (Fig. 8): train MNIST networks with a classic or learned optimizer.

    python -m run.nn_training --optimizer=adam --problem=mnist_mlp_relu
    python -m run.nn_training --optimizer=l2o_dm --load=../shared/data/original_optimizers/dm.cw.l2l-0
    python -m run.nn_training --optimizer=l2o_rnnprop --preset=quick --workdir=W

Protocol (paper): 10,000 steps of batch 128, 10 runs (different initialisations and
minibatch orders), the mean training (minibatch) loss per step.  Learned optimizers are
meta-trained on the MNIST sigmoid MLP (unroll 100, truncations of 20) unless ``--load``
gives our checkpoint or an original Open-L2O file; they are then applied to ``--problem``.
SGD/Adam/RMSProp use lr 1e-3.  As the original, the learned optimizers are tested on the
MNIST *test* split (10k images) and the classic ones on the training split
(``--mnist_split``; recorded as ``mnist_split`` in results.json).  ``--preset=quick``: 500 steps, 2 runs, 30 meta-episodes.
Meta-training takes ``--strategy``: the network is copied to every replica and each
minibatch of 128 split over them (docs/scaling_out.md).
Data: ``--mnist_dir`` (the four idx files), else ``$OPEN_L2O_DATA_DIR``, else
tensorflow-datasets.
"""
import os

import numpy as np
from absl import flags

import model_free  # noqa: F401  registers the learned names (imports no TensorFlow)
import open_l2o_tf.classic  # noqa: F401  registers the classic names (no TensorFlow)
from open_l2o_tf import logging as olog
from open_l2o_tf import budgets, reference, registry, responsive
from open_l2o_tf.errors import UserError
from . import common

# the registry's entries that serve run.nn_training (info ``commands``)
OPTIMIZERS = common.define_method_flag("optimizer", "nn_training", "adam", "The optimizer.",
                                       kinds=("classic", "learned"))
flags.DEFINE_enum("problem", "mnist_mlp_sigmoid", ["mnist_mlp_sigmoid", "mnist_mlp_relu",
                                                   "mnist_conv", "mnist_conv_scale",
                                                   "cifar_conv"],
                  "The network to train (mnist_conv_scale: L2O-Scale's own test ConvNet, "
                  "batch normalisation in inference mode, gamma/beta not optimised).")
flags.DEFINE_string("mnist_dir", None, "Folder with the MNIST idx files (or CIFAR-10 "
                    "binary batches for cifar_conv).")
flags.DEFINE_integer("steps", None, "Training steps per run (paper 10,000, quick 500).",
                     lower_bound=1)
flags.DEFINE_integer("runs", None, "Independent runs (paper 10, quick 2).", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Learning rate of sgd/adam/rmsprop.")
common.define_meta_flags(quick_episodes=30)
flags.DEFINE_integer("unroll", None, "Meta-training horizon in steps per episode, a "
                     "multiple of --truncation: the learned optimizers without a curriculum of "
                     "their own (default 100 as the original; l2o_enhanced's curriculum sets "
                     "its horizons).  "
                     "Held-out model selection runs at the same horizon.", lower_bound=1)
flags.DEFINE_integer("truncation", 20, "Learned optimizers: meta-training steps per "
                     "truncation (one meta-update; the original's 20).", lower_bound=1)
common.define_model_selection_flag()
flags.DEFINE_float("rmsprop_accumulator", 1.0, "Initial RMSProp accumulator (1.0: TF1's, the "
                   "original's; 0: Keras 3).", lower_bound=0.0)
flags.DEFINE_enum("conv_logits", "relu", ["relu", "linear"],
                  "The ConvNets' output layer: relu (the original's problems.mnist_conv / "
                  "cifar_conv apply a ReLU to the logits, so an output unit can die and its "
                  "class stay at logit 0) or linear (no ReLU).")
flags.DEFINE_enum("conv_bn", "optimised", ["optimised", "fixed", "original"],
                  "The ConvNets' batch-normalisation gamma/beta: optimised (optimizee "
                  "parameters, the intended network), fixed (1 and 0, never updated) or "
                  "original (as the original's code: fixed for a learned optimizer, whose "
                  "meta.py mock.patch of tf.get_variable misses the tf.layers variables, "
                  "optimised for sgd/adam/rmsprop, which take every trainable variable).")
flags.DEFINE_enum("mnist_split", None, ["train", "test"],
                  "The split the optimizee is trained on (CIFAR-10 too).  Default as the "
                  "original: test (10k images) for the learned optimizers (util.get_config "
                  "with a loaded optimizer: mode='test'), train for sgd/adam/rmsprop.  "
                  "Meta-training always uses the training split.")
flags.DEFINE_integer("mnist_train_images", None,
                     "Train the optimizee on N images of the MNIST training split, the others "
                     "held out (the original's tf.contrib.learn load_mnist keeps 55,000: "
                     "read_data_sets holds out the FIRST 5,000 for validation, so it trains on "
                     "images 5,000-59,999); which are held out: --mnist_holdout.  Default all "
                     "60,000.", lower_bound=1, upper_bound=60000)
flags.DEFINE_enum("mnist_holdout", None, ["first", "last"],
                  "With --mnist_train_images=N: first (the default; the original's, "
                  "TensorFlow's read_data_sets) holds out the first 60,000 - N images and "
                  "trains on the last N; last trains on the first N (this toolbox's choice "
                  "before).")
flags.DEFINE_enum("loss_record", "post", ["post", "pre"],
                  "sgd/adam/rmsprop: the logged loss of step t: post (the new iterate on "
                  "step t's minibatch) or pre (the iterate the gradient is taken at, on its "
                  "minibatch: the cost_op fetched with the update in the original's "
                  "evaluate_dm.py).")
common.define_common_flags("runs/nn_training")
common.define_strategy_flags()
common.bound_flags(positive=["lr", "random_scale"])
FLAGS = flags.FLAGS


def learned(name):
    """Whether ``--optimizer=name`` is a learned optimizer (else a classic one)."""
    return registry.kind_of(name, ("classic", "learned")) == "learned"


def validate():
    """Checks that need no TensorFlow: flags that do not apply, --load, --mnist_dir, the
    workdir and the run identity."""
    name = FLAGS.optimizer
    common.check_load_flag(FLAGS.load, name)
    own = registry.serving("nn_training", ("learned",), curriculum=True)
    if FLAGS.unroll is not None and (not learned(name) or name in own):
        unrolled = [n for n in registry.serving("nn_training", ("learned",)) if n not in own]
        raise UserError(f"--unroll applies to {', '.join(unrolled)} (a curriculum sets the "
                        f"horizons of {', '.join(own) or 'none'}), not --optimizer={name}")
    if (FLAGS.unroll or 100) % FLAGS.truncation:
        raise UserError(f"--unroll {FLAGS.unroll or 100} must be a multiple of --truncation "
                        f"{FLAGS.truncation}")
    common.check_meta_training_flags(("lstm_init",), learned(name), FLAGS.load, name)
    for flag in ("meta_episodes", "meta_lr"):
        if getattr(FLAGS, flag) is not None and not learned(name):
            raise UserError(f"--{flag} applies to the learned optimizers only, not "
                            f"--optimizer={name}")
    if FLAGS.mnist_train_images is not None and (
            not FLAGS.problem.startswith("mnist")
            or (FLAGS.mnist_split or ("test" if learned(name) else "train")) != "train"):
        raise UserError("--mnist_train_images applies to an MNIST problem on the training "
                        "split")
    if FLAGS.mnist_holdout is not None and FLAGS.mnist_train_images is None:
        raise UserError("--mnist_holdout applies with --mnist_train_images only")
    if FLAGS.loss_record != "post" and learned(name):
        raise UserError(f"--loss_record applies to sgd/adam/rmsprop, not --optimizer={name}")
    if FLAGS.mnist_dir is not None and not os.path.isdir(FLAGS.mnist_dir):
        raise UserError(f"--mnist_dir {FLAGS.mnist_dir} "
                        f"{'is a file' if os.path.exists(FLAGS.mnist_dir) else 'does not exist'}"
                        "; expected a folder with the four MNIST idx files")
    common.check_strategy_flags(learned(name) and FLAGS.load is None,
                                f"--optimizer={name} trains nothing" if not learned(name)
                                else "--load trains nothing")
    common.prepare_workdir(FLAGS.workdir)
    common.read_test_runs(FLAGS.workdir)       # a broken record: refused before any work


def main(argv):
    del argv
    from open_l2o_tf import classic  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import transforms  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.optimizees import make_optimizee, use_xla  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import metrics  # pylint: disable=import-outside-toplevel
    name = FLAGS.optimizer
    steps = common.preset_value(FLAGS.preset, 10000, 500, FLAGS.steps)
    runs = common.preset_value(FLAGS.preset, 10, 2, FLAGS.runs)
    workdir = FLAGS.workdir
    tb = olog.TensorBoard(os.path.join(workdir, "tb"))
    is_learned = learned(name)
    split = FLAGS.mnist_split or ("test" if is_learned else "train")
    extra = {"relu_logits": FLAGS.conv_logits == "relu"} if "conv" in FLAGS.problem else {}
    if FLAGS.problem in ("mnist_conv", "cifar_conv"):
        extra["bn_affine"] = (FLAGS.conv_bn == "optimised"
                              or (FLAGS.conv_bn == "original" and not is_learned))
    if FLAGS.mnist_train_images:
        from open_l2o_tf.data import datasets  # pylint: disable=import-outside-toplevel
        images, labels = datasets.load_mnist(FLAGS.mnist_dir, split)
        images, labels = datasets.mnist_train_subset(images, labels, FLAGS.mnist_train_images,
                                                     FLAGS.mnist_holdout or "first")
        extra.update(images=images, labels=labels)
    problem = make_optimizee(FLAGS.problem, data_dir=FLAGS.mnist_dir, split=split, **extra)
    info = {"train_seconds": 0.0, "train_steps": 0}
    if is_learned:
        from model_free.meta import meta_trainer, training  # pylint: disable=import-outside-toplevel
        # meta-training always on the training split (the original's mode="train")
        train_problem = (problem if FLAGS.load or (FLAGS.problem == "mnist_mlp_sigmoid"
                                                   and split == "train")
                         else make_optimizee("mnist_mlp_sigmoid", data_dir=FLAGS.mnist_dir))
        budget = (budgets.paper_budget("nn_training", name) if FLAGS.preset == "paper"
                  else None)
        episodes = common.preset_value(FLAGS.preset, budget and budget.episodes, 30,
                                       FLAGS.meta_episodes)
        opt, info = training.meta_train_or_load(
            name, train_problem, synthetic=False, workdir=workdir, episodes=episodes,
            unroll=FLAGS.unroll or (budget.unroll if budget else 100),
            truncation=FLAGS.truncation, load=FLAGS.load, tb=tb, seed=FLAGS.seed,
            horizons=(100, 200) if FLAGS.preset == "quick" else None, budget=budget,
            random_scale=FLAGS.random_scale,
            meta_lr=common.meta_lr(budget),
            selection=FLAGS.model_selection or training.default_selection(FLAGS.preset),
            strategy=common.strategy(),
            deterministic=common.deterministic(), lstm_init=FLAGS.lstm_init)
    progress = olog.Progress(f"nn_training {name} {FLAGS.problem}", runs)
    jit = use_xla(problem)      # not for the convnets on a CPU (XLA's convolutions)
    if not is_learned:
        transform = classic.make_transform(name, FLAGS.lr,
                                           initial_accumulator=FLAGS.rmsprop_accumulator)

    def run_one(run):
        seed = FLAGS.seed * 1000 + run
        params = problem.init_params([seed, 17])
        # one compiled call of `steps` steps (minutes on the ConvNet): in a worker thread,
        # so Ctrl-C / SIGTERM stop the command at once
        if is_learned:
            # the first test run also logs the rule's effective step sizes (histograms)
            return responsive.call(meta_trainer.evaluate, opt, problem, steps, {}, params,
                                   seed=seed, grad_scale=1.0, jit_compile=jit,
                                   tb=tb if run == 0 else None)
        return responsive.call(transforms.run_optimizer, transform, problem.batch_losses,
                               params, steps, batch_fn=problem.seeded_batch,
                               record=FLAGS.loss_record, jit_compile=jit, seed=seed)[1]

    def show(k, curve):
        bad = metrics.first_nonfinite(curve)
        progress.update(k, force=True, final_loss=f"{curve[-1]:.4f}" + (
            "" if bad is None else f" (non-finite from step {bad})"))

    # each finished run is kept in WORKDIR/ckpt: an interrupted command resumes at the next
    curves, run_seconds = common.resumable_runs(workdir, runs, run_one, progress=show)
    nonfinite = [metrics.first_nonfinite(c) for c in curves]
    diverged = sorted(s for s in nonfinite if s is not None)
    if diverged:
        print(f"[nn_training] warning: {len(diverged)} of {runs} runs became non-finite (at "
              f"steps {', '.join(str(s) for s in diverged)}), so the mean curve is non-finite "
              f"from step {diverged[0]}", flush=True)
    mean = curves.mean(axis=0)
    for k in range(0, len(mean), 100):
        tb.scalar(f"nn/{FLAGS.problem}/{name}/loss", mean[k], k)
    tb.flush()
    paper = reference.lookup("nn_training", FLAGS.problem, name)
    tail = float(mean[-100:].mean())
    record = olog.make_result("nn_training", name, FLAGS.problem, FLAGS.preset, "loss", mean,
                              paper=paper, train_seconds=info.get("train_seconds", 0.0),
                              train_steps=info.get("train_steps", 0),
                              config=common.flag_values_dict(),
                              std_final=float(curves[:, -1].std()), mean_last100=tail,
                              mnist_split=split, eval_seconds=float(sum(run_seconds)),
                              run_seconds=[round(x, 1) for x in run_seconds],
                              final_per_run=[float(c[-1]) for c in curves],
                              nonfinite_step_per_run=nonfinite,
                              setup={"iterations": int(steps), "runs": int(runs)},
                              **({"meta_training": training.summary(info)}
                                 if is_learned else {}))
    common.write_results(workdir, record)
    print(f"[nn_training] {FLAGS.problem} {name}: loss[0]={mean[0]:.3f} "
          f"loss[{len(mean) - 1}]={mean[-1]:.4f} mean of last 100={tail:.4f} "
          f"(over {runs} runs)  paper={paper}", flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate)
