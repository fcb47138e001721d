"""The episode loop shared by the meta-trainers that own their inner loop (Twin-L2O,
L2O-Swarm): :class:`EpisodicTrainer` runs episodes, scores held-out problems every
``eval_every`` episodes, keeps the best weights, checkpoints and resumes.

A checkpoint is one atomic file, ``CKPT/<name>_state.npz`` (numpy arrays only, loaded
without pickle): the network's weights, the slots of its Keras optimizers, the best weights
so far and the progress (:meth:`EpisodicTrainer._progress`: episode, training time, best
score, history, and the network's config) as a JSON string array, so a kill while a
checkpoint is written never mixes two of its generations (new weights with old counters);
a resumed run goes on with the counters and history of the weights it loads.
``CKPT/<name>_state.json``, a readable copy of the progress, is written beside it and is
not read on resume, except for a checkpoint written before the progress was in the npz.

Under a ``tf.distribute`` strategy (``strategy=``; the subclasses split an episode's
instances over the replicas with :func:`open_l2o_tf.distribute.synchronous_step`) the
chief's held-out score decides, only the chief writes the checkpoint, and on resume the
chief reads it and broadcasts it (:func:`open_l2o_tf.distribute.restore_on_chief`).
"""
import json
import os
import time

import numpy as np

from open_l2o_tf import distribute
from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError, unreadable_progress


PROGRESS = "progress"     # the npz's entry holding the progress (olog.atomic_save_npz)


def _config(model):
    return {k: v for k, v in model.get_config().items() if k not in ("name", "trainable",
                                                                      "dtype")}


def save_trainer(ckpt_dir, name, model, optimizers, best_weights, meta):
    """Writes the checkpoint: ``<name>_state.npz``, one atomic file, with the weights, the
    slots of ``optimizers`` (a short name -> a built Keras optimizer), the best weights and
    the progress (``meta`` and the network's config, JSON in the string array
    ``progress``); then ``<name>_state.json``, the same progress, readable."""
    progress = {**meta, "config": _config(model)}
    arrays = {f"w{i}": w.numpy() for i, w in enumerate(model.weights)}
    for key, opt in optimizers.items():
        arrays.update({f"{key}{i}": v.numpy() for i, v in enumerate(opt.variables)})
    for i, value in enumerate(best_weights or []):
        arrays[f"best{i}"] = value
    olog.atomic_save_npz(os.path.join(ckpt_dir, f"{name}_state.npz"), arrays, progress)
    olog.atomic_write_json(os.path.join(ckpt_dir, f"{name}_state.json"), progress)


def restore_trainer(ckpt_dir, name, model, optimizers):
    """Loads a checkpoint into ``model`` and ``optimizers``; returns ``(meta, best_weights)``
    or ``None`` when there is none.  ``meta`` (counters, config, history) is read from the
    npz; only a checkpoint written before it held them falls back to ``<name>_state.json``.
    A checkpoint of another configuration, or one that cannot be read, is a UserError."""
    path = os.path.join(ckpt_dir, f"{name}_state.npz")
    json_path = os.path.join(ckpt_dir, f"{name}_state.json")
    if not os.path.exists(path) and not os.path.exists(json_path):
        return None

    def unreadable(why):
        return UserError(f"checkpoint {path} cannot be read ({why}: expected the .npz of "
                         f"{type(model).__name__}'s weights, optimizer slots and progress); "
                         f"delete {ckpt_dir} to start over")

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop(PROGRESS))) if PROGRESS in arrays else None
    except Exception as err:  # pylint: disable=broad-except
        raise unreadable(type(err).__name__) from None
    if meta is None:    # written before the progress was in the npz
        meta = olog.read_json(json_path, expect={"config": dict, "episode": int})
        if not meta:
            raise unreadable(f"no progress in it and no {json_path}")
    if not (isinstance(meta, dict) and type(meta.get("episode")) is int  # noqa: E721
            and isinstance(meta.get("config"), dict)):
        raise unreadable("no episode and config in its progress")
    if meta["config"] != _config(model):
        raise UserError(f"{ckpt_dir} holds a {type(model).__name__} of another configuration "
                        f"({meta['config']}); use another --workdir or delete that folder")
    try:
        for i, w in enumerate(model.weights):
            w.assign(arrays[f"w{i}"])
        for key, opt in optimizers.items():
            for i, v in enumerate(opt.variables):
                v.assign(arrays[f"{key}{i}"])
    except Exception as err:  # pylint: disable=broad-except
        raise unreadable(type(err).__name__) from None
    best = [arrays[f"best{i}"] for i in range(len(model.weights)) if f"best{i}" in arrays]
    return meta, (best or None)


def best_score_of(meta):
    return np.inf if meta.get("best_score") is None else float(meta["best_score"])


def finite_or_none(score):
    return None if not np.isfinite(score) else float(score)


class EpisodicTrainer:
    """Subclasses set ``model``, ``optimizers`` (name -> built Keras optimizer), ``tag`` and
    implement ``run_episode(episode) -> meta_loss`` (the episode's total, a float) and
    ``score()`` (lower is better).  ``train(n)`` resumes from ``ckpt_dir``, runs up to ``n`` episodes in total and
    ends with the best held-out weights."""

    tag = "trainer"

    def __init__(self, model, optimizers, *, eval_every, progress, tb, ckpt_dir,
                 strategy=None):
        self.model, self.optimizers = model, optimizers
        self.strategy, self.chief = strategy, distribute.is_chief(strategy)
        self.eval_every = int(eval_every)
        self.say, self.tb, self.ckpt_dir = progress or (lambda *a: None), tb, ckpt_dir
        self.episode, self.best_score, self.best_weights = 0, np.inf, None
        self.train_seconds = 0.0
        self.history = {"loss": [], "eval": [], "skipped": []}

    def run_episode(self, episode):
        raise NotImplementedError

    def score(self):
        raise NotImplementedError

    def skipped(self, message):
        """Reports a skipped (non-finite) meta-update."""
        self.say(f"[{self.tag}] WARNING: {message}; update skipped, episode ended")
        self.history["skipped"].append(message)

    def train(self, episodes):
        self.restore()
        start = time.time()
        for episode in range(self.episode, episodes):
            total = self.run_episode(episode)
            self.history["loss"].append(total)
            self.episode = episode + 1
            if self.episode % self.eval_every == 0 or self.episode == episodes:
                score = distribute.chief_value(self.strategy, self.score())
                self.history["eval"].append((self.episode, score))
                if score < self.best_score:
                    self.best_score = score
                    self.best_weights = [w.numpy() for w in self.model.weights]
                if self.tb is not None:
                    self.tb.scalar(f"{self.tag}/heldout_score", score, self.episode)
                    self.tb.flush()
                self.train_seconds += time.time() - start
                start = time.time()
                self.save()
                self.say(f"[{self.tag}] episode {self.episode}/{episodes} meta-loss={total:.4g} "
                         f"held-out={score:.4g} best={self.best_score:.4g}")
        self.train_seconds += time.time() - start
        self.save()
        if self.best_weights is not None:
            for w, value in zip(self.model.weights, self.best_weights):
                w.assign(value)
        return self.history

    def save(self):
        if self.ckpt_dir and self.chief:
            save_trainer(self.ckpt_dir, self.tag, self.model, self.optimizers,
                         self.best_weights, self._progress())

    def _progress(self):
        """The checkpoint's progress (JSON): counters, best score and history."""
        return {"episode": self.episode, "train_seconds": self.train_seconds,
                "best_score": finite_or_none(self.best_score), "history": self.history}

    def restore(self):
        """Loads the last checkpoint; returns True when there was one.  Under a
        multi-worker strategy the chief reads it and broadcasts it (weights, optimizer
        slots, best weights, counters, history)."""
        return distribute.restore_trainer(
            self.strategy, self, list(self.model.weights) + [
                v for opt in self.optimizers.values() for v in opt.variables],
            [w.numpy() for w in self.model.weights])

    def _load_progress(self, meta):
        self.episode = int(meta["episode"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.best_score = best_score_of(meta)
        if meta.get("history") is not None:   # older checkpoints have none: it restarts
            self.history = olog.history_from_json(meta["history"], ("loss",))

    def _restore_file(self):
        found = self.ckpt_dir and restore_trainer(self.ckpt_dir, self.tag, self.model,
                                                  self.optimizers)
        if not found:
            return False
        meta, self.best_weights = found
        with unreadable_progress(os.path.join(self.ckpt_dir, f"{self.tag}_state.npz"),
                                 self.ckpt_dir):
            self._load_progress(meta)
        self.say(f"[{self.tag}] resumed at episode {self.episode}")
        return True
