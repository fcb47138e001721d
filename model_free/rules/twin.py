"""Twin-L2O (Shen et al. ICLR 2021, "Learning a minimax optimizer: a pilot study"; paper
Section 4.4; spec model_free §7): two learned optimizers play ``min_u max_v f(u, v)``.

Each player is a coordinate-wise network ``LSTM(2 -> H) -> LSTM(H -> H) -> Linear(H -> 1)``
fed with ``[own gradient, opponent's gradient]`` (first order: the gradients carry no
meta-gradient).  Half-steps alternate, the min player first:

    u <- u + step_min(grad_u f(u, v), grad_v f(u, v))
    v <- v + step_max(grad_v f(u, v), grad_u f(u, v))          (at the new u)

where ``step = out`` after a warm-up; during the first ``warmup`` (20 %) of the half-steps
``step = sign(out) * lr_i`` with ``lr_i`` rising linearly from 1e-4 to 1e-1.  The
recurrent states start N(0, 0.01^2) and, as in the original, are multiplied by ``rescale``
(1e-4) before every call (``rescale=1`` keeps the LSTM memory).

Meta-training (one truncation = 10 half-steps): the min player's loss is the sum of
``f_new - f_prev`` over its half-steps, the max player's the sum of ``-(f_new - f_prev)``
over its own, both averaged over the instances; ``f_prev`` restarts at 0 at every
truncation (the original's quirk, kept).  Each network is updated by Adam(1e-4) with the
gradient of its own loss only (the original back-propagates the sum of both losses into
both networks; ``joint_loss=True`` restores that).
"""
import keras
import numpy as np
import tensorflow as tf

from model_free.meta import episodic
from model_free.rules.base import SonnetLSTM
from model_free.weights import pretrained
from open_l2o_tf import device, distribute
from open_l2o_tf.classic.gda import alternating_runner
from open_l2o_tf.determinism import without_graph_rewrites
from open_l2o_tf.errors import UserError
from open_l2o_tf.trainer_support import apply_if_finite, pairs


class TwinPlayer(keras.layers.Layer):
    """One player's network: two LSTMs and a linear read-out, per coordinate."""

    def __init__(self, hidden=50, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.lstm_1 = SonnetLSTM(self.hidden, 2, name="lstm_1")
        self.lstm_2 = SonnetLSTM(self.hidden, self.hidden, name="lstm_2")
        self.linear = keras.layers.Dense(1, name="linear")
        self.linear.build((None, self.hidden))
        self.built = True

    def call(self, features, state):
        s1, s2 = state
        h, s1 = self.lstm_1(features, s1)
        h, s2 = self.lstm_2(h, s2)
        return self.linear(h), (s1, s2)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class TwinL2O(keras.Model):
    """The two players; :meth:`half_step` moves one of them, the module's :func:`play`
    plays ``num_half_steps`` half-steps."""

    def __init__(self, hidden=50, rescale=1e-4, warmup=0.2, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.rescale, self.warmup = int(hidden), float(rescale), float(warmup)
        self.min_player = TwinPlayer(self.hidden, name="min_player")
        self.max_player = TwinPlayer(self.hidden, name="max_player")
        self.built = True

    def initial_state(self, params, seed):
        n = int(np.prod(params[0].shape))
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 8))
        draw = [0.01 * tf.random.stateless_normal([n, self.hidden], s) for s in seeds]
        player = lambda d: ((d[0], d[1]), (d[2], d[3]))  # noqa: E731
        return player(draw[:4]), player(draw[4:])

    def _scaled(self, state):
        return tf.nest.map_structure(lambda t: t * self.rescale, state)

    def half_step(self, problem, instance, u, v, state, index, total, minimise):
        """One half-step of one player; ``index`` counts half-steps from the start."""
        g_u, g_v = problem.gradients([u, v], instance)
        own, other = (g_u, g_v) if minimise else (g_v, g_u)
        features = tf.stack([tf.reshape(own, [-1]), tf.reshape(other, [-1])], axis=1)
        player = self.min_player if minimise else self.max_player
        p_state = state[0] if minimise else state[1]
        out, p_state = player(features, self._scaled(p_state))
        warm_steps = tf.maximum(tf.floor(self.warmup * tf.cast(total, tf.float32)), 1.0)
        i = tf.cast(index, tf.float32)
        lr = 1e-4 + (1e-1 - 1e-4) * tf.minimum(i / warm_steps, 1.0)
        step = tf.where(i < self.warmup * tf.cast(total, tf.float32),
                        tf.sign(out) * lr, out)
        step = tf.reshape(step, tf.shape(u))
        state = (p_state, state[1]) if minimise else (state[0], p_state)
        if minimise:
            return u + step, v, state
        return u, v + step, state

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "rescale": self.rescale,
                "warmup": self.warmup}


def twin_runner(twin, problem, num_half_steps, deterministic=None):
    """A compiled ``run(instance, u, v, state) -> (num_half_steps + 1, B)`` of :func:`play`
    (``state``: :meth:`TwinL2O.initial_state`), traced once for games of the same shapes
    (held-out play during meta-training and the test restarts reuse it), run with Grappler
    off so that its results repeat bit for bit
    (:func:`open_l2o_tf.determinism.no_graph_rewrites`) when ``deterministic`` (None: the
    device's default, :func:`open_l2o_tf.device.policy`: on a CPU yes, on a GPU no)."""

    def half_step(instance, i, u, v, state, minimise):
        return twin.half_step(problem, instance, u, v, state, i, num_half_steps, minimise)

    return without_graph_rewrites(alternating_runner(problem, num_half_steps, half_step),
                                  not device.policy(None, deterministic).graph_rewrites)


def play(twin, problem, instance, params, num_half_steps, seed=0, runner=None,
         deterministic=None):
    """Plays ``num_half_steps`` half-steps from ``params``; returns the per-instance saddle
    distance after every half-step, ``(num_half_steps + 1, B)``.  ``runner``: a
    :func:`twin_runner` of the same ``num_half_steps`` to reuse (None: a new one)."""
    run = runner or twin_runner(twin, problem, num_half_steps, deterministic)
    state = twin.initial_state(params, tf.constant([seed, 11], tf.int32))
    return run(instance, params[0], params[1], state).numpy()


class TwinTrainer(episodic.EpisodicTrainer):
    """Meta-training of :class:`TwinL2O` (spec §7): per epoch (one episode) a batch of fresh
    instances and starts, ``iterations`` half-steps in truncations of ``truncation`` (10),
    model selection every ``eval_every`` epochs by the mean saddle distance over the second
    half of ``eval_half_steps`` half-steps on fixed held-out instances (one compiled
    :func:`twin_runner`, traced once); resumable.  The compiled truncations and plays run
    with Grappler off, so a run repeats bit for bit with the same seed on one device
    (:mod:`open_l2o_tf.determinism`), when ``deterministic`` (None: the device's default,
    :func:`open_l2o_tf.device.policy`: yes on a CPU, no on a GPU).

    ``strategy``: a ``tf.distribute`` strategy or None.  Under a strategy the ``B`` games
    of an epoch (independent instances) are split over the replicas: the starts and the
    players' initial recurrent states are drawn for all ``B`` games as on one device and
    each replica takes its games' rows (:func:`open_l2o_tf.distribute.shard_state`); its
    parts of the two players' losses are ``1/B`` sums over its games, both players'
    meta-gradients are all-reduced and each Adam steps once per process
    (:func:`open_l2o_tf.distribute.synchronous_step`).  Held-out scoring plays all
    held-out games; the chief's score decides, the chief alone checkpoints."""

    tag = "twin"

    def __init__(self, twin, problem, *, iterations=100, truncation=10, meta_lr=1e-4,
                 eval_every=5, eval_instances=20, eval_half_steps=1000, joint_loss=False,
                 seed=0, progress=print, tb=None, ckpt_dir=None, strategy=None,
                 deterministic=None):
        if truncation % 2:
            raise ValueError("truncation must be even (it holds pairs of half-steps)")
        self.opt_min = keras.optimizers.Adam(meta_lr)
        self.opt_max = keras.optimizers.Adam(meta_lr)
        self.opt_min.build(twin.min_player.trainable_variables)
        self.opt_max.build(twin.max_player.trainable_variables)
        super().__init__(twin, {"min": self.opt_min, "max": self.opt_max},
                         eval_every=eval_every, progress=progress, tb=tb, ckpt_dir=ckpt_dir,
                         strategy=strategy)
        self.twin, self.problem = twin, problem
        self.iterations, self.truncation = int(iterations), int(truncation)
        self.eval_instances, self.eval_half_steps = int(eval_instances), int(eval_half_steps)
        self.joint_loss, self.seed = bool(joint_loss), int(seed)
        # Grappler off: with it the meta-gradients changed in the last bits from one trace
        # to the next, so two runs with the same seed trained different players
        self.policy = device.policy(strategy, deterministic)
        self._truncation = without_graph_rewrites(distribute.synchronous_step(
            strategy, self._truncation_part, self._apply,
            (twin.min_player.trainable_variables, twin.max_player.trainable_variables)),
            not self.policy.graph_rewrites)
        self._splitters, self._score_run = {}, None
        held = self.problem.sample_instance(10 ** 6 + self.seed, self.eval_instances)
        self.heldout = (held, self.problem.init_params(10 ** 6 + self.seed + 1, held))

    @property
    def epoch(self):
        return self.episode

    def _truncation_part(self, u, v, state, instance, index0, count):
        """One truncation on this replica's games: ``((u, v, state), (loss_min, loss_max),
        (min player's, max player's meta-gradients))``, the losses summed over replicas."""
        twin = self.twin
        with tf.GradientTape(persistent=True) as tape:
            loss_min, loss_max = tf.constant(0.0), tf.constant(0.0)
            f_prev = tf.zeros_like(self.problem.instance_losses([u, v], instance))
            for j in range(self.truncation):
                minimise = j % 2 == 0
                u, v, state = twin.half_step(self.problem, instance, u, v, state, index0 + j,
                                             self.iterations, minimise)
                f_new = self.problem.instance_losses([u, v], instance)
                reward = tf.reduce_sum(f_new - f_prev) / count
                if minimise:
                    loss_min += reward
                else:
                    loss_max -= reward
                f_prev = f_new
            if self.joint_loss:
                loss_min = loss_max = loss_min + loss_max
        g_min = tape.gradient(loss_min, twin.min_player.trainable_variables)
        g_max = tape.gradient(loss_max, twin.max_player.trainable_variables)
        carry = (tf.stop_gradient(u), tf.stop_gradient(v),
                 tf.nest.map_structure(tf.stop_gradient, state))
        return carry, distribute.replica_sum((loss_min, loss_max)), (g_min, g_max)

    def _apply(self, losses, grads):
        del losses
        g_min, g_max = grads
        v_min = self.twin.min_player.trainable_variables
        v_max = self.twin.max_player.trainable_variables

        def apply(grads):
            self.opt_min.apply_gradients(pairs(grads[0], v_min))
            self.opt_max.apply_gradients(pairs(grads[1], v_max))
        return apply_if_finite(apply, (list(g_min), list(g_max)))

    def _split(self, instance, u, v, state):
        """The replicas' games: rows of the instances and starts, the players' states'
        rows of their coordinates."""
        if self.strategy is None:
            return instance, u, v, state
        count = int(u.shape[0])
        per = distribute.per_replica_size(count, self.strategy, "number of games (optimizee "
                                          "instances) of an epoch")
        shapes = (tuple(int(d) for d in u.shape),)
        if shapes not in self._splitters:
            def split(instance, u, v, state):
                rows = lambda t: distribute.replica_rows(t, per)  # noqa: E731
                return (tf.nest.map_structure(rows, instance), rows(u), rows(v),
                        distribute.shard_state(state, shapes, per))
            self._splitters[shapes] = distribute.splitter(self.strategy, split)
        return self._splitters[shapes](instance, u, v, state)

    def run_episode(self, episode):
        seed = tf.constant([self.seed, episode], tf.int32)
        instance = self.problem.sample_instance(seed)
        u, v = self.problem.init_params(seed + [0, 1], instance)
        state = self.twin.initial_state([u, v], seed + [0, 2])
        count = tf.constant(float(u.shape[0]))
        instance, u, v, state = self._split(instance, u, v, state)
        total = 0.0
        for k in range(self.iterations // self.truncation):
            (u, v, state), (l_min, l_max), finite = self._truncation(
                u, v, state, instance, tf.constant(k * self.truncation), count)
            if not bool(finite):
                self.skipped(f"epoch {episode + 1} truncation {k + 1}")
                break
            total += float(l_min) - float(l_max)
        return total

    def score(self):
        instance, params = self.heldout
        if self._score_run is None:     # traced once, reused at every evaluation
            self._score_run = twin_runner(self.twin, self.problem, self.eval_half_steps,
                                          self.policy.deterministic)
        curve = play(self.twin, self.problem, instance, params, self.eval_half_steps,
                     seed=10 ** 6, runner=self._score_run)
        return float(np.mean(curve[self.eval_half_steps // 2 + 1:]))


def save_twin(twin, path):
    """Writes a trained Twin-L2O (weights + config, .npz), atomically."""
    pretrained.save_optimizer(twin, path)


def load_twin(path):
    """Reads a file written by :func:`save_twin` (numpy arrays only, no pickle)."""
    _, twin = pretrained.load_optimizer(path)
    if not isinstance(twin, TwinL2O):
        raise UserError(f"{path} holds a {type(twin).__name__}, not a Twin-L2O")
    return twin
