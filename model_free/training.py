"""Meta-train-or-load of a learned optimizer, shared by the command lines.

``l2o_dm``: L2O-DM; ``l2o_rnnprop``: L2O-RNNprop; ``l2o_enhanced``: L2O-DM trained with the
curriculum and imitation of Adam (L2O-enhanced); ``l2o_scale``: the hierarchical RNN of
L2O-Scale, meta-trained as the original's ``metaopt.py``: the log-ratio objective, RMSProp
(decay 0.9, epsilon 1e-20, accumulator starting at 1: :func:`tf1_rmsprop`), meta-gradients
clipped to ±1e4 (spec §5.3-5.4), meta learning rate 1e-6, the optimizer state carried from
one episode to the next (``MetaTrainer(carry_state=True)``).  The original's rate is the
default.  At that rate a short meta-training leaves the network near its initialisation (a
momentum/RMS-normalised update with per-coordinate rates drawn in [1e-6, 1e-2]); ``meta_lr``
raises it.  Measured on Rastrigin (docs/reproduction.md, Figure 7, 100-200 episodes of 100
steps): rate 1e-6 leaves the held-out score unchanged, 1e-3 brings the loss at step 1,000
close to the paper's (n = 2: 6.40, paper 6.0; n = 10: 67.7, paper 55) without the divergence
seen before the original's recipe (state carry, TF1 RMSProp) was in place.

Model selection (``selection``): ``"last_truncation"``, the original's (``train_dm.py``:
every 100 episodes for DM and L2O-enhanced, ``train_rnnprop.py``: every 10 for RNNprop, on
20 evaluation problems, scoring the last truncation of the horizon; the paper preset), or
``"horizon_mean"`` (every <= 10 episodes on 2 problems, the mean loss over the horizon; the
quick preset).  RNNprop's output is scaled by 0.01 on every problem as the original.
"""
import os
import time

import tensorflow as tf

from model_free import pretrained
from model_free.curriculum import Curriculum
from model_free.imitation import Imitation
from model_free.meta_trainer import MetaTrainer
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError

SCALE_META_LR = 1e-6
SELECTIONS = ("last_truncation", "horizon_mean")


def tf1_rmsprop(lr, optimizer, rho=0.9, epsilon=1e-20):
    """RMSProp as TF1's ``tf.train.RMSPropOptimizer`` that L2O-Scale's ``metaopt.py`` uses:
    decay 0.9, epsilon 1e-20 (its flag) and the mean-square accumulator starting at ONE (TF1
    initialises the slot with ones; Keras with zeros, which makes the first steps
    ``lr * g / sqrt(0.1 g^2)`` ~ 3 lr instead of ~ lr g).  Built on ``optimizer``'s
    trainable weights."""
    import keras  # pylint: disable=import-outside-toplevel
    meta = keras.optimizers.RMSprop(lr, rho=rho, epsilon=epsilon)
    meta.build(optimizer.trainable_variables)
    for v in meta.variables:
        if "velocit" in v.path or "velocit" in v.name:
            v.assign(tf.ones_like(v))
    return meta


def selection_settings(name, selection, episodes):
    """``MetaTrainer`` keyword arguments of a model-selection protocol."""
    if selection == "last_truncation":
        every, count = optimizer_class(name).original_selection
        return dict(selection=selection, eval_every=max(1, min(every, episodes)),
                    eval_instances=count)
    if selection == "horizon_mean":
        return dict(selection=selection, eval_every=max(1, min(10, episodes // 5)),
                    eval_instances=2)
    raise UserError(f"model selection must be one of {SELECTIONS}, got {selection!r}")


def optimizer_class(name):
    """The class registered as learned optimizer ``name`` with the ``update`` interface
    (the ones the ``MetaTrainer`` trains); :class:`UserError` for any other name."""
    allowed = registry.names("learned", interface="update")
    if name not in allowed:
        raise UserError(f"unknown learned optimizer {name!r}; expected one of {allowed}")
    return registry.get("learned", name)


def build_optimizer(name, synthetic):
    """The registered optimizer ``name`` as its class builds it for the problem
    (:meth:`model_free.base.LearnedOptimizer.for_problem`)."""
    cls = optimizer_class(name)
    build = getattr(cls, "for_problem", None)
    return build(synthetic) if build is not None else cls()


def meta_train_or_load(name, optimizee, *, synthetic, workdir, episodes, unroll=100,
                       truncation=20, load=None, tb=None, seed=0, progress=print,
                       horizons=None, random_scale=None, meta_lr=None,
                       selection="last_truncation", strategy=None):
    """Returns ``(optimizer, info)`` with ``train_seconds`` and ``train_steps``;
    ``strategy``: a ``tf.distribute`` strategy or None (:class:`MetaTrainer`)."""
    if load:
        loaded_name, opt = pretrained.load_optimizer(load, expected=name)
        progress(f"[meta] loaded {loaded_name} from {load}")
        return opt, {"train_seconds": 0.0, "train_steps": 0, "loaded": load}
    if meta_lr is not None and not meta_lr > 0:
        raise UserError(f"--meta_lr must be a positive number, got {meta_lr}")
    opt = build_optimizer(name, synthetic)
    curriculum = imitation = None
    if name == "l2o_enhanced":
        curriculum = Curriculum(horizons) if horizons else Curriculum()
        imitation = Imitation("dm", seed=seed)
    extra = {}
    if name == "l2o_scale":
        extra = dict(meta_objective="log_ratio", clip_value=1e4, carry_state=True,
                     meta_optimizer=tf1_rmsprop(meta_lr or SCALE_META_LR, opt))
    elif meta_lr:
        extra = dict(lr=meta_lr)
    extra.update(selection_settings(name, selection, episodes))
    trainer = MetaTrainer(opt, optimizee, unroll=unroll, truncation=truncation, **extra,
                          curriculum=curriculum, imitation=imitation,
                          ckpt_dir=os.path.join(workdir, "ckpt"), tb=tb, progress=progress,
                          seed=seed, random_scale=random_scale, strategy=strategy)
    start = time.time()
    trainer.train(episodes)
    return opt, {"train_seconds": trainer.train_seconds or time.time() - start,
                 "train_steps": trainer.truncations * truncation,
                 "skipped_updates": len(trainer.history["skipped"]),
                 "best_heldout": trainer.best_score, "meta_episodes": trainer.episode,
                 "model_selection": selection}
