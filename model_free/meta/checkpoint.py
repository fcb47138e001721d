"""The meta-trainers' checkpoint: one atomic ``.npz`` file (numpy arrays only, loaded
without pickle) and a readable JSON copy of its progress, shared by
:class:`model_free.meta.meta_trainer.MetaTrainer` and
:class:`model_free.meta.episodic.EpisodicTrainer`.

The npz holds numbered arrays ``<prefix><i>``: the weights (``w``), each Keras optimizer's
slots (a short prefix per optimizer), the best weights so far (``best``) and any extra
arrays (the carried optimizer state, ``carried``), and the progress (counters, best score,
history, ...) as a JSON string array (``progress``), so a kill while a checkpoint is written
never mixes two of its generations (new weights with old counters).

:class:`Resumable` is the public interface a trainer offers to resume, which
:func:`open_l2o_tf.distribute.restore_trainer` uses (in one process: read the file; under a
multi-process strategy: the chief reads it and broadcasts it).
"""
import json
import os

import numpy as np

from open_l2o_tf import distribute
from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError

PROGRESS = "progress"     # the npz's entry holding the progress (olog.atomic_save_npz)


def state_arrays(weights, slots=None, best=None, extra=None):
    """The npz's arrays: ``w<i>`` of ``weights``, ``<prefix><i>`` of every ``prefix ->
    values`` of ``slots`` and ``extra``, ``best<i>`` of ``best`` (lists of numpy arrays)."""
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(weights)}
    for prefix, values in list((slots or {}).items()) + list((extra or {}).items()):
        arrays.update({f"{prefix}{i}": np.asarray(v) for i, v in enumerate(values or [])})
    arrays.update({f"best{i}": np.asarray(w) for i, w in enumerate(best or [])})
    return arrays


def numbered(arrays, prefix, count=None):
    """``[arrays[prefix0], arrays[prefix1], ...]``: ``count`` of them (a KeyError when one
    is missing), or all there are (``count`` None)."""
    if count is not None:
        return [arrays[f"{prefix}{i}"] for i in range(count)]
    out = []
    while f"{prefix}{len(out)}" in arrays:
        out.append(arrays[f"{prefix}{len(out)}"])
    return out


def write(ckpt_dir, npz_name, json_name, arrays, progress):
    """Writes ``npz_name`` (``arrays`` and the JSON ``progress``, one atomic file), then
    ``json_name`` (the progress, readable)."""
    os.makedirs(ckpt_dir, exist_ok=True)
    olog.atomic_save_npz(os.path.join(ckpt_dir, npz_name), arrays, progress)
    olog.atomic_write_json(os.path.join(ckpt_dir, json_name), progress)


def read(path):
    """``(arrays, progress)`` of a checkpoint written by :func:`write`; ``progress`` is None
    when the file holds none.  Any failure to read it propagates (the caller names it)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    progress = json.loads(str(arrays.pop(PROGRESS))) if PROGRESS in arrays else None
    return arrays, progress


def unreadable(path, ckpt_dir, what, why):
    """The one-line error of a checkpoint that cannot be read."""
    return UserError(f"checkpoint {path} cannot be read ({why}: expected the .npz of {what}'s "
                     f"weights, optimizer slots and progress); delete {ckpt_dir} to start over")


def assign(variables, values):
    for v, value in zip(variables, values):
        v.assign(value)


class Resumable:
    """What a meta-trainer offers to resume (used by
    :func:`open_l2o_tf.distribute.restore_trainer`):

    * ``read_checkpoint()``: reads the checkpoint file in this process into the trainer;
      True when there was one;
    * ``progress_state()`` / ``load_progress_state(progress)``: the progress (JSON: counters,
      best score, history, ...) and setting it;
    * ``checkpoint_variables()``: the variables a resume sets (weights, optimizer slots);
    * ``current_weights()``: the weights as numpy arrays; ``best_weights`` (None or such a
      list); ``strategy``.
    """

    strategy = None
    best_weights = None

    def restore(self):
        """Loads the last checkpoint; returns True when there was one.  Under a
        multi-worker strategy the chief reads it and broadcasts it."""
        return distribute.restore_trainer(self.strategy, self)

    def read_checkpoint(self):
        raise NotImplementedError

    def progress_state(self):
        raise NotImplementedError

    def load_progress_state(self, progress):
        raise NotImplementedError

    def checkpoint_variables(self):
        raise NotImplementedError

    def current_weights(self):
        raise NotImplementedError
