"""Meta-training of coordinate-wise learned optimizers by truncated BPTT (spec model_free §1).

One *episode* optimises a fresh optimizee instance (new constants, new start, zero state)
for ``unroll`` steps, cut into truncations of ``truncation`` steps, each followed by one
meta-update (:mod:`model_free.meta.truncation`: the compiled truncation, on one device or
sharded over a ``tf.distribute`` strategy); ``x_T`` and the state are carried to the next
truncation without gradient.  Minibatch problems draw a fresh minibatch per step.  A
non-finite meta-loss or meta-gradient skips the update (the weights never take non-finite
values), is reported with its episode and truncation, and ends the episode.

The settings are one :class:`model_free.meta.recipe.MetaRecipe`.  The parts, each with a small
interface: the truncations (:class:`model_free.meta.truncation.Truncations`), the optimizer state
carried across episodes (:class:`model_free.meta.carry.CarriedState`, ``carry_state``), model
selection (:class:`model_free.meta.selection.ModelSelection`: every ``eval_every`` episodes on
``eval_instances`` held-out problems, fresh ones at each evaluation as the original or fixed
ones, the best weights kept and saved), the
curriculum of horizons (:mod:`model_free.meta.curriculum`, §4.1: every candidate, and the fresh
baseline after advancing a stage, is scored at the *next* stage's horizon, as the
original) and the imitation of Adam (:mod:`model_free.meta.imitation`, §4.2: its episodes train
on the teacher-forcing loss with their own Adam).  The episode loop, its progress lines and
checkpoints are :class:`model_free.meta.episodic.EpisodicTrainer`'s.

The checkpoint (``trainer_state.npz``, one atomic file, :mod:`model_free.meta.checkpoint`) holds
the last and best weights, the slots of both Keras optimizers, the carried optimizer state,
the counters, the curriculum, the imitation RNG and the history; every other random draw is
a function of the seed and the episode (instances, starts, minibatches, scalings, and the
random initial states of L2O-Scale: ``seeded_initial_state``), so an interrupted run
resumes exactly: it ends with the weights, state and history of an uninterrupted one
(``tests/test_resume.py``).
"""
import os

import keras
import numpy as np
import tensorflow as tf

from model_free.meta import checkpoint
from model_free.meta.carry import CarriedState
from model_free.meta.episodic import EpisodicTrainer
from model_free.meta.evaluation import (  # noqa: F401  (the names other modules import here)
    evaluate, initial_state, make_grads_fn, make_runner, stateless_seed)
from model_free.meta.recipe import SELECTIONS, MetaRecipe  # noqa: F401
from model_free.meta.selection import ModelSelection
from model_free.meta.truncation import RandomlyScaled, Truncations  # noqa: F401
from model_free.weights import pretrained
from open_l2o_tf import device, distribute
from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError, unreadable_progress
from open_l2o_tf.trainer_support import report_skip


class MetaTrainer(EpisodicTrainer):
    """Truncated-BPTT meta-trainer of a :class:`model_free.rules.base.LearnedOptimizer`.

    Args:
      optimizer: the learned optimizer (its weights are trained).
      optimizee: an :class:`open_l2o_tf.optimizees.base.Optimizee`.
      recipe: a :class:`model_free.meta.recipe.MetaRecipe` (None: its defaults); ``settings``,
        fields of the recipe by name, replace its values (``MetaTrainer(opt, problem,
        unroll=20, meta_lr=1e-2)``).
      ckpt_dir: where the checkpoint is written (resume); None: none.
      tb, progress: a TensorBoard writer and a ``print``-like function.
      strategy: a ``tf.distribute`` strategy (:mod:`open_l2o_tf.distribute`) or None:
        :mod:`model_free.meta.truncation` splits the episodes over the replicas, imitation
        episodes split the learned optimizer's coordinates
        (:meth:`model_free.meta.imitation.Imitation.train_episode`); model selection runs on the
        full held-out instances and the chief's score decides; only the chief writes
        checkpoints, and on resume it broadcasts them.
    """

    tag = "meta"
    loss_key = "episode_loss"
    STATE_FILE = "trainer_state.npz"

    def __init__(self, optimizer, optimizee, recipe=None, *, ckpt_dir=None, tb=None,
                 progress=print, strategy=None, **settings):
        recipe = MetaRecipe.of(recipe).replace(**settings)
        self.recipe, self.opt, self.optimizee = recipe, optimizer, optimizee
        self.policy = device.policy(strategy, recipe.deterministic)
        self.meta_opt = recipe.meta_optimizer or keras.optimizers.Adam(recipe.meta_lr)
        self.meta_opt.build(optimizer.trainable_variables)
        self.il_opt = keras.optimizers.Adam(recipe.meta_lr)
        self.il_opt.build(optimizer.trainable_variables)
        super().__init__(optimizer, {"v": self.meta_opt, "il": self.il_opt},
                         eval_every=recipe.eval_every, progress=progress, tb=tb,
                         ckpt_dir=ckpt_dir, strategy=strategy)
        self.unroll, self.truncation = int(recipe.unroll), int(recipe.truncation)
        self.seed = int(recipe.seed)
        self.curriculum, self.imitation = recipe.curriculum, recipe.imitation
        self.unroller = Truncations(optimizer, optimizee, recipe, self.meta_opt, strategy,
                                    self.policy.graph_rewrites)
        self.carried = CarriedState(recipe.carry_state, strategy, self.say)
        self.model_selection = ModelSelection(optimizer, optimizee, recipe)
        self.truncations = 0

    # -- episodes ----------------------------------------------------------------------
    @property
    def horizon(self):
        return self.curriculum.horizon if self.curriculum else self.unroll

    @property
    def eval_horizon(self):
        """The horizon candidates are scored at: the next stage's with a curriculum."""
        return self.curriculum.eval_horizon if self.curriculum else self.unroll

    def run_episode(self, episode):
        """One episode; ``(loss, imitation)``: the sum of its truncations' meta-losses (NaN
        when an update was skipped) and whether it was an imitation episode."""
        seed = stateless_seed(self.seed, episode)
        instance = self.optimizee.sample_instance(seed)
        params = self.optimizee.init_params(seed + [0, 1], instance)
        if self.imitation is not None and self.imitation.use_imitation(
                episode, self.curriculum.stage if self.curriculum else None):
            def on_skip(k):
                report_skip(self.say, self.history["skipped"], self.tag,
                            "imitation loss/gradient", f"episode {episode + 1} truncation {k}",
                            "episode goes on")
            loss = self.imitation.train_episode(self.opt, self.il_opt, self.optimizee,
                                                instance, params, self.horizon,
                                                self.truncation, seed, self.strategy,
                                                on_skip=on_skip)
            return loss, True
        scaled = self.unroller.scaled
        if scaled is not None:
            instance, params = scaled.scale(instance, params, seed + [0, 2])
        f_init = tf.constant(1.0)   # only the log-ratio objective reads it
        if self.recipe.meta_objective == "log_ratio":
            problem = self.unroller.problem
            f_init = problem.loss(params, instance, problem.sample_batch(seed))
        params, state, instance, step = self.unroller.start(params, instance, seed + [0, 3])
        state = self.carried.begin(state)
        total = 0.0
        for k in range(max(1, self.horizon // self.truncation)):
            params, state, loss, finite = step(
                params, state, instance, seed, tf.constant(k * self.truncation, tf.int32),
                f_init)
            self.truncations += 1
            if not bool(finite):
                self.skipped(f"episode {episode + 1} truncation {k + 1}")
                return float("nan"), False
            total += float(loss)
        self.carried.end(state)
        return total, False

    def episode_result(self, episode):
        loss, imitation = self.run_episode(episode)
        self.tb.scalar("meta/imitation_loss" if imitation else "meta/episode_loss",
                       loss, episode)
        return loss, "IL" if imitation else "meta"

    def finished(self):
        if self.curriculum is not None and self.curriculum.finished:
            self.say("[meta] curriculum finished")
            return True
        return False

    def score(self, horizon=None, instances=None):
        """The model-selection score on held-out problems (lower is better), at ``horizon``
        (default :attr:`eval_horizon`): fixed ones, or with ``selection="original"`` the
        fresh ones of this episode's evaluation; the chief's decides."""
        value = self.model_selection.score(horizon or self.eval_horizon, instances,
                                           draw=self.episode)
        return distribute.chief_value(self.strategy, value)

    def after_evaluation(self, score, improved):
        if self.curriculum is not None:
            if self.curriculum.on_evaluation(score, improved) == "advance":
                self.set_weights(self.best_weights)
                self.best_score = self.score()
                self.say(f"[meta] curriculum -> stage {self.curriculum.stage} "
                         f"(horizon {self.curriculum.horizon})")

    def weights(self):
        return self.current_weights()

    def current_weights(self):
        return [v.numpy() for v in self.opt.weights]

    def set_weights(self, values):
        checkpoint.assign(self.opt.weights, values)

    # -- checkpoints -------------------------------------------------------------------
    def save(self):
        """Writes the checkpoint (the chief only): ``trainer_state.npz`` (what a resume
        reads), ``last.npz`` / ``best.npz`` (loadable with ``--load``) and
        ``meta_state.json`` (the progress, readable) beside it."""
        if not self.ckpt_dir or not self.chief:
            return
        carried = self.carried.arrays()
        os.makedirs(self.ckpt_dir, exist_ok=True)
        current = self.current_weights()
        if self.best_weights is not None:
            self.set_weights(self.best_weights)
            pretrained.save_optimizer(self.opt, os.path.join(self.ckpt_dir, "best.npz"))
        self.set_weights(current)
        pretrained.save_optimizer(self.opt, os.path.join(self.ckpt_dir, "last.npz"))
        arrays = checkpoint.state_arrays(
            current, {key: [v.numpy() for v in opt.variables]
                      for key, opt in self.optimizers.items()},
            self.best_weights, {"carried": carried})
        checkpoint.write(self.ckpt_dir, self.STATE_FILE, "meta_state.json", arrays,
                         self.progress_state())

    def progress_state(self):
        return {"episode": self.episode, "best_score": self.best_score,
                "train_seconds": self.train_seconds, "truncations": self.truncations,
                "curriculum": self.curriculum.state() if self.curriculum else None,
                "imitation_rng": (self.imitation.rng.bit_generator.state
                                  if self.imitation is not None else None),
                "history": self.history}

    def load_progress_state(self, state):
        self.episode = state["episode"]
        best = state["best_score"]
        self.best_score = float(best) if best is not None else np.inf
        self.train_seconds = state.get("train_seconds", 0.0)
        self.truncations = state.get("truncations", 0)
        if self.curriculum is not None and state.get("curriculum"):
            self.curriculum.load_state(state["curriculum"])
        if self.imitation is not None and state.get("imitation_rng"):
            self.imitation.rng.bit_generator.state = state["imitation_rng"]
        if state.get("history"):    # older checkpoints have none: the history restarts
            self.history = olog.history_from_json(state["history"], (self.loss_key,))

    def _read_optimizer_file(self, name):
        """The optimizer of ``ckpt/name`` (written by :meth:`save`); a missing, truncated or
        foreign file is one :class:`UserError` saying to delete the checkpoint."""
        path = os.path.join(self.ckpt_dir, name)
        try:
            return pretrained.load_optimizer(path)[1]
        except UserError:
            why = ("it is missing" if not os.path.exists(path) else
                   "truncated or not an open-l2o-tf optimizer file")
            raise checkpoint.unreadable(path, self.ckpt_dir, type(self.opt).__name__,
                                        why) from None

    def _check_kind(self):
        """A UserError when ``last.npz`` holds another optimizer or configuration (or
        cannot be read)."""
        last = self._read_optimizer_file("last.npz")
        ours = [tuple(v.shape) for v in self.opt.weights]
        if type(last) is not type(self.opt) or [tuple(v.shape) for v in last.weights] != ours:
            raise UserError(f"{self.ckpt_dir} holds the checkpoint of a different optimizer "
                            f"({type(last).__name__}, not {type(self.opt).__name__} with this "
                            f"configuration); use another --workdir or delete that folder")
        return last

    def read_checkpoint(self):
        if not self.ckpt_dir:
            return False
        path = os.path.join(self.ckpt_dir, self.STATE_FILE)
        if not os.path.exists(path):
            return self._read_legacy()
        self._check_kind()
        try:
            arrays, progress = checkpoint.read(path)
            if not isinstance(progress, dict) or not isinstance(progress.get("episode"), int):
                raise ValueError("no progress")
            values = {prefix: checkpoint.numbered(arrays, prefix, len(opt.variables))
                      for prefix, opt in self.optimizers.items()}
            weights = checkpoint.numbered(arrays, "w", len(self.opt.weights))
        except Exception as err:  # pylint: disable=broad-except
            raise checkpoint.unreadable(path, self.ckpt_dir, type(self.opt).__name__,
                                        type(err).__name__) from None
        for prefix, opt in self.optimizers.items():
            checkpoint.assign(opt.variables, values[prefix])
        checkpoint.assign(self.opt.weights, weights)
        self.best_weights = checkpoint.numbered(arrays, "best")[:len(self.opt.weights)] or None
        self.carried.load(checkpoint.numbered(arrays, "carried"))
        with unreadable_progress(path, self.ckpt_dir):
            self.load_progress_state(progress)
        self.say(f"[meta] resumed at episode {self.episode}")
        return True

    def _read_legacy(self):
        """A checkpoint written before ``trainer_state.npz``: ``meta_state.json``,
        ``last.npz`` / ``best.npz`` and ``meta_optimizer.npz`` (no carried state, no
        history)."""
        state = olog.read_json(os.path.join(self.ckpt_dir, "meta_state.json"),
                               expect={"episode": int, "truncations": int})
        if not state:
            return False
        last = self._check_kind()
        self.set_weights([v.numpy() for v in last.weights])
        best_path = os.path.join(self.ckpt_dir, "best.npz")
        if os.path.exists(best_path):
            best = self._read_optimizer_file("best.npz")
            self.best_weights = [v.numpy() for v in best.weights]
        meta_path = os.path.join(self.ckpt_dir, "meta_optimizer.npz")
        if os.path.exists(meta_path):
            try:
                with np.load(meta_path, allow_pickle=False) as data:
                    slots = {}
                    for prefix, opt in self.optimizers.items():
                        keys = [f"{prefix}{i}" for i in range(len(opt.variables))]
                        if all(k in data.files for k in keys):
                            slots[prefix] = [data[k] for k in keys]
                for prefix, values in slots.items():
                    checkpoint.assign(self.optimizers[prefix].variables, values)
            except Exception as err:  # pylint: disable=broad-except
                raise checkpoint.unreadable(meta_path, self.ckpt_dir, type(self.opt).__name__,
                                            type(err).__name__) from None
        with unreadable_progress(os.path.join(self.ckpt_dir, "meta_state.json"),
                                 self.ckpt_dir):
            self.load_progress_state(state)
        self.say(f"[meta] resumed at episode {self.episode}")
        return True
