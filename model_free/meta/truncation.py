"""The compiled truncation of truncated-BPTT meta-training, on one device or sharded over
the replicas of a ``tf.distribute`` strategy (spec model_free §1).

Within a truncation of ``T`` steps

    f_t = f(x_t),   g_t = stop_gradient(grad f(x_t)),   (d_t, s_{t+1}) = opt(g_t, s_t),
    x_{t+1} = x_t + d_t,        meta-loss = sum_{t=0}^{T} f(x_t)

(``second_order=True`` keeps the gradient through ``g_t``; L2O-Scale's ``"log_ratio"``
objective is ``mean_t log(f_t / (f_init + 1e-6) + 1e-6)`` over ``[f_init, f(x_0) ..
f(x_{T-1})]``, ``f_init`` the loss at the start of the episode), then one meta-update of
the optimizer's weights (clipped, applied only when finite:
:func:`open_l2o_tf.trainer_support.apply_if_finite`).  A truncation is one ``tf.function``
with Grappler off when the device policy says so (:mod:`open_l2o_tf.determinism`),
XLA-compiled when the recipe says so (L2O-Scale's, on the neural networks) and the
optimizee suits XLA on this device (:func:`model_free.meta.recipe.compiles`).

Under a strategy (:meth:`Truncations.start`) the ``B`` instances of an episode are split
over the replicas (every instance tensor and parameter batch-first), each replica
differentiates its part of the objective and the meta-gradients are all-reduced
(:func:`open_l2o_tf.distribute.synchronous_step`).  The sum objective is a sum of means
over instances, so the parts are ``1/B`` sums of the replica's instance losses; the
log-ratio objective is not additive, so each replica weights its parts by ``d objective /
d f_t`` at the all-reduced ``f_t`` (the chain rule: the same meta-gradient).  One network
(an optimizee with per-example losses, ``example_losses``) has no instances to split: its
parameters and the optimizer state are copied to every replica, each replica takes ``b /
replicas`` rows of every minibatch and the optimizee gradient is all-reduced at every step
(first order only).
"""
import tensorflow as tf

from model_free.meta.evaluation import initial_state, stateless_seed
from model_free.meta.recipe import compiles
from open_l2o_tf import distribute
from open_l2o_tf.determinism import without_graph_rewrites
from open_l2o_tf.errors import UserError
from open_l2o_tf.trainer_support import apply_if_finite, pairs


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


class Truncations:
    """The compiled truncations of one run: ``start(params, instance, state_seed)`` gives an
    episode's ``(params, state, instance, step)`` (the replicas' shards under a strategy),
    and ``step(params, state, instance, seed, step0, f_init) -> (params, state, total,
    finite)`` runs one truncation and its meta-update (``meta_opt``, clipped to
    ``+-recipe.clip_value``).  ``problem`` is the optimizee as the optimizer sees it (the
    randomly scaled one with ``recipe.random_scale``)."""

    def __init__(self, opt, optimizee, recipe, meta_opt, strategy=None, graph_rewrites=False):
        self.opt, self.optimizee, self.meta_opt = opt, optimizee, meta_opt
        self.scaled = (RandomlyScaled(optimizee, recipe.random_scale)
                       if recipe.random_scale else None)
        self.length, self.second_order = int(recipe.truncation), bool(recipe.second_order)
        self.meta_objective, self.seed = recipe.meta_objective, int(recipe.seed)
        self.clip_value = None if recipe.clip_value is None else float(recipe.clip_value)
        self.jit_compile = compiles(recipe, optimizee)
        self.graph_rewrites = graph_rewrites
        self.strategy = strategy
        self._shard_fns, self._distributed_fns = {}, {}
        self.single = self._build_single() if strategy is None else None

    @property
    def problem(self):
        return self.scaled or self.optimizee

    def start(self, params, instance, state_seed):
        """An episode's ``(params, state, instance, step)``; the state is the optimizer's
        initial state (:func:`model_free.meta.evaluation.initial_state` from ``state_seed``)."""
        if self.strategy is None:
            return params, initial_state(self.opt, params, state_seed), instance, self.single
        params, state, instance, count, fn = self._shard(params, instance, state_seed)
        count = tf.constant(float(count))

        def step(*args):
            (x, state), total, finite = fn(*args, count)
            return x, state, total, finite
        return params, state, instance, step

    # -- the unroll and the objective ---------------------------------------------------
    def _unroll(self, params, state, instance, seed, step0, loss_fn, reduce_grads=None):
        """``T`` steps of the learned optimizer from ``params``; ``(losses, x, state)``
        with the ``T + 1`` values of ``loss_fn(x, instance, batch)`` at ``theta_0 ..
        theta_T`` (each step's gradient is of that loss, passed through ``reduce_grads``
        when given: the all-reduce of a minibatch split)."""
        optimizee, T = self.problem, self.length
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
        """Clips the meta-gradients and applies them when they and ``total`` are finite."""
        variables = self.opt.trainable_variables
        if self.clip_value is not None:
            meta_grads = [None if g is None else
                          tf.clip_by_value(g, -self.clip_value, self.clip_value)
                          for g in meta_grads]
        return apply_if_finite(
            lambda grads: self.meta_opt.apply_gradients(pairs(grads, variables)),
            meta_grads, total)

    @staticmethod
    def _detached(x, state):
        return [tf.stop_gradient(p) for p in x], tf.nest.map_structure(tf.stop_gradient, state)

    # -- one device -----------------------------------------------------------------------
    def _build_single(self):
        """The one-device truncation: :func:`distribute.synchronous_step` without a
        strategy (one compiled call, ``jit_compile``)."""
        optimizee = self.problem
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
            not self.graph_rewrites)

        def truncation(*args):
            (x, state), total, finite = step(*args)
            return x, state, total, finite
        return truncation

    # -- under a strategy -----------------------------------------------------------------
    def _build_distributed(self, minibatch_rows):
        """The truncation under the strategy: ``params``, ``state`` and ``instance`` are
        the replicas' shards, the returned ``(x, state)`` too; ``total`` and ``finite`` are
        the whole batch's.  Each replica's losses are ``1/B`` sums of its instances' losses
        (with ``minibatch_rows``, one network: ``1/b`` sums of the per-example losses of its
        rows of every minibatch, the optimizee gradient all-reduced at every step); the
        objective is taken of their all-reduced sums, and each replica's part of the
        meta-gradient is that of ``sum_t (d objective / d f_t) part_t``."""
        optimizee = self.problem
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
            self.strategy, part, self._apply_meta, variables), not self.graph_rewrites)

    def _split_mode(self, params, instance):
        """How an episode is split over the replicas: ``("minibatch", b)`` for one network
        trained on minibatches of ``b`` examples (an optimizee with per-example losses,
        ``example_losses``), ``("instances", B)`` when every parameter and instance tensor
        is batch-first over the ``B`` instances; else a UserError."""
        optimizee = self.problem
        if getattr(optimizee, "example_losses", None) is not None:
            if self.second_order:
                raise UserError("meta-training one network with its minibatch split over "
                                "replicas keeps first-order meta-gradients only; "
                                "second_order=True needs one device")
            batch = optimizee.sample_batch(stateless_seed(self.seed, 0))
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
            self._distributed_fns[mode] = self._build_distributed(
                per if mode == "minibatch" else None)
        params, state, instance = self._shard_fns[key](list(params), state, dict(instance))
        return params, state, instance, count, self._distributed_fns[mode]
