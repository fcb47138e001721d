"""Sparse recovery (Fig. 5): train one unrolled model progressively, test NMSE per layer.

    python -m run.sparse_recovery --model=alista --data_dir=DATA --workdir=W
    python -m run.sparse_recovery --model=lista_cpss --preset=quick --workdir=W

``--preset=quick`` generates a 64x128 noiseless data set into ``WORKDIR/data`` (unless
``--data_dir`` is given), trains 8 layers with 100 steps per epoch and at most 20 epochs per
stage.  Re-running the same command resumes after the last finished stage
(``WORKDIR/ckpt``).  Writes ``results.json`` after every layer, ``model.keras``, ``tb/``.
"""
import os
import time

from absl import flags

from open_l2o_tf import logging as olog
from open_l2o_tf import keras_files, reference, registry
from open_l2o_tf.errors import UserError
from . import common

# the model names; their modules (TensorFlow) wait until the flags are checked
# (common.quiet_tensorflow_import imports them)
with registry.deferred_imports(__name__ == "__main__"):
    import model_based  # noqa: F401,E402  pylint: disable=wrong-import-position,unused-import


# the registry's unrolled models that serve run.sparse_recovery (info ``commands``)
MODELS = common.define_method_flag("model", "sparse_recovery", "alista", "The unrolled model.",
                                   kinds=("model",))
flags.DEFINE_string("data_dir", None, "A data directory from run.make_data (default with "
                    "--preset=quick: generated into WORKDIR/data).")
flags.DEFINE_integer("num_layers", None, "Layers T (paper 16, quick 8).", lower_bound=1)
flags.DEFINE_float("lr", 5e-4, "Base learning rate (stages use lr, 0.2 lr, 0.02 lr).")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (paper 400, quick 100).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Training batch size.", lower_bound=1)
flags.DEFINE_integer("patience", 5, "Early-stopping patience (epochs).", lower_bound=1)
flags.DEFINE_integer("max_epochs", None, "Cap on epochs per stage (paper none, quick 20); "
                     "results.json states the cap in its budget ('paper preset, at most N "
                     "epochs a stage') and the record shows such a run as short.",
                     lower_bound=1)
flags.DEFINE_enum("keep", "last", ["last", "best"], "Weights kept at the end of a stage "
                  "(last: the original).")
flags.DEFINE_enum("decay_mode", "grad", ["grad", "lr"], "0.3^age on gradients (original) "
                  "or on the step.")
flags.DEFINE_float("model_lam", 0.4, "Initial threshold scale: theta_0 = model_lam / L.")
flags.DEFINE_float("tista_sigma2", 0.0, "TISTA noise variance.")
flags.DEFINE_float("glista_alti", None, "GLISTA: initial gain and overshoot gate scales "
                   "alpha_t = beta_t.  Default: the original's 5 with --preset=paper, 0 "
                   "with --preset=quick (GLISTA then starts as LISTA-CPSS with W = A/L and "
                   "training opens the gates; from 5, Adam's ~lr-sized steps cannot close "
                   "the initially harmful gates within the quick budget).")
flags.DEFINE_enum("glista_gain", "relu", ["relu", "inv", "exp", "sigm", "none"],
                  "GLISTA gain-gate function.")
flags.DEFINE_bool("faithful_init", True, "LISTA-CP/CPSS: W_t = A as the original "
                  "(False: A / L).")
flags.DEFINE_bool("jit", None, "XLA-compile the training step (default: on a GPU yes, on "
                  "a CPU only for models without support selection; XLA's top-k on CPU is "
                  "4x slower than TF's).")
common.define_common_flags("runs/sparse_recovery")
common.define_strategy_flags()
common.bound_flags(positive=["lr", "model_lam"], nonnegative=["tista_sigma2", "glista_alti"])
common.define_safeguard_flags()
common.define_sparse_safeguard_flags()
FLAGS = flags.FLAGS
PAPER_LAYERS = 16     # the depth of the paper's Fig. 5 numbers

QUICK = dict(m=64, n=128, num_train=8192, num_val=1024, num_test=1024)


def validate():
    """Checks before any work: the workdir, --load, --data_dir, the run identity."""
    workdir = FLAGS.workdir
    common.check_strategy_flags(FLAGS.load is None, "--load trains nothing")
    common.check_workdir(workdir)
    if FLAGS.load is not None:
        from open_l2o_tf.keras_files import check_unrolled_file  # pylint: disable=import-outside-toplevel
        check_unrolled_file(FLAGS.load, expected=FLAGS.model)
    if FLAGS.data_dir is not None:
        common.check_data_dir(FLAGS.data_dir)
    if FLAGS.data_dir is None and FLAGS.preset != "quick":
        raise UserError("--data_dir is required with --preset=paper; make one with "
                        "python -m run.make_data --setting=noiseless --out=DIR")
    if FLAGS.safeguard == "on":
        common.check_safeguard_flags(["ista", "fista"], "fista")
    common.check_run_identity(workdir, extra={"model_class": registry.MODELS[FLAGS.model],
                                              **common.data_identity(FLAGS.data_dir)})


def load_data(data_dir, workdir, preset, seed=0):
    """``(train, val, test, data_dir)``: the splits of ``data_dir``; with ``data_dir=None``
    and the quick preset, a 64x128 noiseless set generated (once) into ``workdir/data``."""
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    if data_dir is None:
        if preset != "quick":
            raise UserError("--data_dir is required with --preset=paper; make one with "
                            "python -m run.make_data --setting=noiseless --out=DIR")
        data_dir = os.path.join(workdir, "data")
        if not os.path.exists(os.path.join(data_dir, "meta.json")):
            sparse_recovery.generate("noiseless", data_dir, seed=seed, **QUICK)
    splits = [sparse_recovery.load(data_dir, split) for split in ("train", "val", "test")]
    return (*splits, data_dir)


def build(name, train_split, num_layers, **options):
    """The unrolled model ``name`` for the data's ``A`` (and ``W``) with the command's
    options (the model's constructor takes those it names)."""
    from model_based.factory import build_model  # pylint: disable=import-outside-toplevel
    return build_model(name, train_split.A, train_split.W, num_layers, **options)


def training_bytes(params, m, n, num_layers, batch_size):
    """``{part: bytes}`` of progressive training (float32): the model's ``params``, its
    gradients and Adam's two slots, the checkpoint and kept-weights copies, and the
    activations the gradient tape keeps (about four ``(batch, m + n)`` tensors a layer)."""
    return {"model": 4 * params, "gradients and Adam slots": 3 * 4 * params,
            "checkpoint copies": 2 * 4 * params,
            "activations": 4 * 4 * batch_size * (m + n) * num_layers}


def check_memory(name, splits, num_layers, batch_size, options):
    """Refuses a depth or data size whose training cannot fit in this machine's memory,
    before the model is built (:func:`open_l2o_tf.memory.check_fits`).  The parameter count
    of ``num_layers`` layers is extrapolated (quadratically: some models' layers grow with
    depth) from models of 1, 2 and 3 layers; the paper's sizes (up to 16 layers of
    512 x 1024) are known to fit and are not estimated."""
    from open_l2o_tf import memory  # pylint: disable=import-outside-toplevel
    m, n = splits[0].A.shape
    if num_layers <= 16 and m * n <= 512 * 1024:
        return None
    counts = [build(name, splits[0], depth, **options).count_params() for depth in (1, 2, 3)]
    first, second = counts[1] - counts[0], counts[2] - 2 * counts[1] + counts[0]
    params = (counts[0] + (num_layers - 1) * first
              + (num_layers - 1) * (num_layers - 2) // 2 * second)
    parts = training_bytes(params, m, n, num_layers, batch_size)
    parts["data"] = sum(s.y.nbytes + s.x.nbytes for s in splits)
    return memory.check_fits(f"--num_layers={num_layers} (a {m}x{n} {name})", parts,
                             what="needs")


def load(path, name, test, data_dir):
    """A trained model from ``--load``, checked against the data's size."""
    from model_based.factory import load_unrolled  # pylint: disable=import-outside-toplevel
    model = load_unrolled(path, expected=name, flag="--load")
    if (model.m, model.n) != tuple(test.A.shape):
        raise UserError(f"--load file {path} holds a {model.m}x{model.n} model, "
                        f"the data in {data_dir} is {test.A.shape[0]}x{test.A.shape[1]}")
    return model


def train(model, train_split, val, test, workdir, tb, *, on_layer_end=None, **settings):
    """Progressive training (resumable from ``workdir/ckpt``), then ``model.keras``; returns
    ``(curve, seconds, steps, at_layer_end, state)`` (``state``: the trainer's
    ``progress.json`` content).  ``settings``: the trainer's arguments
    (lr, patience, ..., strategy)."""
    from model_based.progressive import ProgressiveTrainer, evaluate  # pylint: disable=import-outside-toplevel
    trainer = ProgressiveTrainer(model, (train_split.y, train_split.x), (val.y, val.x),
                                 (test.y, test.x), ckpt_dir=os.path.join(workdir, "ckpt"),
                                 tb=tb, **settings)
    trainer.train(model.num_layers, on_layer_end=on_layer_end)
    curve = evaluate(model, test.y, test.x, tb=tb)
    at_layer_end = list(trainer.state.get("test_metric", []))
    keras_files.save_model(model, os.path.join(workdir, "model.keras"))
    return (curve, trainer.state.get("train_seconds", 0.0), trainer.train_steps, at_layer_end,
            trainer.state)


def trainer_settings():
    """The progressive trainer's arguments from the flags and the preset."""
    from model_based import factory  # pylint: disable=import-outside-toplevel
    strategy = common.strategy()   # before the device query of use_jit
    common.deterministic()         # --deterministic on a GPU: deterministic kernels
    return dict(lr=FLAGS.lr, patience=FLAGS.patience, batch_size=FLAGS.batch_size,
                steps_per_epoch=common.preset_value(FLAGS.preset, 400, 100,
                                                    FLAGS.steps_per_epoch),
                max_epochs=common.preset_value(FLAGS.preset, None, 20, FLAGS.max_epochs),
                keep=FLAGS.keep, decay_mode=FLAGS.decay_mode, seed=FLAGS.seed,
                jit_compile=factory.use_jit(FLAGS.model, FLAGS.jit, strategy),
                progress=olog_progress(), strategy=strategy)


def budget_text(preset, max_epochs):
    """The run's budget as the record shows it: ``"paper preset"``, or with a cap on the
    epochs of a stage ``"paper preset, at most N epochs a stage"`` (a capped paper run is
    *short*, never *within*: :func:`open_l2o_tf.reproduction.row_from_result`)."""
    return f"{preset} preset" + (f", at most {max_epochs} epochs a stage" if max_epochs
                                 else "")


def training_summary(state, max_epochs):
    """The keys ``results.json`` carries about how the stages stopped: the ``budget`` text,
    ``max_epochs``, ``capped_stages``, the last finished stage, why it stopped and its
    validation NMSE's improvement an epoch over its last epochs (dB an epoch; positive:
    still improving) (:func:`model_based.progressive.stop_summary`)."""
    from model_based.progressive import stop_summary  # pylint: disable=import-outside-toplevel
    return {"budget": budget_text(FLAGS.preset, max_epochs),
            **stop_summary(state or {}, max_epochs)}


def report(name, setting, test, curve, paper, seconds, steps, workdir):
    """The per-layer table on stdout (the paper's value beside the last layer at depth 16)."""
    print(f"\n{name} on {setting} ({test.A.shape[0]}x{test.A.shape[1]}), "
          f"test NMSE (dB, per-sample mean over {len(test.y)} samples):")
    print(f"{'layer':>5} {'ours':>9} {'paper':>9}")
    for i, value in enumerate(curve):
        ref = f"{paper:9.1f}" if (paper is not None and i == len(curve) - 1
                                  and len(curve) == PAPER_LAYERS) else \
            f"{'':>9}"
        print(f"{i + 1:>5} {value:9.2f} {ref}")
    print(f"trained {seconds:.0f} s, {steps} steps; wrote {workdir}/results.json", flush=True)


def main(argv):
    del argv
    from model_based.progressive import evaluate  # pylint: disable=import-outside-toplevel
    quick = FLAGS.preset == "quick"
    workdir = FLAGS.workdir
    train_split, val, test, data_dir = load_data(FLAGS.data_dir, workdir, FLAGS.preset,
                                                 FLAGS.seed)
    setting = test.meta.get("setting", "custom")
    glista_alti = common.preset_value(FLAGS.preset, 5.0, 0.0, FLAGS.glista_alti)
    options = dict(lam=FLAGS.model_lam, faithful_init=FLAGS.faithful_init,
                   sigma2=FLAGS.tista_sigma2, alti=glista_alti, gain=FLAGS.glista_gain)
    num_layers = FLAGS.num_layers or (8 if quick else 16)
    if FLAGS.load is None:
        check_memory(FLAGS.model, (train_split, val, test), num_layers, FLAGS.batch_size,
                     options)
    model = build(FLAGS.model, train_split, num_layers, **options)
    paper = reference.lookup("sparse_recovery", setting, FLAGS.model)
    tb = olog.TensorBoard(os.path.join(workdir, "tb"))
    config = common.flag_values_dict()
    config["data_dir"] = data_dir
    config["glista_alti"] = glista_alti

    max_epochs = common.preset_value(FLAGS.preset, None, 20, FLAGS.max_epochs)

    def record(curve, seconds, steps, at_layer_end, complete, **extra):
        # "curve": the per-layer NMSE of the model as it is now (the final model when
        # complete); "curve_at_layer_end": each layer's NMSE at the end of its own training
        return olog.make_result("sparse_recovery", FLAGS.model, setting, FLAGS.preset,
                                "nmse_db", curve,
                                paper=paper if len(curve) == PAPER_LAYERS else None,
                                train_seconds=seconds, train_steps=steps, config=config,
                                layers=len(curve), paper_layers=PAPER_LAYERS,
                                curve_at_layer_end=at_layer_end, complete=complete,
                                setup={"m": int(test.A.shape[0]), "n": int(test.A.shape[1]),
                                       "layers": int(model.num_layers),
                                       "test_samples": int(len(test.y))}, **extra)

    if FLAGS.load:
        model = load(FLAGS.load, FLAGS.model, test, data_dir)
        curve, seconds, steps = evaluate(model, test.y, test.x, tb=tb), 0.0, 0
        at_layer_end = None
    else:
        def on_layer_end(depth, state):
            del depth
            common.write_results(workdir, record(state["test_metric"],
                                                 state.get("train_seconds", 0.0),
                                                 state.get("global_step", 0),
                                                 state["test_metric"], False,
                                                 **training_summary(state, max_epochs)))

        curve, seconds, steps, at_layer_end, state = train(
            model, train_split, val, test, workdir, tb, on_layer_end=on_layer_end,
            **trainer_settings())
    extra = {} if FLAGS.load else training_summary(state, max_epochs)
    if FLAGS.safeguard == "on":
        extra["safeguard"] = common.sparse_safeguard(
            model, test.y, test.x, workdir, title=f"{FLAGS.model} on {setting}",
            **common.safeguard_options(["ista", "fista"], "fista"))
    common.write_results(workdir, record(curve, seconds, steps, at_layer_end, True, **extra))
    report(FLAGS.model, setting, test, curve, paper, seconds, steps, workdir)


def olog_progress():
    start = time.time()

    def say(line):
        print(f"{line}  [{time.time() - start:.0f} s]", flush=True)
    return say


if __name__ == "__main__":
    common.main_wrapper(main, validate)
