"""Meta-train-or-load of a learned optimizer, shared by the command lines.

``l2o_dm``: L2O-DM; ``l2o_rnnprop``: L2O-RNNprop; ``l2o_enhanced``: L2O-DM trained with the
curriculum and imitation of Adam (L2O-enhanced).  On MNIST-type problems DM uses LogAndSign
(k = 5) and output scale 0.01, on synthetic ones the raw gradient and scale 1.0 (spec
model_free §2.2).
"""
import os
import time

from model_free import pretrained
from model_free.curriculum import Curriculum
from model_free.dm import L2ODM
from model_free.imitation import Imitation
from model_free.meta_trainer import MetaTrainer
from model_free.rnnprop import L2ORNNprop
from open_l2o_tf.errors import UserError

LEARNED = ("l2o_dm", "l2o_rnnprop", "l2o_enhanced")


def build_optimizer(name, synthetic):
    if name in ("l2o_dm", "l2o_enhanced"):
        if synthetic:
            return L2ODM(preprocess="identity", output_scale=1.0)
        return L2ODM(preprocess="log_and_sign", k=5.0, output_scale=0.01)
    if name == "l2o_rnnprop":
        return L2ORNNprop(output_scale=0.01 if not synthetic else 0.1)
    raise UserError(f"unknown learned optimizer {name!r}; expected one of {LEARNED}")


def meta_train_or_load(name, optimizee, *, synthetic, workdir, episodes, unroll=100,
                       truncation=20, load=None, tb=None, seed=0, progress=print,
                       horizons=None, random_scale=None):
    """Returns ``(optimizer, info)`` with ``train_seconds`` and ``train_steps``."""
    if load:
        loaded_name, opt = pretrained.load_optimizer(load)
        progress(f"[meta] loaded {loaded_name} from {load}")
        return opt, {"train_seconds": 0.0, "train_steps": 0, "loaded": load}
    opt = build_optimizer(name, synthetic)
    curriculum = imitation = None
    if name == "l2o_enhanced":
        curriculum = Curriculum(horizons) if horizons else Curriculum()
        imitation = Imitation("dm", seed=seed)
    trainer = MetaTrainer(opt, optimizee, unroll=unroll, truncation=truncation,
                          curriculum=curriculum, imitation=imitation,
                          eval_every=max(1, min(10, episodes // 5)),
                          ckpt_dir=os.path.join(workdir, "ckpt"), tb=tb, progress=progress,
                          seed=seed, random_scale=random_scale)
    start = time.time()
    trainer.train(episodes)
    return opt, {"train_seconds": trainer.train_seconds or time.time() - start,
                 "train_steps": trainer.truncations * truncation,
                 "skipped_updates": len(trainer.history["skipped"]),
                 "best_heldout": trainer.best_score}
