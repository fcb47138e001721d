"""The episode loop of the meta-trainers: :class:`EpisodicTrainer` runs episodes, scores
held-out problems every ``eval_every`` episodes, keeps the best weights, checkpoints and
resumes.  :class:`model_free.meta.meta_trainer.MetaTrainer` (truncated BPTT of the
coordinate-wise optimizers) and the trainers that own their inner loop (Twin-L2O,
L2O-Swarm) are its subclasses.

Every ``eval_every`` episodes (and at the last) a progress line with the held-out score and
a checkpoint; between evaluations a progress line and a checkpoint every
:attr:`EpisodicTrainer.PROGRESS_EVERY` episodes, so a long run shows it is alive and an
interrupt loses little.  The loop tells :mod:`open_l2o_tf.position` where it is ("episode
40/100"), for the line printed when a run is interrupted.

The subclasses here write ``CKPT/<tag>_state.npz`` (:mod:`model_free.meta.checkpoint`: the
network's weights, the slots of its Keras optimizers, the best weights and the progress:
episode, training time, best score, history and the network's config) and
``CKPT/<tag>_state.json``, a readable copy of the progress, not read on resume except for a
checkpoint written before the progress was in the npz.

Under a ``tf.distribute`` strategy (``strategy=``; the subclasses split an episode's
instances over the replicas with :func:`open_l2o_tf.distribute.synchronous_step`) the
chief's held-out score decides, only the chief writes the checkpoint, and on resume the
chief reads it and broadcasts it (:func:`open_l2o_tf.distribute.restore_trainer`).
"""
import os
import time

import numpy as np

from model_free.meta import checkpoint
from model_free.rules.initial_draw import INITIAL_DRAW_OPTIONS
from open_l2o_tf import distribute, position
from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError, unreadable_progress
from open_l2o_tf.trainer_support import printer, report_skip


def _config(model):
    """The configuration a checkpoint must match to resume: the model's config without its
    name, dtype and the options of its initial draw (:data:`model_free.rules.base.
    INITIAL_DRAW_OPTIONS`: the weights come from the checkpoint; a checkpoint written before
    an option existed lacks it)."""
    return {k: v for k, v in model.get_config().items()
            if k not in ("name", "trainable", "dtype") + INITIAL_DRAW_OPTIONS}


def best_score_of(meta):
    return np.inf if meta.get("best_score") is None else float(meta["best_score"])


def finite_or_none(score):
    return None if not np.isfinite(score) else float(score)


class EpisodicTrainer(checkpoint.Resumable):
    """Subclasses set ``tag`` and implement ``run_episode(episode) -> meta_loss`` (the
    episode's total, a float) and ``score()`` (lower is better); ``model`` is the trained
    network, ``optimizers`` its Keras optimizers (a short name -> a built optimizer, their
    slots are checkpointed under that name).  ``train(n)`` resumes from ``ckpt_dir``, runs
    up to ``n`` episodes in total and ends with the best held-out weights."""

    tag = "trainer"
    loss_key = "loss"       # the history's list of episode losses
    PROGRESS_EVERY = 10     # episodes between progress lines (and checkpoints) of train

    def __init__(self, model, optimizers, *, eval_every, progress, tb, ckpt_dir,
                 strategy=None):
        self.model, self.optimizers = model, optimizers
        self.strategy, self.chief = strategy, distribute.is_chief(strategy)
        self.eval_every = int(eval_every)
        self.say, self.ckpt_dir = printer(progress), ckpt_dir
        self.tb = tb or olog.TensorBoard(None)
        self.episode, self.best_score, self.best_weights = 0, np.inf, None
        self.train_seconds = 0.0
        self.history = {self.loss_key: [], "eval": [], "skipped": []}

    def run_episode(self, episode):
        raise NotImplementedError

    def score(self):
        raise NotImplementedError

    # -- hooks of the loop (MetaTrainer's curriculum and imitation) ----------------------
    def episode_result(self, episode):
        """``(loss, label)`` of one episode (``label``: the loss's name in the progress
        line)."""
        return self.run_episode(episode), "meta"

    def finished(self):
        """True when training ends before the episode budget."""
        return False

    def after_evaluation(self, score, improved):
        """Called after every evaluation (the best weights already updated)."""

    def skipped(self, where):
        """Reports a skipped (non-finite) meta-update at ``where`` ("episode 3 truncation
        2")."""
        report_skip(self.say, self.history["skipped"], self.tag, "meta-loss/gradient", where,
                    "episode ended")

    # -- the loop ------------------------------------------------------------------------
    def evaluate_heldout(self):
        """Scores the held-out problems (the chief's score decides), keeps the best weights;
        returns the score."""
        score = distribute.chief_value(self.strategy, self.score())
        self.history["eval"].append((self.episode, score))
        self.tb.scalar(f"{self.tag}/heldout_score", score, self.episode)
        improved = score < self.best_score
        if improved:
            self.best_score, self.best_weights = score, self.current_weights()
        self.after_evaluation(score, improved)
        return score

    def train(self, episodes):
        """Trains up to ``episodes`` episodes in total (resuming from ``ckpt_dir``); ends with
        the best weights.  The last checkpoint holds the last weights, so a resumed run, or
        one continued to more episodes, goes on from where it stopped."""
        self.restore()
        start = time.time()
        since, episodes_since = time.time(), 0   # the progress line's episode time
        while self.episode < episodes and not self.finished():
            position.set(f"episode {self.episode + 1}/{episodes}")
            loss, label = self.episode_result(self.episode)
            self.history[self.loss_key].append(loss)
            self.episode += 1
            episodes_since += 1
            evaluation = self.episode % self.eval_every == 0 or self.episode == episodes
            if not evaluation and self.episode % self.PROGRESS_EVERY:
                continue
            line = f"[{self.tag}] episode {self.episode}/{episodes} {label}-loss={loss:.4g} "
            # the mean over the episodes since the last line (the first includes tracing),
            # then the held-out evaluation's own seconds
            timing = f"{(time.time() - since) / episodes_since:.1f} s/episode"
            if evaluation:
                t_eval = time.time()
                score = self.evaluate_heldout()
                line += f"held-out={score:.4g} best={self.best_score:.4g} "
                timing += f", held-out {time.time() - t_eval:.1f} s"
            self.train_seconds += time.time() - start
            start = time.time()
            self.save()
            self.tb.flush()
            self.say(line + f"({timing})")
            since, episodes_since = time.time(), 0
        self.train_seconds += time.time() - start
        self.save()         # the last weights: train(more episodes) continues from them
        if self.best_weights is not None:
            self.set_weights(self.best_weights)
        self.tb.flush()
        position.clear()
        return self.history

    # -- weights and checkpoints -----------------------------------------------------------
    def current_weights(self):
        return [w.numpy() for w in self.model.weights]

    def set_weights(self, values):
        checkpoint.assign(self.model.weights, values)

    def checkpoint_variables(self):
        return list(self.model.weights) + [v for opt in self.optimizers.values()
                                           for v in opt.variables]

    def progress_state(self):
        """The checkpoint's progress (JSON): counters, best score, history, config."""
        return {"episode": self.episode, "train_seconds": self.train_seconds,
                "best_score": finite_or_none(self.best_score), "history": self.history,
                "config": _config(self.model)}

    def load_progress_state(self, meta):
        self.episode = int(meta["episode"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.best_score = best_score_of(meta)
        if meta.get("history") is not None:   # older checkpoints have none: it restarts
            self.history = olog.history_from_json(meta["history"], (self.loss_key,))

    def save(self):
        if self.ckpt_dir and self.chief:
            arrays = checkpoint.state_arrays(
                self.current_weights(), {key: [v.numpy() for v in opt.variables]
                                         for key, opt in self.optimizers.items()},
                self.best_weights)
            checkpoint.write(self.ckpt_dir, f"{self.tag}_state.npz", f"{self.tag}_state.json",
                             arrays, self.progress_state())

    def read_checkpoint(self):
        """Reads ``<tag>_state.npz`` into the trainer; a checkpoint of another configuration,
        or one that cannot be read, is a UserError."""
        if not self.ckpt_dir:
            return False
        path = os.path.join(self.ckpt_dir, f"{self.tag}_state.npz")
        json_path = os.path.join(self.ckpt_dir, f"{self.tag}_state.json")
        if not os.path.exists(path) and not os.path.exists(json_path):
            return False
        what = type(self.model).__name__

        def unreadable(why):
            return checkpoint.unreadable(path, self.ckpt_dir, what, why)

        try:
            arrays, meta = checkpoint.read(path)
        except Exception as err:  # pylint: disable=broad-except
            raise unreadable(type(err).__name__) from None
        if meta is None:    # written before the progress was in the npz
            meta = olog.read_json(json_path, expect={"config": dict, "episode": int})
            if not meta:
                raise unreadable(f"no progress in it and no {json_path}")
        if not (isinstance(meta, dict) and type(meta.get("episode")) is int  # noqa: E721
                and isinstance(meta.get("config"), dict)):
            raise unreadable("no episode and config in its progress")
        if meta["config"] != _config(self.model):
            raise UserError(f"{self.ckpt_dir} holds a {what} of another configuration "
                            f"({meta['config']}); use another --workdir or delete that folder")
        try:
            checkpoint.assign(self.model.weights,
                              checkpoint.numbered(arrays, "w", len(self.model.weights)))
            for key, opt in self.optimizers.items():
                checkpoint.assign(opt.variables,
                                  checkpoint.numbered(arrays, key, len(opt.variables)))
        except Exception as err:  # pylint: disable=broad-except
            raise unreadable(type(err).__name__) from None
        self.best_weights = checkpoint.numbered(arrays, "best")[:len(self.model.weights)] \
            or None
        with unreadable_progress(path, self.ckpt_dir):
            self.load_progress_state(meta)
        self.say(f"[{self.tag}] resumed at episode {self.episode}")
        return True
