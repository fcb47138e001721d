"""Training an unrolled model on the Lasso loss (Fig. 6), shared by ``run.lasso``.

LISTA, StepLISTA and ALISTA are trained progressively (:mod:`model_based.progressive`,
task ``lasso``: loss ``1/4 ||A x_T - y||^2 + lam ||x_T||_1`` summed over the batch, the
original's factor) on the data set's training split; the validation metric is the mean
Lasso objective.  An epoch is 100 steps (the original's 12,800 training samples in
batches of 128) in both presets; ``--preset=quick`` stops a stage after at most 10 epochs.
"""
import os

from model_based.factory import build_model, load_unrolled, model_class
from model_based.progressive import ProgressiveTrainer
from open_l2o_tf import device, keras_files
from open_l2o_tf.data import sparse_recovery
from open_l2o_tf.errors import UserError


def train_or_load(name, data_dir, *, lam, num_layers, workdir, preset, seed=0, load=None,
                  steps_per_epoch=None, tb=None, jit_compile=True, progress=print,
                  strategy=None):
    """Returns ``(model, info)``; ``strategy``: a ``tf.distribute`` strategy or None
    (:class:`model_based.progressive.ProgressiveTrainer`)."""
    if load:
        model = load_unrolled(load, expected=name)
        if model.num_layers < num_layers:
            raise UserError(f"--load file {load} holds a {model.num_layers}-layer {name}, "
                            f"--num_layers={num_layers} asks for more")
        return model, {"train_seconds": 0.0, "train_steps": 0}
    train = sparse_recovery.load(data_dir, "train")
    val = sparse_recovery.load(data_dir, "val")
    cls = model_class(name)
    # a lasso_only model's lam is the Lasso weight; the others start from theta = 0.4 / L
    model = build_model(name, train.A, train.W, num_layers, lam=lam if cls.lasso_only else 0.4)
    quick = preset == "quick"
    trainer = ProgressiveTrainer(
        model, (train.y, train.x), (val.y, val.x), task="lasso", lam=lam,
        steps_per_epoch=steps_per_epoch or 100,
        max_epochs=10 if quick else None, val_batch_size=1280,
        ckpt_dir=os.path.join(workdir, "ckpt"), tb=tb, seed=seed,
        jit_compile=jit_compile and device.default_jit(cls.support_selection, strategy),
        progress=progress,
        strategy=strategy)
    trainer.train(num_layers)
    path = os.path.join(workdir, "model.keras")
    keras_files.save_model(model, path)
    return model, {"train_seconds": trainer.state.get("train_seconds", 0.0),
                   "train_steps": trainer.train_steps}
