"""Meta-training of coordinate-wise learned optimizers by truncated BPTT (spec model_free §1).

One *episode* optimises a fresh optimizee instance (new constants, new start, zero state)
for ``unroll`` steps, cut into truncations of ``truncation`` steps.  Within a truncation

    f_t = f(x_t),   g_t = stop_gradient(grad f(x_t)),   (d_t, s_{t+1}) = opt(g_t, s_t),
    x_{t+1} = x_t + d_t,        meta-loss = sum_{t=0}^{T} f(x_t)

and one Adam(1e-3) step on the optimizer's weights follows; ``x_T`` and the state are
carried to the next truncation without gradient.  ``second_order=True`` keeps the
gradient through ``g_t``.  Minibatch problems draw a fresh minibatch per step.  A whole
truncation is one ``tf.function``, called with Grappler off (:mod:`open_l2o_tf.determinism`:
with it on, the meta-loss differed in the last bits from trace to trace at 1024 instances)
on a CPU or when ``deterministic=True`` (:mod:`open_l2o_tf.device`).  A non-finite meta-loss or meta-gradient skips the update
(the weights never take non-finite values), is reported with its episode and truncation,
and ends the episode.  Every ``eval_every`` episodes the optimizer is scored on
``eval_instances`` fixed held-out instances and the best weights are kept and saved.  The
score (``selection``) is, as the original (``train_dm.py``: every 100 epochs, DM; every 10,
RNNprop; 20 evaluation epochs; ``util.run_epoch`` returns the cost of the *last* unroll),
``"last_truncation"``: the sum of the losses ``f(x_{H-T}) .. f(x_H)`` of the last
truncation of the evaluation horizon H; or ``"horizon_mean"``: the mean loss over the whole
horizon (favours early descent; cheaper settings of the quick preset).  With a curriculum
every candidate, and the fresh baseline after advancing a stage, is scored at the *next*
stage's horizon (``Curriculum.eval_horizon``), as the original.

Imitation (L2O-enhanced, spec §4.2) episodes train on the teacher-forcing loss of
:mod:`model_free.imitation` with their own Adam; the curriculum (§4.1) changes the
episode horizon (:mod:`model_free.curriculum`).  The checkpoint (``trainer_state.npz``,
one atomic file, :meth:`MetaTrainer.save`) holds the last and best weights, the slots of
both Keras optimizers, the optimizer state carried across episodes (``carry_state``), the
counters, the curriculum, the imitation RNG and the history; every other random draw is a
function of the seed and the episode (instances, starts, minibatches, scalings, and the
random initial states of L2O-Scale: ``seeded_initial_state``), so an interrupted run
resumes exactly: it ends with the weights, state and history of an uninterrupted one
(``tests/test_resume.py``).
"""
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from model_free import pretrained
from open_l2o_tf import device, distribute
from open_l2o_tf import logging as olog
from open_l2o_tf.determinism import without_graph_rewrites
from open_l2o_tf.errors import UserError, unreadable_progress


def _seed(*parts):
    value = 0
    for part in parts:
        value = (value * 1000003 + int(part)) & 0x7FFFFFFF
    return tf.constant([value, int(parts[-1]) & 0x7FFFFFFF], tf.int32)


def make_grads_fn(optimizee, grad_scale=1.0):
    """``grads_fn(params, instance, batch) -> (mean loss, grads, per-instance losses)``; the
    gradients are of the sum over instances (each instance its own), times ``grad_scale``
    (to keep the 1/128 scale of training on other batch sizes)."""

    def loss_and_grads(params, instance, batch):
        with tf.GradientTape() as tape:
            tape.watch(params)
            losses = optimizee.instance_losses(params, instance, batch)
            total = tf.reduce_sum(losses)
        grads = tape.gradient(total, params)
        return tf.reduce_mean(losses), [g * grad_scale for g in grads], losses

    return loss_and_grads


class RandomlyScaled:
    """The random-scaling trick of RNNprop (Lv et al. 2017; spec model_free §3.3): each
    episode draws ``c = exp(U(-bound, bound))`` per coordinate, the optimizer sees
    ``f(c * x)`` and starts from ``x_0 / c``.  Wraps an optimizee; the scales travel in the
    instance dict under ``"_scales"``."""

    def __init__(self, optimizee, bound=3.0):
        self.base, self.bound = optimizee, float(bound)
        self.stochastic = getattr(optimizee, "stochastic", False)

    def sample_instance(self, seed, batch_size=None):
        return self.base.sample_instance(seed, batch_size)

    def sample_batch(self, seed):
        return self.base.sample_batch(seed)

    def scale(self, instance, params, seed):
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, len(params)))
        scales = [tf.exp(tf.random.stateless_uniform(p.shape, s, -self.bound, self.bound))
                  for p, s in zip(params, seeds)]
        return dict(instance, _scales=scales), [p / c for p, c in zip(params, scales)]

    def instance_losses(self, params, instance, batch=None):
        base_instance = {k: v for k, v in instance.items() if k != "_scales"}
        scaled = [p * c for p, c in zip(params, instance["_scales"])]
        return self.base.instance_losses(scaled, base_instance, batch)

    @property
    def example_losses(self):
        """The base's per-example losses at the scaled point (None when it has none)."""
        if getattr(self.base, "example_losses", None) is None:
            return None

        def losses(params, instance, batch):
            base_instance = {k: v for k, v in instance.items() if k != "_scales"}
            scaled = [p * c for p, c in zip(params, instance["_scales"])]
            return self.base.example_losses(scaled, base_instance, batch)
        return losses

    def loss(self, params, instance, batch=None):
        return tf.reduce_mean(self.instance_losses(params, instance, batch))


def initial_state(optimizer, params, seed):
    """The optimizer's initial state, its random draws (L2O-Scale's initial learning rates)
    from the stateless ``seed`` (``seeded_initial_state``) when it has that method."""
    seeded = getattr(optimizer, "seeded_initial_state", None)
    return seeded(params, seed) if seeded is not None else optimizer.initial_state(params)


def make_runner(optimizer, optimizee, num_steps, grad_scale, jit_compile=True,
                seeded_state=False):
    """A compiled ``run(params, instance, seed, seed0) -> (num_steps + 1, B)`` loss curve
    (see :func:`evaluate`); built once and reused for any instance of the same shapes.
    ``seeded_state``: the initial state's random draws from ``seed0``
    (:func:`initial_state`; model selection: the same draws at every evaluation, whatever
    the process ran before), else from TensorFlow's global RNG (:func:`evaluate`)."""
    grads_fn = make_grads_fn(optimizee, grad_scale)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def run(params, instance, seed, seed0):
        state = (initial_state(optimizer, params, seed0 + [0, 3]) if seeded_state
                 else optimizer.initial_state(params))
        first = optimizee.instance_losses(params, instance, optimizee.sample_batch(seed0))
        ta = tf.TensorArray(tf.float32, size=num_steps + 1).write(0, first)

        def body(t, x, s, ta):
            batch = optimizee.sample_batch(tf.stack([seed, t + 1]))
            _, grads, _ = grads_fn(x, instance, batch)
            steps, s = optimizer.update(grads, s, x)
            x = [p + d for p, d in zip(x, steps)]
            batch2 = optimizee.sample_batch(tf.stack([seed + 7919, t + 1]))
            return t + 1, x, s, ta.write(t + 1, optimizee.instance_losses(x, instance, batch2))

        _, _, _, ta = tf.while_loop(lambda t, *_: t < num_steps, body,
                                    (tf.constant(0), params, state, ta))
        return ta.stack()

    return run


def _batch_count(optimizee, params, instance, seed):
    return int(optimizee.instance_losses(params, instance,
                                         optimizee.sample_batch(_seed(seed, 0))).shape[0])


def evaluate(optimizer, optimizee, num_steps, instance, params, seed=0, grad_scale=None,
             jit_compile=True):
    """Runs the learned optimizer for ``num_steps``; returns the per-instance loss curve
    ``(num_steps + 1, B)`` (losses at ``x_0 .. x_T``; minibatch problems: the loss of the
    new iterate on a fresh minibatch, as the original's evaluation).

    ``grad_scale`` defaults to ``1 / B`` (the gradient of the mean over instances, the
    convention the original optimizers were trained with).  The compiled runner is kept
    for the next call with the same optimizer, optimizee, length, scale and ``jit_compile``
    (runs that differ in ``seed`` and ``params`` are not traced again)."""
    params = list(params)
    scale = (1.0 / _batch_count(optimizee, params, instance, seed)) if grad_scale is None \
        else grad_scale
    key = (id(optimizer), id(optimizee), int(num_steps), float(scale), bool(jit_compile))
    cached = _RUNNERS.get(key)
    if cached is None or cached[0] is not optimizer or cached[1] is not optimizee:
        if len(_RUNNERS) >= 8:
            _RUNNERS.pop(next(iter(_RUNNERS)))
        cached = (optimizer, optimizee, make_runner(optimizer, optimizee, num_steps, scale,
                                                    jit_compile))
        _RUNNERS[key] = cached
    return cached[2](params, instance, tf.constant(seed, tf.int32), _seed(seed, 0)).numpy()


_RUNNERS = {}   # evaluate's compiled runners: key -> (optimizer, optimizee, runner)


SELECTIONS = ("last_truncation", "horizon_mean")


class MetaTrainer:
    """Truncated-BPTT meta-trainer of a :class:`model_free.base.LearnedOptimizer`.

    Args:
      optimizer: the learned optimizer (its weights are trained).
      optimizee: an :class:`open_l2o_tf.optimizees.base.Optimizee`.
      unroll: optimizee steps per episode (100); ``truncation``: steps per meta-update (20).
      lr: Adam learning rate on the optimizer weights (1e-3).
      second_order: keep gradients through the optimizee gradients.
      curriculum: optional :class:`model_free.curriculum.Curriculum` (sets the horizon).
      imitation: optional :class:`model_free.imitation.Imitation`.
      eval_every, eval_instances: model selection period and held-out instance count.
      selection: ``"last_truncation"`` (the original's score) or ``"horizon_mean"``.
      ckpt_dir: where ``meta_state.json`` + weights are written (resume); None: none.
      random_scale: None, or the bound r of RNNprop's random scaling ``exp(U(-r, r))``
        (3.0 in the original; off in Open-L2O's runs).
      meta_objective: "sum" (the sum of the truncation's losses, DM/RNNprop) or "log_ratio"
        (L2O-Scale, spec §5.3: ``mean_t log(f_t / (f_init + 1e-6) + 1e-6)`` with ``f_init``
        the loss at the start of the episode, over ``[f_init, f(x_0) .. f(x_{T-1})]`` of the
        truncation as the original's ``metaopt.py``: the loss at the truncation's end enters
        the next truncation's objective).
      carry_state: carry the optimizer's state (RNN states, learning rates, accumulators)
        from the end of one episode into the next, resetting it only at the first episode
        of the run (L2O-Scale's ``metaopt.py`` with ``reset_rnn_params``: ``reset_state =
        first_unroll and k == 0``).  The carried state is in the checkpoint and a resumed
        run goes on with it (under ``mirrored`` each replica's shard; it starts afresh when
        resumed on another number of replicas, and under a multi-process strategy, where
        no process holds the other processes' shards).
      meta_optimizer: a Keras optimizer for the weights (default ``Adam(lr)``);
      clip_value: clip meta-gradients elementwise to ``±clip_value`` (None: no clipping).
      tb, progress, seed, jit_compile: as usual.
      deterministic: run the compiled truncations with Grappler off, so that a run repeats
        bit for bit (:mod:`open_l2o_tf.determinism`); None: the device's default
        (:func:`open_l2o_tf.device.policy`: yes on a CPU, no on a GPU).
      strategy: a ``tf.distribute`` strategy (:mod:`open_l2o_tf.distribute`) or None.  Under
        a strategy the ``B`` optimizee instances of an episode are split over the replicas
        (``B / replicas`` each; every instance tensor and parameter must be batch-first
        over the instances), each replica unrolls the learned optimizer on its instances
        and differentiates its part of the meta-objective, the meta-gradients are
        all-reduced (summed) and the meta-update is applied once per process.  The sum
        objective is a sum of means over instances, so the parts are ``1/B`` sums of the
        replica's instance losses; the log-ratio objective is not additive, so each replica
        weights its parts by ``d objective / d f_t`` at the all-reduced ``f_t`` (the chain
        rule: the same meta-gradient).  One network (an optimizee with per-example losses,
        ``example_losses``: the MNIST MLP of ``run.nn_training``) has no instances to split:
        its parameters and the optimizer state are copied to every replica, each replica
        takes ``b / replicas`` rows of every minibatch, the optimizee gradient is
        all-reduced at every step (first order only) and the meta-objective's parts are
        ``1/b`` sums of per-example losses.  Imitation episodes split the learned
        optimizer's coordinates (:meth:`model_free.imitation.Imitation.train_episode`).
        Model selection runs on the full held-out instances and the chief's score decides;
        only the chief writes checkpoints, and on resume it broadcasts them.
    """

    def __init__(self, optimizer, optimizee, *, unroll=100, truncation=20, lr=1e-3,
                 second_order=False, curriculum=None, imitation=None, eval_every=10,
                 eval_instances=2, ckpt_dir=None, tb=None, progress=print, seed=0,
                 jit_compile=False, random_scale=None, meta_objective="sum",
                 meta_optimizer=None, clip_value=None, selection="last_truncation",
                 carry_state=False, strategy=None, deterministic=None):
        self.strategy = strategy
        self.policy = device.policy(strategy, deterministic)
        self.chief = distribute.is_chief(strategy)
        self.opt, self.optimizee = optimizer, optimizee
        self.scaled = RandomlyScaled(optimizee, random_scale) if random_scale else None
        self.unroll, self.truncation = int(unroll), int(truncation)
        self.second_order = bool(second_order)
        self.curriculum, self.imitation = curriculum, imitation
        self.eval_every, self.eval_instances = int(eval_every), int(eval_instances)
        self.ckpt_dir = ckpt_dir
        self.tb = tb or olog.TensorBoard(None)
        self.say = progress or (lambda *a, **k: None)
        self.seed, self.jit_compile = int(seed), bool(jit_compile)
        if meta_objective not in ("sum", "log_ratio"):
            raise ValueError(f"meta_objective must be 'sum' or 'log_ratio', got {meta_objective!r}")
        self.meta_objective = meta_objective
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.selection = selection
        self.carry_state, self._carried = bool(carry_state), None
        self._restored_carry = None     # arrays of the checkpoint, unpacked at the next episode
        self._runners = {}
        self.eval_jit = False   # XLA measured slower here (CPU, 25x50 Lasso: 50 s vs 15 s)
        self.clip_value = None if clip_value is None else float(clip_value)
        self.meta_opt = meta_optimizer or keras.optimizers.Adam(lr)
        self.meta_opt.build(self.opt.trainable_variables)
        self.il_opt = keras.optimizers.Adam(lr)
        self.il_opt.build(self.opt.trainable_variables)
        self._shard_fns, self._distributed_fns = {}, {}
        self._truncation_fn = self._build_truncation() if strategy is None else None
        self.history = {"episode_loss": [], "eval": [], "skipped": []}
        self.episode = 0
        self.best_score, self.best_weights = np.inf, None
        self.train_seconds, self.truncations = 0.0, 0

    # -- one truncation ----------------------------------------------------------------
    def _unroll(self, params, state, instance, seed, step0, loss_fn, reduce_grads=None):
        """``T`` steps of the learned optimizer from ``params``; ``(losses, x, state)``
        with the ``T + 1`` values of ``loss_fn(x, instance, batch)`` at ``theta_0 ..
        theta_T`` (each step's gradient is of that loss, passed through ``reduce_grads``
        when given: the all-reduce of a minibatch split)."""
        optimizee, T = self.scaled or self.optimizee, self.truncation
        losses, x = [], params
        for t in range(T):
            batch = optimizee.sample_batch(tf.stack([seed[0], seed[1] + step0 + t]))
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = loss_fn(x, instance, batch)
            grads = inner.gradient(loss, x)
            if not self.second_order:
                grads = [tf.stop_gradient(g) for g in grads]
            if reduce_grads is not None:
                grads = reduce_grads(grads)
            losses.append(loss)
            steps, state = self.opt.update(grads, state, x, training=True)
            x = [p + d for p, d in zip(x, steps)]
        batch = optimizee.sample_batch(tf.stack([seed[0], seed[1] + step0 + T]))
        losses.append(loss_fn(x, instance, batch))
        return losses, x, state

    def _objective(self, losses, f_init):
        """The meta-objective of a truncation from its ``T + 1`` losses: their sum, or
        L2O-Scale's mean log ratio over ``[f(start), f(theta_0 .. theta_{T-1})]``."""
        if self.meta_objective == "sum":
            return tf.add_n(losses)
        values = tf.stack([tf.reshape(f_init, [])] + list(losses[:-1]))
        return tf.reduce_mean(tf.math.log(values / (f_init + 1e-6) + 1e-6))

    def _apply_meta(self, total, meta_grads):
        """Clips the meta-gradients, applies them when they and ``total`` are finite;
        returns ``finite``."""
        variables = self.opt.trainable_variables
        if self.clip_value is not None:
            meta_grads = [None if g is None else
                          tf.clip_by_value(g, -self.clip_value, self.clip_value)
                          for g in meta_grads]
        finite = tf.math.is_finite(total)
        for g in meta_grads:
            if g is not None:
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
        if finite:
            self.meta_opt.apply_gradients(
                [(g, v) for g, v in zip(meta_grads, variables) if g is not None])
        return finite

    @staticmethod
    def _detached(x, state):
        return [tf.stop_gradient(p) for p in x], tf.nest.map_structure(tf.stop_gradient, state)

    def _build_truncation(self):
        """The one-device truncation ``(params, state, instance, seed, step0, f_init) ->
        (x, state, total, finite)``: :func:`distribute.synchronous_step` without a
        strategy (one compiled call, ``jit_compile``)."""
        optimizee = self.scaled or self.optimizee
        variables = self.opt.trainable_variables

        def part(params, state, instance, seed, step0, f_init):
            with tf.GradientTape() as tape:
                losses, x, state = self._unroll(params, state, instance, seed, step0,
                                                optimizee.loss)
                total = self._objective(losses, f_init)
            return self._detached(x, state), total, tape.gradient(total, variables)

        # Grappler off: with it the meta-loss changed in the last bits from one trace to
        # the next (1024 instances), so two runs with the same seed recorded other losses
        step = without_graph_rewrites(distribute.synchronous_step(
            None, part, self._apply_meta, variables, self.jit_compile),
            not self.policy.graph_rewrites)

        def truncation(*args):
            (x, state), total, finite = step(*args)
            return x, state, total, finite
        return truncation

    def _build_distributed_truncation(self, minibatch_rows):
        """The truncation under ``self.strategy`` (:func:`distribute.synchronous_step`):
        ``params``, ``state`` and ``instance`` are the replicas' shards (per-replica
        values), the returned ``(x, state)`` too; ``total`` and ``finite`` are the whole
        batch's.  Each replica's losses are ``1/B`` sums of its instances' losses (the parts
        of the whole batch's means; with ``minibatch_rows``, one network: ``1/b`` sums of
        the per-example losses of its ``minibatch_rows`` rows of every minibatch, and the
        optimizee gradient is all-reduced at every step, so every replica takes the same
        steps); the objective is taken of their all-reduced sums, and each replica's part
        of the meta-gradient is that of ``sum_t (d objective / d f_t) part_t`` (the chain
        rule: the parts' meta-gradients sum to the single-device one)."""
        optimizee = self.scaled or self.optimizee
        variables = self.opt.trainable_variables
        reduce_grads = None
        if minibatch_rows:
            rows = lambda t: distribute.replica_rows(t, minibatch_rows)  # noqa: E731

            def loss_part(x, instance, batch):
                batch = tf.nest.map_structure(rows, batch)
                return tf.reduce_sum(optimizee.example_losses(x, instance, batch))

            reduce_grads = distribute.replica_sum
        else:
            def loss_part(x, instance, batch):
                return tf.reduce_sum(optimizee.instance_losses(x, instance, batch))

        def part(params, state, instance, seed, step0, f_init, count):
            def scaled_part(x, instance, batch):
                return loss_part(x, instance, batch) / count

            with tf.GradientTape() as tape:
                parts, x, state = self._unroll(params, state, instance, seed, step0,
                                               scaled_part, reduce_grads)
                parts = tf.stack(parts)
                full = distribute.replica_sum(tf.stop_gradient(parts))   # the whole f_t
                with tf.GradientTape() as outer:
                    outer.watch(full)
                    total = self._objective(tf.unstack(full), f_init)
                weights = tf.stop_gradient(outer.gradient(total, full))
                surrogate = tf.reduce_sum(weights * parts)
            return self._detached(x, state), total, tape.gradient(surrogate, variables)

        return without_graph_rewrites(distribute.synchronous_step(
            self.strategy, part, self._apply_meta, variables), not self.policy.graph_rewrites)

    def _split_mode(self, params, instance):
        """How an episode is split over the replicas: ``("minibatch", b)`` for one network
        trained on minibatches of ``b`` examples (an optimizee with per-example losses,
        ``example_losses``), ``("instances", B)`` when every parameter and instance tensor
        is batch-first over the ``B`` instances; else a UserError."""
        optimizee = self.scaled or self.optimizee
        if getattr(optimizee, "example_losses", None) is not None:
            if self.second_order:
                raise UserError("meta-training one network with its minibatch split over "
                                "replicas keeps first-order meta-gradients only; "
                                "second_order=True needs one device")
            batch = optimizee.sample_batch(_seed(self.seed, 0))
            sizes = {int(t.shape[0]) for t in tf.nest.flatten(batch)}
            if len(sizes) != 1:
                raise UserError(f"{type(self.optimizee).__name__}'s minibatch tensors have "
                                f"different leading sizes {sorted(sizes)}; cannot split it")
            return "minibatch", sizes.pop()
        count = int(params[0].shape[0]) if params and params[0].shape.rank else 0
        bad = None
        for name, value in [(f"parameter {i}", p) for i, p in enumerate(params)] + [
                (f"instance[{k!r}]", v) for k, v in instance.items() for v in
                tf.nest.flatten(v)]:
            if value.shape.rank == 0 or int(value.shape[0]) != count:
                bad = bad or (name, tuple(value.shape))
        if bad is None:
            return "instances", count
        name, shape = bad
        raise UserError(
            f"meta-training under a tf.distribute strategy splits an episode's optimizee "
            f"instances (or one network's minibatch) over the replicas; "
            f"{type(self.optimizee).__name__}'s {name} has shape {shape}, not batch-first "
            f"over its {count} instances, and it has no per-example losses "
            f"(example_losses) to split a minibatch")

    def _shard(self, params, instance, state_seed):
        """The replicas' shares of an episode: ``(params, state, instance, count, fn)``,
        ``count`` the ``B`` instances (or ``b`` minibatch examples) the replicas' parts are
        divided by and ``fn`` the truncation.  The initial state is built on all instances,
        as on one device (L2O-Scale draws random initial learning rates: the same draws),
        then split (:func:`distribute.shard_state`); one network's parameters and state are
        copied to every replica (the minibatch is split)."""
        mode, count = self._split_mode(params, instance)
        what = ("number of optimizee instances of an episode" if mode == "instances"
                else "minibatch size of the network's optimizee")
        per = distribute.per_replica_size(count, self.strategy, what)
        state = initial_state(self.opt, params, state_seed)
        shapes = tuple(tuple(int(d) for d in p.shape) for p in params)
        key = (mode, shapes)
        if key not in self._shard_fns:
            if mode == "instances":
                rows = lambda t: distribute.replica_rows(t, per)  # noqa: E731

                def shard(params, state, instance):
                    return ([rows(p) for p in params],
                            distribute.shard_state(state, shapes, per),
                            tf.nest.map_structure(rows, instance))
            else:
                def shard(params, state, instance):
                    return (tf.nest.map_structure(tf.identity, (params, state, instance)))
            self._shard_fns[key] = distribute.splitter(self.strategy, shard)
        if mode not in self._distributed_fns:
            self._distributed_fns[mode] = self._build_distributed_truncation(
                per if mode == "minibatch" else None)
        params, state, instance = self._shard_fns[key](list(params), state, dict(instance))
        return params, state, instance, count, self._distributed_fns[mode]

    # -- episodes ----------------------------------------------------------------------
    @property
    def horizon(self):
        return self.curriculum.horizon if self.curriculum else self.unroll

    @property
    def eval_horizon(self):
        """The horizon candidates are scored at: the next stage's with a curriculum."""
        return self.curriculum.eval_horizon if self.curriculum else self.unroll

    def run_episode(self, episode):
        seed = _seed(self.seed, episode)
        instance = self.optimizee.sample_instance(seed)
        params = self.optimizee.init_params(seed + [0, 1], instance)
        if self.imitation is not None and self.imitation.use_imitation(
                episode, self.curriculum.stage if self.curriculum else None):
            loss = self.imitation.train_episode(self.opt, self.il_opt, self.optimizee,
                                                instance, params, self.horizon,
                                                self.truncation, seed, self.strategy)
            return loss, True
        if self.scaled is not None:
            instance, params = self.scaled.scale(instance, params, seed + [0, 2])
        full_params, full_instance = params, instance
        if self.strategy is not None:
            params, state, instance, count, truncation_fn = self._shard(params, instance,
                                                                        seed + [0, 3])
            extra = (tf.constant(float(count)),)

            def step(*args):
                (x, state), total, finite = truncation_fn(*args)
                return x, state, total, finite
        else:
            state = initial_state(self.opt, params, seed + [0, 3])
            extra, step = (), self._truncation_fn
        if self.carry_state and self._restored_carry is not None:
            self._carried = self._unpack_carried(self._restored_carry, state)
            self._restored_carry = None
        if self.carry_state and self._carried is not None and all(
                a.shape == b.shape for a, b in zip(self._local_leaves(self._carried),
                                                   self._local_leaves(state))):
            state = self._carried
        f_init = tf.constant(1.0)   # only the log-ratio objective reads it
        if self.meta_objective == "log_ratio":
            optimizee = self.scaled or self.optimizee
            f_init = optimizee.loss(full_params, full_instance, optimizee.sample_batch(seed))
        total = 0.0
        for k in range(max(1, self.horizon // self.truncation)):
            params, state, loss, finite = step(
                params, state, instance, seed, tf.constant(k * self.truncation, tf.int32),
                f_init, *extra)
            self.truncations += 1
            if not bool(finite):
                message = (f"non-finite meta-loss/gradient at episode {episode + 1} "
                           f"truncation {k + 1}; update skipped, episode ended")
                self.say(f"[meta] WARNING: {message}")
                self.history["skipped"].append(message)
                return float("nan"), False
            total += float(loss)
        if self.carry_state:
            self._carried = state
        return total, False

    def _local_leaves(self, state):
        if self.strategy is not None:
            state = distribute.first_local(self.strategy, state)
        return tf.nest.flatten(state)

    def _carried_arrays(self):
        """The carried state for the checkpoint: one array per leaf, stacked over the
        replicas (``[R, ...]``, ``R = 1`` on one device); None when there is none to save
        (no carry yet, or a multi-process strategy: a process holds its own replicas'
        shards only)."""
        if not self.carry_state or self._carried is None or distribute.multi_process(
                self.strategy):
            return None
        if self.strategy is None:
            return [np.asarray(leaf)[None] for leaf in tf.nest.flatten(self._carried)]
        return [np.stack([np.asarray(v) for v in
                          self.strategy.experimental_local_results(leaf)])
                for leaf in tf.nest.flatten(self._carried)]

    def _unpack_carried(self, arrays, template):
        """The checkpoint's carried state (:meth:`_carried_arrays`) in the structure of a
        fresh ``template`` state (per-replica values under a strategy); None, with a note,
        when it does not fit (another replica count or problem size: the state starts
        afresh)."""
        leaves = self._local_leaves(template)
        replicas = distribute.num_replicas(self.strategy)
        if len(arrays) != len(leaves) or any(
                a.shape != (replicas,) + tuple(leaf.shape) for a, leaf in zip(arrays, leaves)):
            self.say(f"[meta] the checkpoint's carried optimizer state does not fit "
                     f"{replicas} replica(s) of this problem; it starts afresh")
            return None
        if self.strategy is None:
            values = [tf.constant(a[0]) for a in arrays]
        else:
            values = [self.strategy.experimental_distribute_values_from_function(
                lambda ctx, a=a: tf.constant(a[ctx.replica_id_in_sync_group]))
                for a in arrays]
        return tf.nest.pack_sequence_as(template, values)

    def score(self, horizon=None, instances=None):
        """The model-selection score on fixed held-out instances (lower is better), at
        ``horizon`` (default :attr:`eval_horizon`); see ``selection``."""
        horizon = int(horizon or self.eval_horizon)
        scores = []
        for i in range(instances or self.eval_instances):
            seed = _seed(10 ** 6 + self.seed, i)
            instance = self.optimizee.sample_instance(seed)
            params = list(self.optimizee.init_params(seed + [0, 1], instance))
            if horizon not in self._runners:
                scale = 1.0 / _batch_count(self.optimizee, params, instance, 10 ** 6 + i)
                self._runners[horizon] = make_runner(self.opt, self.optimizee, horizon, scale,
                                                     jit_compile=self.eval_jit,
                                                     seeded_state=True)
            curve = self._runners[horizon](params, instance,
                                           tf.constant(10 ** 6 + i, tf.int32),
                                           _seed(10 ** 6 + i, 0)).numpy()
            if self.selection == "last_truncation":
                tail = curve[-(min(self.truncation, horizon) + 1):]
                scores.append(float(np.mean(np.sum(tail, axis=0))))
            else:
                scores.append(float(np.mean(curve)))
        return distribute.chief_value(self.strategy, np.mean(scores))   # the chief's decides

    def weights(self):
        return [v.numpy() for v in self.opt.weights]

    def set_weights(self, values):
        for v, value in zip(self.opt.weights, values):
            v.assign(value)

    PROGRESS_EVERY = 10     # episodes between progress lines (and checkpoints) of train

    def train(self, num_episodes):
        """Meta-trains up to ``num_episodes`` episodes in total (resuming from
        ``ckpt_dir``); ends with the best weights.  The checkpoint (every ``eval_every``
        and every ``PROGRESS_EVERY`` episodes, with a progress line, and at the end) holds the last weights, so a resumed run, or one continued
        to more episodes, goes on from where it stopped."""
        self.restore()
        start = time.time()
        while self.episode < num_episodes:
            if self.curriculum is not None and self.curriculum.finished:
                self.say("[meta] curriculum finished")
                break
            t0 = time.time()
            loss, imitation = self.run_episode(self.episode)
            self.history["episode_loss"].append(loss)
            self.tb.scalar("meta/imitation_loss" if imitation else "meta/episode_loss",
                           loss, self.episode)
            self.episode += 1
            if self.episode % self.eval_every == 0 or self.episode == num_episodes:
                score = self.score()
                self.history["eval"].append((self.episode, score))
                self.tb.scalar("meta/heldout_score", score, self.episode)
                improved = score < self.best_score
                if improved:
                    self.best_score, self.best_weights = score, self.weights()
                if self.curriculum is not None:
                    action = self.curriculum.on_evaluation(score, improved)
                    if action == "advance":
                        self.set_weights(self.best_weights)
                        self.best_score = self.score()
                        self.say(f"[meta] curriculum -> stage {self.curriculum.stage} "
                                 f"(horizon {self.curriculum.horizon})")
                self.train_seconds += time.time() - start
                start = time.time()
                self.save()
                self.tb.flush()
                self.say(f"[meta] episode {self.episode}/{num_episodes} "
                         f"{'IL' if imitation else 'meta'}-loss={loss:.4g} "
                         f"held-out={score:.4g} best={self.best_score:.4g} "
                         f"({time.time() - t0:.1f} s/episode)")
            elif self.episode % self.PROGRESS_EVERY == 0:
                # between evaluations (every 100 episodes for DM): a progress line and a
                # checkpoint, so a long run shows it is alive and an interrupt loses little
                self.train_seconds += time.time() - start
                start = time.time()
                self.save()
                self.say(f"[meta] episode {self.episode}/{num_episodes} "
                         f"{'IL' if imitation else 'meta'}-loss={loss:.4g} "
                         f"({time.time() - t0:.1f} s/episode)")
        self.train_seconds += time.time() - start
        self.save()         # the last weights: train(more episodes) continues from them
        if self.best_weights is not None:
            self.set_weights(self.best_weights)
        self.tb.flush()
        return self.history

    # -- checkpoints -------------------------------------------------------------------
    STATE_FILE = "trainer_state.npz"

    def save(self):
        """Writes the checkpoint (the chief only).  ``trainer_state.npz``, one atomic file,
        is what a resume reads: the current and best weights, both Keras optimizers' slots,
        the carried optimizer state and the progress (:meth:`_progress`: counters, best
        score, curriculum, imitation RNG, history), so a kill between two files of the
        checkpoint never mixes two of its generations.  ``last.npz`` / ``best.npz``
        (loadable with ``--load``) and ``meta_state.json`` (the progress, readable) are
        written beside it."""
        if not self.ckpt_dir or not self.chief:
            return
        carried = self._carried_arrays()
        os.makedirs(self.ckpt_dir, exist_ok=True)
        current = self.weights()
        if self.best_weights is not None:
            self.set_weights(self.best_weights)
            pretrained.save_optimizer(self.opt, os.path.join(self.ckpt_dir, "best.npz"))
        self.set_weights(current)
        pretrained.save_optimizer(self.opt, os.path.join(self.ckpt_dir, "last.npz"))
        progress = self._progress()
        arrays = {f"w{i}": w for i, w in enumerate(current)}
        arrays.update({f"best{i}": w for i, w in enumerate(self.best_weights or [])})
        arrays.update({f"v{i}": v.numpy() for i, v in enumerate(self.meta_opt.variables)})
        arrays.update({f"il{i}": v.numpy() for i, v in enumerate(self.il_opt.variables)})
        arrays.update({f"carried{i}": a for i, a in enumerate(carried or [])})
        olog.atomic_save_npz(os.path.join(self.ckpt_dir, self.STATE_FILE), arrays, progress)
        olog.atomic_write_json(os.path.join(self.ckpt_dir, "meta_state.json"), progress)

    def restore(self):
        """Loads the last checkpoint; returns True when there was one.  Under a
        multi-worker strategy the chief reads it and broadcasts it (weights, best weights,
        both optimizers' slots, counters, curriculum, imitation RNG, history); the carried
        optimizer state is not broadcast (each process would need every replica's shard):
        there a resumed run starts it afresh."""
        return distribute.restore_trainer(
            self.strategy, self,
            list(self.opt.weights) + list(self.meta_opt.variables) + list(self.il_opt.variables),
            self.weights())

    def _progress(self):
        return {"episode": self.episode, "best_score": self.best_score,
                "train_seconds": self.train_seconds, "truncations": self.truncations,
                "curriculum": self.curriculum.state() if self.curriculum else None,
                "imitation_rng": (self.imitation.rng.bit_generator.state
                                  if self.imitation is not None else None),
                "history": self.history}

    def _load_progress(self, state):
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
            self.history = olog.history_from_json(state["history"], ("episode_loss",))

    def _check_kind(self):
        """A UserError when ``last.npz`` holds another optimizer or configuration."""
        _, last = pretrained.load_optimizer(os.path.join(self.ckpt_dir, "last.npz"))
        ours = [tuple(v.shape) for v in self.opt.weights]
        if type(last) is not type(self.opt) or [tuple(v.shape) for v in last.weights] != ours:
            raise UserError(f"{self.ckpt_dir} holds the checkpoint of a different optimizer "
                            f"({type(last).__name__}, not {type(self.opt).__name__} with this "
                            f"configuration); use another --workdir or delete that folder")
        return last

    def _restore_file(self):
        if not self.ckpt_dir:
            return False
        path = os.path.join(self.ckpt_dir, self.STATE_FILE)
        if not os.path.exists(path):
            return self._restore_legacy()
        self._check_kind()
        variables = {"v": self.meta_opt.variables, "il": self.il_opt.variables,
                     "w": self.opt.weights}
        try:
            with np.load(path, allow_pickle=False) as data:
                progress = json.loads(str(data["progress"]))
                values = {prefix: [data[f"{prefix}{i}"] for i in range(len(vs))]
                          for prefix, vs in variables.items()}
                best = [data[f"best{i}"] for i in range(len(self.opt.weights))
                        if f"best{i}" in data.files]
                carried = [data[f"carried{i}"] for i in range(len(data.files))
                           if f"carried{i}" in data.files]
            if not isinstance(progress, dict) or not isinstance(progress.get("episode"), int):
                raise ValueError("no progress")
        except Exception as err:  # pylint: disable=broad-except
            raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}: expected "
                            f"the .npz of {type(self.opt).__name__}'s weights, optimizer "
                            f"slots and progress); delete {self.ckpt_dir} to start over") \
                from None
        for prefix, vs in variables.items():
            for v, value in zip(vs, values[prefix]):
                v.assign(value)
        self.best_weights = best or None
        self._restored_carry = None
        if carried and self.carry_state and not distribute.multi_process(self.strategy):
            self._restored_carry = carried
        with unreadable_progress(path, self.ckpt_dir):
            self._load_progress(progress)
        self.say(f"[meta] resumed at episode {self.episode}")
        return True

    def _restore_legacy(self):
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
            _, best = pretrained.load_optimizer(best_path)
            self.best_weights = [v.numpy() for v in best.weights]
        meta_path = os.path.join(self.ckpt_dir, "meta_optimizer.npz")
        if os.path.exists(meta_path):
            with np.load(meta_path, allow_pickle=False) as data:
                for prefix, opt in (("v", self.meta_opt), ("il", self.il_opt)):
                    keys = [f"{prefix}{i}" for i in range(len(opt.variables))]
                    if all(k in data.files for k in keys):
                        for k, v in zip(keys, opt.variables):
                            v.assign(data[k])
        with unreadable_progress(os.path.join(self.ckpt_dir, "meta_state.json"),
                                 self.ckpt_dir):
            self._load_progress(state)
        self.say(f"[meta] resumed at episode {self.episode}")
        return True
