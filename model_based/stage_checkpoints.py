"""Checkpoints within a stage of progressive training
(:class:`model_based.progressive.ProgressiveTrainer`): every ``checkpoint_seconds`` at an
epoch's end, the weights, the stage's Adam slots, the weights the stage started from and
its early-stopping state, in a folder of their own that ``progress.json`` names under
``partial``; a resumed run continues the stage at the next epoch with the numbers of an
uninterrupted one."""
import math
import os
import shutil

import numpy as np

from open_l2o_tf import distribute
from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError


def save_partial(trainer, layer, stage, info, start_values, best_values):
    """A mid-stage checkpoint: its arrays in a folder of its own, then
    ``progress.json`` (whose finished-stage pointer is unchanged) names it under
    ``partial``; the previous mid-stage folder is removed after."""
    if (not trainer.ckpt_dir or not trainer.chief
            or distribute.multi_process(trainer.strategy)):
        return
    name = f"partial_layer{layer:02d}_stage{stage}_epoch{info['epoch']:05d}"
    arrays = {}
    for i, v in enumerate(trainer.variables):
        arrays[f"v{i}"] = v.numpy()
        arrays[f"start{i}"] = start_values[i]
        if best_values is not None:
            arrays[f"best{i}"] = best_values[i]
    arrays.update({f"adam_{k}": a for k, a in trainer.epochs.adam.arrays().items()})
    olog.atomic_save_files(os.path.join(trainer.ckpt_dir, name),
                           {"weights.npz": lambda h: np.savez(h, **arrays)})
    previous = trainer.state.get("partial")
    best = info["best"]
    trainer.state["partial"] = dict(
        info, layer=layer, stage=stage, checkpoint=name,
        best=None if math.isinf(best) else float(best),
        history=[float(h) for h in info["history"]], global_step=trainer.global_step)
    olog.atomic_write_json(trainer._progress_path(), trainer.state)
    if previous and previous["checkpoint"] != name:
        shutil.rmtree(os.path.join(trainer.ckpt_dir, previous["checkpoint"]),
                      ignore_errors=True)


def load_partial(trainer, partial):
    """The ``resume`` argument of :meth:`ProgressiveTrainer.run_stage` from a mid-stage
    checkpoint."""
    path = os.path.join(trainer.ckpt_dir, partial["checkpoint"], "weights.npz")
    n = len(trainer.variables)
    try:
        with np.load(path, allow_pickle=False) as data:
            values = [data[f"v{i}"] for i in range(n)]
            start = [data[f"start{i}"] for i in range(n)]
            best_values = ([data[f"best{i}"] for i in range(n)]
                           if "best0" in data.files else None)
            adam = {k[len("adam_"):]: data[k] for k in data.files
                    if k.startswith("adam_")}
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                        f"delete {trainer.ckpt_dir} to start over") from None
    check_shapes(trainer.variables, values, path, trainer.ckpt_dir)
    best = partial.get("best")
    return {"values": values, "start_values": start, "best_values": best_values,
            "adam": adam, "epoch": int(partial["epoch"]), "wait": int(partial["wait"]),
            "best": math.inf if best is None else float(best),
            "history": list(partial["history"]), "seconds": float(partial["seconds"])}


def check_shapes(variables, values, path, ckpt_dir):
    """A :class:`UserError` naming ``path`` unless every array of ``values`` has the shape
    of its variable."""
    for v, value in zip(variables, values):
        if tuple(v.shape) != value.shape:
            raise UserError(f"checkpoint {path} does not match this model (variable "
                            f"{v.name}: {value.shape} vs {tuple(v.shape)}); use another "
                            f"--workdir or delete {ckpt_dir}")
