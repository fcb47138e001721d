"""L2O-Swarm (Cao, Chen, Wang & Shen, NeurIPS 2019, "Learning to optimize in swarms";
paper Section 4.3; spec model_free §6): a population of k = 4 particles moved by one shared
coordinate-wise LSTM whose input is an attention-weighted mix of four features.

For every problem instance separately (the original mixes the 128 instances; see the spec),
with particle positions ``x_p``, losses ``f_p`` and gradients ``g_p`` (no meta-gradient):

    S_g = softmax_row(G G^T),   S_x[i, j] = softmax_j(-1/2 x_j^T (x_j - x_i)),
    g^_p = g_p + (1/k) sum_j (S_g S_x)_pj g_j                      (sample-level attention)
    F = [g^_p, 0.9 g_p^prev, x_p - x_p^best, attraction_p]
    attraction_i = sum_j w_ij r_ij,  w_ij = softmax_j(-||r_ij||^2),
        r_ij = x_i - x_j when f_i <= f_j else 0                    (as coded; ``attraction=
        "toward_better"`` uses r_ij = x_j - x_i when f_j < f_i else 0)
    s_f = 1^T tanh(W [F_f; h_p] + b_f),   a = softmax_f(s),   u_p = sum_f a_f F_f
    x_p <- x_p + LSTM(u_p)                                          (coordinate-wise, scale 1)

``x^best`` is the population at the step with the smallest total loss so far and ``h_p``
the particle's previous step (both kept as state, as the paper intends; the released code
froze them at their initial values).  ``W`` is (10, 2 n), so a Swarm optimizer is built for
one problem dimension n.  Meta-loss per truncation: the mean over instances of the summed
particle losses, plus 0.001 times the entropy of the posterior over the minimiser
estimated from the visited points (:func:`posterior_entropy`), plus 1e-4 ||weights||^2.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from model_free.meta import episodic
from model_free.meta.recipe import DEFAULT_META_LR
from model_free.rules.base import SonnetLSTM
from model_free.rules.initial_draw import initializers
from model_free.weights import pretrained
from open_l2o_tf import device, distribute
from open_l2o_tf.determinism import without_graph_rewrites
from open_l2o_tf.errors import UserError
from open_l2o_tf.trainer_support import apply_if_finite, pairs

ATTRACTIONS = ("as_coded", "toward_better")


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class L2OSwarm(keras.Model):

    def __init__(self, dim, particles=4, hidden=20, attention_units=10,
                 attraction="as_coded", tied_lstm_init=False, tied_attention_init=False,
                 **kwargs):
        """``tied_lstm_init``: the LSTMs' initialisation before it was made Sonnet 1's
        (:class:`model_free.rules.base.SonnetLSTM` ``tied_init``).  ``tied_attention_init``: the
        attention weights' before it was made the original's: ONE unseeded Keras 3
        initializer served ``attention_w`` and ``attention_b``, and Keras 3 fixes such an
        initializer's seed when it is made, so ``attention_b`` held the first 40 values of
        ``attention_w`` (at n = 2 a copy of it); the original draws them with two ops
        (``L2O-Swarm/src/meta.py:346``, ``:348``, each ``tf.random_normal`` of N(0, 1)).
        ``--lstm_init=tied`` sets both."""
        super().__init__(**kwargs)
        self.tied_lstm_init = bool(tied_lstm_init)
        self.tied_attention_init = bool(tied_attention_init)
        if attraction not in ATTRACTIONS:
            raise UserError(f"attraction must be one of {ATTRACTIONS}, got {attraction!r}")
        self.dim, self.particles, self.hidden = int(dim), int(particles), int(hidden)
        self.attention_units, self.attraction = int(attention_units), attraction
        self.lstm_1 = SonnetLSTM(self.hidden, 1, tied_init=self.tied_lstm_init, name="lstm_1")
        self.lstm_2 = SonnetLSTM(self.hidden, self.hidden, tied_init=self.tied_lstm_init,
                                 name="lstm_2")
        self.linear = keras.layers.Dense(1, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=1.0 / self.hidden ** 0.5), name="linear")
        self.linear.build((None, self.hidden))
        normal = initializers(lambda: keras.initializers.RandomNormal(0.0, 1.0),
                              self.tied_attention_init)
        self.att_w = self.add_weight(name="attention_w", shape=(self.attention_units,
                                                                2 * self.dim),
                                     initializer=normal())
        self.att_b = self.add_weight(name="attention_b", shape=(self.attention_units, 4),
                                     initializer=normal())
        self.built = True

    # -- state ------------------------------------------------------------------------
    def initial_state(self, x):
        """``x``: particle positions (k, B, n)."""
        k, b, n = x.shape
        zeros = tf.zeros([k * b * n, self.hidden])
        col = tf.zeros_like(x)
        return (((zeros, zeros), (zeros, zeros)), col, col, x,
                tf.fill([b], tf.constant(np.inf, tf.float32)))

    # -- one step ---------------------------------------------------------------------
    def losses_and_grads(self, family, instance, x):
        k, b, n = x.shape
        tiled = {key: tf.tile(v, [k] + [1] * (len(v.shape) - 1)) for key, v in instance.items()}
        flat = tf.reshape(x, [k * b, n])
        with tf.GradientTape() as tape:
            tape.watch(flat)
            f = family.instance_losses([flat], tiled)
            total = tf.reduce_sum(f)
        g = tf.stop_gradient(tape.gradient(total, flat))
        return tf.reshape(f, [k, b]), tf.reshape(g, [k, b, n])

    def features(self, x, f, g, g_prev, x_best):
        k = self.particles
        X = tf.transpose(x, [1, 0, 2])            # (B, k, n)
        G = tf.transpose(g, [1, 0, 2])
        s_g = tf.nn.softmax(tf.einsum("bin,bjn->bij", G, G), axis=-1)
        # S_x[i, j] = softmax_j(-1/2 x_j . (x_j - x_i))
        logits = -0.5 * (tf.reduce_sum(X * X, -1)[:, None, :] - tf.einsum("bin,bjn->bij", X, X))
        s_x = tf.nn.softmax(logits, axis=-1)
        attended = G + (1.0 / k) * tf.einsum("bij,bjn->bin", tf.matmul(s_g, s_x), G)
        F = tf.transpose(f)                        # (B, k)
        diff = X[:, :, None, :] - X[:, None, :, :]  # x_i - x_j  (B, k, k, n)
        if self.attraction == "as_coded":
            keep = tf.cast(F[:, :, None] <= F[:, None, :], tf.float32)   # j not better
            r = diff * keep[..., None]
        else:
            keep = tf.cast(F[:, None, :] < F[:, :, None], tf.float32)    # j better
            r = -diff * keep[..., None]
        w = tf.nn.softmax(-tf.reduce_sum(r * r, -1), axis=-1)
        attraction = tf.einsum("bij,bijn->bin", w, r)
        feats = tf.stack([attended, 0.9 * tf.transpose(g_prev, [1, 0, 2]),
                          X - tf.transpose(x_best, [1, 0, 2]), attraction], axis=2)
        return feats                               # (B, k, 4, n)

    def step(self, family, instance, x, state):
        """One population step; returns ``(x_new, state, f(x))``."""
        lstm_state, h_prev, g_prev, x_best, best_total = state
        f, g = self.losses_and_grads(family, instance, x)
        total = tf.reduce_sum(f, 0)
        better = total < best_total
        x_best = tf.where(better[None, :, None], x, x_best)
        best_total = tf.where(better, total, best_total)
        feats = self.features(x, f, g, g_prev, x_best)
        n = self.dim
        w_f, w_h = self.att_w[:, :n], self.att_w[:, n:]
        H = tf.transpose(h_prev, [1, 0, 2])
        scores = tf.reduce_sum(tf.tanh(tf.einsum("bkfn,un->bkfu", feats, w_f)
                                       + tf.einsum("bkn,un->bku", H, w_h)[:, :, None, :]
                                       + tf.transpose(self.att_b)[None, None]), -1)
        weights = tf.nn.softmax(scores, axis=-1)   # over the 4 features
        u = tf.reduce_sum(weights[..., None] * feats, axis=2)   # (B, k, n)
        u = tf.reshape(tf.transpose(u, [1, 0, 2]), [-1, 1])
        h1, s1 = self.lstm_1(u, lstm_state[0])
        h2, s2 = self.lstm_2(h1, lstm_state[1])
        delta = tf.reshape(self.linear(h2), tf.shape(x))
        return x + delta, ((s1, s2), delta, g, x_best, best_total), f

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "particles": self.particles,
                "hidden": self.hidden, "attention_units": self.attention_units,
                "attraction": self.attraction, "tied_lstm_init": self.tied_lstm_init,
                "tied_attention_init": self.tied_attention_init}


def posterior_entropy(points, values, num_samples=1000, seed=0):
    """Entropy of the posterior over the minimiser (spec §6.4), per instance.

    ``points`` (B, N, D) visited positions, ``values`` (B, N) their losses.  A kernel
    interpolant ``f^(s) = k_s^T (K + 2.1 I)^-1 f`` with ``K = exp(-||x_i - x_j||^2 / 2)`` is
    evaluated at ``num_samples`` points ``s ~ N(0, 0.01^2 I)``; ``p(s) ~ exp(-rho f^(s))``
    (stabilised, plus 1e-4, normalised) and ``H = -sum p log p``, first with
    ``rho_0 = exp(sqrt(N) / (D log 5))``, then with ``rho = exp(sqrt(N) / H_0)``."""
    n_points, dim = int(points.shape[1]), int(points.shape[2])
    # squared distances as |a|^2 + |b|^2 - 2 a.b (no (B, S, N, D) intermediate)
    norms = tf.reduce_sum(tf.square(points), -1)                       # (B, N)
    sq = tf.maximum(norms[:, :, None] + norms[:, None, :]
                    - 2.0 * tf.einsum("bnd,bmd->bnm", points, points), 0.0)
    K = tf.exp(-0.5 * sq) + 2.1 * tf.eye(n_points)
    alpha = tf.linalg.solve(K, values[..., None])                     # (B, N, 1)
    s = 0.01 * tf.random.stateless_normal([num_samples, dim], [seed, 29])
    sq_s = tf.maximum(tf.reduce_sum(tf.square(s), -1)[None, :, None] + norms[:, None, :]
                      - 2.0 * tf.einsum("sd,bnd->bsn", s, points), 0.0)
    ks = tf.exp(-0.5 * sq_s)                                           # (B, S, N)
    fhat = tf.matmul(ks, alpha)[..., 0]                                # (B, S)

    def entropy(rho):
        logits = -rho * fhat
        c = tf.exp(logits - tf.reduce_max(logits, -1, keepdims=True)) + 1e-4
        p = c / tf.reduce_sum(c, -1, keepdims=True)
        return -tf.reduce_sum(p * tf.math.log(p), -1)

    root = math.sqrt(n_points)
    h0 = entropy(tf.exp(root / (dim * math.log(5.0))))
    return entropy(tf.exp(root / tf.maximum(h0[:, None], 1e-3)))


STARTS = ("origin", "test_start")


def start_particles(x0, particles, seed, start="origin"):
    """``k`` particles (k, B, n), i.i.d. ``N(0, 0.01^2)`` around the origin (``start=
    "origin"``, the original: ``L2O-Swarm/src/meta.py`` ``vars_init``, also at evaluation, so
    the paper's Swarm curves start at E f(0)) or around each test start ``x0``
    (``"test_start"``, where the other optimizers start)."""
    if start not in STARTS:
        raise UserError(f"swarm start must be one of {STARTS}, got {start!r}")
    noise = 0.01 * tf.random.stateless_normal([particles] + list(x0.shape), seed)
    return noise if start == "origin" else x0[None] + noise


def swarm_runner(swarm, num_steps, family, seed=0, start="origin", deterministic=None,
                 per_particle=False):
    """A compiled ``run(instance, x0) -> (num_steps + 1, B)`` of :func:`swarm_minimize`
    (``per_particle``: every particle's loss, ``(num_steps + 1, k, B)``),
    traced once for instances of the same shapes (held-out scoring reuses it), run with
    Grappler off so that its results repeat bit for bit
    (:func:`open_l2o_tf.determinism.no_graph_rewrites`) when ``deterministic`` (None: the
    device's default, :func:`open_l2o_tf.device.policy`: on a CPU yes, on a GPU no)."""

    def record(f):
        return f if per_particle else tf.reduce_min(f, 0)

    @tf.function
    def run(instance, x0):
        x = start_particles(x0, swarm.particles, tf.constant([seed, 31], tf.int32), start)
        state = swarm.initial_state(x)
        ta = tf.TensorArray(tf.float32, size=num_steps + 1)

        def body(t, x, state, ta):
            x, state, f = swarm.step(family, instance, x, state)
            return t + 1, x, state, ta.write(t, record(f))

        _, x, state, ta = tf.while_loop(lambda t, *_: t < num_steps, body,
                                        (tf.constant(0), x, state, ta))
        f, _ = swarm.losses_and_grads(family, instance, x)
        return ta.write(num_steps, record(f)).stack()

    return without_graph_rewrites(run, not device.policy(None, deterministic).graph_rewrites)


def swarm_minimize(swarm, family, instance, x0, num_steps, seed=0, start="origin",
                   deterministic=None, per_particle=False):
    """Runs the swarm for ``num_steps`` steps, its particles started by
    :func:`start_particles` (``x0`` (B, n): the test starts); returns the per-instance loss
    of the best particle at ``x_0 .. x_T``, ``(num_steps + 1, B)`` (ours: each instance's
    best particle), or with ``per_particle`` every particle's loss ``(num_steps + 1, k, B)``
    (from which :func:`best_particle_curve` and :func:`original_curve` reduce)."""
    return swarm_runner(swarm, num_steps, family, seed, start, deterministic,
                        per_particle)(instance, x0).numpy()


def best_particle_curve(losses):
    """Ours: the mean over instances of each instance's best particle,
    ``mean_b min_p f[t, p, b]``, from ``losses`` ``(T + 1, k, B)``; ``(T + 1,)``."""
    return np.asarray(losses).min(axis=1).mean(axis=1)


def original_curve(losses, groups=1):
    """The released L2O-Swarm evaluation's quantity: each particle's loss averaged over a
    batch of instances, then the minimum over the particles,
    ``min_p mean_b f[t, p, b]`` (``L2O-Swarm/src/meta.py:795-805``: ``fx_final`` holds
    ``tf.reduce_mean`` of each particle's batch losses; ``src/evaluate.py:75-77``:
    ``total_cost += min(cost)``, the minimum of that list).  It is never below
    :func:`best_particle_curve` (a min of means >= a mean of mins).

    ``losses`` ``(T + 1, k, B)`` with rows instance-major in ``groups`` interleaved batches
    (row = instance * groups + g, as the Rastrigin test set of ``--starts`` starts): the
    quantity is taken per batch g (the original evaluates one batch per epoch) and averaged
    over the batches (the original's ``total_cost / num_epochs``); ``(T + 1,)``."""
    losses = np.asarray(losses)
    steps, k, rows = losses.shape
    if rows % groups:
        raise ValueError(f"{rows} rows do not split into {groups} batches")
    per_batch = losses.reshape(steps, k, rows // groups, groups).mean(axis=2)   # (T+1, k, g)
    return per_batch.min(axis=1).mean(axis=1)


class SwarmTrainer(episodic.EpisodicTrainer):
    """Meta-training of :class:`L2OSwarm`: per episode fresh instances and starts, ``unroll``
    steps in truncations of ``truncation`` with BPTT, Adam(``meta_lr``) on the meta-loss above;
    model selection every ``eval_every`` episodes on held-out instances (mean best-particle
    loss over the horizon); checkpoints after every evaluation (resume).  ``start``: where
    the particles start, in training and held-out scoring (see :func:`start_particles`).
    The compiled truncations run with Grappler off, so a run repeats bit for bit with the
    same seed on one device (:mod:`open_l2o_tf.determinism`), when ``deterministic``
    (None: the device's default, :func:`open_l2o_tf.device.policy`: yes on a CPU, no on a
    GPU).

    ``strategy``: a ``tf.distribute`` strategy or None.  Under a strategy the ``B``
    instances of an episode are split over the replicas, each with its whole population:
    the particles of one instance interact (attention, attraction, the best position), so
    a population is never split, but instances are independent, so the split is exact.
    The particles are drawn for all ``B`` instances as on one device and each replica takes
    its instances' (axis 1 of ``(k, B, n)``); its part of the meta-loss is ``1/B`` times the
    sum over its instances (losses and posterior entropies) plus ``l2 / replicas`` times
    the weights' squared norm, so the parts add up to the single-device meta-loss; the
    meta-gradients are all-reduced and Adam steps once per process
    (:func:`open_l2o_tf.distribute.synchronous_step`).  Held-out scoring runs on all
    held-out instances; the chief's score decides, the chief alone checkpoints."""

    tag = "swarm"

    def __init__(self, swarm, family, *, unroll=100, truncation=20, meta_lr=DEFAULT_META_LR,
                 entropy_weight=1e-3, l2=1e-4, eval_every=10, eval_instances=16, seed=0,
                 progress=print, tb=None, ckpt_dir=None, start="origin", strategy=None,
                 deterministic=None):
        if start not in STARTS:
            raise UserError(f"swarm start must be one of {STARTS}, got {start!r}")
        self.start = start
        self.opt = keras.optimizers.Adam(meta_lr)
        self.opt.build(swarm.trainable_variables)
        super().__init__(swarm, {"adam": self.opt}, eval_every=eval_every, progress=progress,
                         tb=tb, ckpt_dir=ckpt_dir, strategy=strategy)
        self.swarm, self.family = swarm, family
        self.unroll, self.truncation = int(unroll), int(truncation)
        self.entropy_weight, self.l2, self.seed = float(entropy_weight), float(l2), int(seed)
        held = family.sample_instance(10 ** 6 + self.seed, eval_instances)
        self.heldout = (held, family.init_params(10 ** 6 + self.seed + 1, held)[0])
        # Grappler off: with it the meta-gradients changed in the last bits from one trace
        # (and call) to the next, so two runs with the same seed trained different swarms
        self.policy = device.policy(strategy, deterministic)
        self._truncation = without_graph_rewrites(distribute.synchronous_step(
            strategy, self._truncation_part, self._apply, swarm.trainable_variables),
            not self.policy.graph_rewrites)
        self._splitters, self._score_run = {}, None

    def _truncation_part(self, x, state, instance, seed, count):
        """One truncation on this replica's instances: ``((x, state), (meta-loss, total),
        meta-gradients)``, the losses summed over the replicas."""
        swarm, variables = self.swarm, self.swarm.trainable_variables
        with tf.GradientTape() as tape:
            points, values = [], []
            for _ in range(self.truncation):
                points.append(x)
                x, state, f = swarm.step(self.family, instance, x, state)
                values.append(f)
            f_last, _ = swarm.losses_and_grads(self.family, instance, x)
            points.append(x)
            values.append(f_last)
            total = tf.reduce_sum(tf.stack(values)) / count
            P = tf.concat(points, 0)               # ((T+1) k, B, n)
            V = tf.concat(values, 0)               # ((T+1) k, B)
            entropy = posterior_entropy(tf.transpose(P, [1, 0, 2]), tf.transpose(V),
                                        seed=seed)
            l2 = self.l2 / distribute.replica_count()
            loss = (total + self.entropy_weight * tf.reduce_sum(entropy) / count
                    + l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables]))
        grads = tape.gradient(loss, variables)
        carry = (tf.stop_gradient(x), tf.nest.map_structure(tf.stop_gradient, state))
        return carry, distribute.replica_sum((loss, total)), grads

    def _apply(self, losses, grads):
        variables = self.swarm.trainable_variables
        return apply_if_finite(lambda grads: self.opt.apply_gradients(pairs(grads, variables)),
                               grads, losses[0])

    def _split(self, instance, x):
        """The replicas' instances, particles and initial states (all particles drawn on
        every process, as on one device)."""
        count = int(x.shape[1])
        if self.strategy is None:
            return instance, x, self.swarm.initial_state(x)
        per = distribute.per_replica_size(count, self.strategy, "number of optimizee "
                                          "instances of an episode")
        if per not in self._splitters:
            def split(instance, x):
                instance = tf.nest.map_structure(
                    lambda t: distribute.replica_rows(t, per), instance)
                x = distribute.replica_rows(x, per, axis=1)
                return instance, x, self.swarm.initial_state(x)
            self._splitters[per] = distribute.splitter(self.strategy, split)
        return self._splitters[per](instance, x)

    def run_episode(self, episode):
        seed = tf.constant([self.seed, episode], tf.int32)
        instance = self.family.sample_instance(seed)
        x0 = self.family.init_params(seed + [0, 1], instance)[0]
        x = start_particles(x0, self.swarm.particles, seed + [0, 2], self.start)
        count = tf.constant(float(x.shape[1]))
        instance, x, state = self._split(instance, x)
        total = 0.0
        for k in range(max(1, self.unroll // self.truncation)):
            (x, state), (_, loss), finite = self._truncation(
                x, state, instance, tf.constant(episode * 100 + k), count)
            if not bool(finite):
                self.skipped(f"episode {episode + 1} truncation {k + 1}")
                break
            total += float(loss)
        return total

    def score(self):
        instance, x0 = self.heldout
        if self._score_run is None:
            self._score_run = swarm_runner(self.swarm, self.unroll, self.family,
                                           seed=10 ** 6, start=self.start,
                                           deterministic=self.policy.deterministic)
        return float(np.mean(self._score_run(instance, x0).numpy()))


def save_swarm(swarm, path):
    """Writes a trained L2O-Swarm (weights + config, .npz), atomically."""
    pretrained.save_optimizer(swarm, path)


def load_swarm(path, dim=None):
    """Reads a file written by :func:`save_swarm` (numpy arrays only, no pickle)."""
    _, swarm = pretrained.load_optimizer(path)
    if not isinstance(swarm, L2OSwarm):
        raise UserError(f"{path} holds a {type(swarm).__name__}, not an L2O-Swarm")
    if dim is not None and swarm.dim != dim:
        raise UserError(f"{path} is an L2O-Swarm for n = {swarm.dim}, not n = {dim} "
                        "(its attention weights depend on the dimension)")
    return swarm
