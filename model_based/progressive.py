"""Progressive (layer-wise) training of an unrolled network, as Open-L2O (spec model_based §6).

For every layer ``t = 0 .. T-1`` of the model (depth ``t + 1``), three stages:

1. Adam(lr = base_lr) on the variables first used by layer ``t`` only;
2. a fresh Adam(lr = 0.2 base_lr) on all variables of layers ``0..t``, each gradient
   multiplied by ``0.3^age`` (age = layers since the variable appeared);
3. a fresh Adam(lr = 0.02 base_lr), as stage 2.

An epoch is ``steps_per_epoch`` (400) steps of batch 128 from the shuffled training file;
after every epoch the validation metric (per-sample-mean NMSE in dB, or the Lasso objective)
is computed on one batch of 1,024; a stage stops after ``patience`` (5) epochs without a
strict improvement.  Only the last layer's output enters the loss: ``1/2 sum (x_T - x*)^2``
over the batch (``sc``), or for ``lasso`` the original's ``1/4 ||A x_T - y||^2 +
lam ||x_T||_1`` summed over the batch.

Kept original behaviours, each switchable:

* ``keep="last"``: the weights of the last epoch are kept (Keras EarlyStopping with
  ``restore_best_weights=False``); ``keep="best"`` restores the best epoch's.
* ``grad_multiplier=0.3`` multiplies *gradients* (almost no effect under Adam, as in the
  original; spec §6 caveat); ``decay_mode="lr"`` scales the step instead, which damps old
  layers for real.
* ``lasso_factor=0.25`` is the original's 1/4 (``0.5 * tf.nn.l2_loss``); 0.5 is the intended.
* Training batches come from the fixed file (Open-L2O).

Unlike the original (unseeded tf.data shuffle), batch order is a function of
``(seed, layer, stage, epoch)``, so a resumed run gives the same numbers as an
uninterrupted one.  A checkpoint is written after every stage (model weights, then an atomic
``progress.json`` that points at them); :meth:`ProgressiveTrainer.train` resumes after the
last finished stage.  A non-finite training loss ends the stage, restores the weights the
stage started from, and is reported with its layer, stage, epoch and step.

Speed (``engine="epoch"``, the default): a whole epoch is one compiled function (a
``tf.while_loop`` over the steps; batches gathered in the graph; the loss sum and the finite
check stay on the device until the epoch ends), validation and test are compiled, and in
stage 1 of layer ``t`` the fixed first ``t - 1`` layers are run once per stage on the
training and validation sets (:meth:`UnrolledModel.run_layers` gives ``(x_t, state_t)``),
so each step runs only layer ``t``.  Without XLA on a CPU, support selection finds its k-th
largest magnitude with NumPy's partition instead of ``top_k`` (:func:`shrinkage.kth_on_host`;
on a GPU ``top_k`` stays in the graph: :mod:`open_l2o_tf.device`).  ``engine="step"`` is
the previous trainer (one Python call per step, full forward pass every step), kept for
comparison (``run.perf --what=training``); both give the same numbers up to float
rounding.
"""
import math
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from model_based import shrinkage
from open_l2o_tf import device, distribute
from open_l2o_tf import logging as olog
from open_l2o_tf import metrics
from open_l2o_tf.classic import first_order
from open_l2o_tf.errors import UserError

STAGE_LR_FACTORS = (1.0, 0.2, 0.02)


class _AdamSlots:
    """The slots of the stage optimizer (:class:`open_l2o_tf.classic.first_order.Adam`)
    as variables, so the compiled epoch updates them in place; ``reset`` gives the fresh
    optimizer of a new stage.  ``apply`` runs one update on the variables at ``indices``
    (the step reads the slots after they are written, the order that keeps the numbers of
    the XLA-compiled epochs as they were)."""

    def __init__(self, variables):
        self.variables = list(variables)
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.count = tf.Variable(0.0, trainable=False)   # float32, as the step count t

    def reset(self):
        self.count.assign(0.0)
        for slot in self.m + self.v:
            slot.assign(tf.zeros_like(slot))

    def apply(self, adam, indices, grads):
        correction = adam.correction(self.count.assign_add(1.0))
        for j, i in enumerate(indices):
            if grads[j] is None:
                continue
            m, v = adam.moments(j, grads[j], self.m[i], self.v[i])
            self.m[i].assign(m)
            self.v[i].assign(v)
            self.variables[i].assign_add(adam.step(j, self.m[i], self.v[i], correction))


def _nmse_sums_fn(model, T):
    @tf.function(reduce_retracing=True)
    def sums(y, x):
        outs = model(y, num_layers=T)
        return tf.stack([tf.reduce_sum(metrics.nmse_db_per_sample(o, x)) for o in outs])
    return sums


def evaluate(model, y, x, num_layers=None, batch_size=1024):
    """Per-layer NMSE in dB (per-sample mean) of ``model`` on ``(y, x)`` (compiled)."""
    T = num_layers or model.num_layers
    fn = _nmse_sums_fn(model, T)
    sums = np.zeros(T)
    for start in range(0, len(y), batch_size):
        sums += fn(tf.constant(y[start:start + batch_size], tf.float32),
                   tf.constant(x[start:start + batch_size], tf.float32)).numpy()
    return list(sums / len(y))


def _evaluate_eager(model, y, x, num_layers, batch_size=1024):
    sums = np.zeros(num_layers)
    for start in range(0, len(y), batch_size):
        outs = model(y[start:start + batch_size], num_layers=num_layers)
        xb = x[start:start + batch_size]
        sums += np.array([float(tf.reduce_sum(metrics.nmse_db_per_sample(o, xb)))
                          for o in outs])
    return list(sums / len(y))


def evaluate_lasso(model, y, lam, num_layers=None):
    """Per-layer mean Lasso objective ``1/2||Ax-y||^2 + lam||x||_1``."""
    outs = model(y, num_layers=num_layers or model.num_layers)
    return [float(tf.reduce_mean(metrics.lasso_objective(model.A, o, y, lam))) for o in outs]


class ProgressiveTrainer:
    """Layer-wise trainer of an :class:`model_based.base.UnrolledModel`.

    Args:
      model: the unrolled model.
      train: ``(y, x)`` numpy arrays of the training split.
      val: ``(y, x)`` of the validation split (the first ``val_batch_size`` rows are used).
      test: optional ``(y, x)``: per-layer test metric after every layer.
      task: ``"sc"`` (sparse coding, NMSE) or ``"lasso"`` (Lasso objective, needs ``lam``).
      lr: base learning rate (5e-4); the stages use ``lr * (1, 0.2, 0.02)``.
      grad_multiplier: the age decay (0.3); ``decay_mode``: ``"grad"`` (original) or ``"lr"``.
      patience: early-stopping patience in epochs (5).
      steps_per_epoch, batch_size, val_batch_size: 400, 128, 1024.
      max_epochs: cap on the epochs of one stage (None: no cap, as the original).
      keep: ``"last"`` (original) or ``"best"``.
      ckpt_dir: checkpoint directory (None: no checkpoints).
      tb: an :class:`open_l2o_tf.logging.TensorBoard` (or None).
      progress: a ``print``-like function for one line per epoch/stage (None: silent).
      seed: seed of the batch order.
      jit_compile: XLA-compile the training step (the whole epoch with ``engine="epoch"``).
      engine: ``"epoch"`` (compiled epochs + stage-1 cache) or ``"step"`` (the previous
        one-call-per-step trainer).
      cache_stage1: run the fixed first ``t - 1`` layers once per stage 1 (epoch engine).
      strategy: a ``tf.distribute`` strategy (:func:`open_l2o_tf.distribute.make_strategy`)
        or None (one device).  Under a strategy every step's global batch of
        ``batch_size`` is split over the replicas (``batch_size / replicas`` rows each),
        the gradients of the replicas' parts of the loss are all-reduced (summed: the loss
        is a sum over the batch, so the sum is the single-device gradient) and the update
        is applied once per process; validation and test run on the full sets; only the
        chief writes checkpoints, and on resume it broadcasts them.  Needs
        ``engine="epoch"``; with ``jit_compile`` each replica's step is XLA-compiled when
        a process has one replica (multi-worker, one device per worker); the epoch loop
        around ``strategy.run`` is not (XLA does not compile across devices), and with
        several replicas in one process (mirrored) the steps run without XLA: the
        variables live on the first device and XLA cannot read a variable of another
        device (a line says so).

    The support selection's k-th largest magnitude is found on the host (NumPy, a
    ``tf.numpy_function``) when the step is not XLA-compiled and runs on a CPU, else by
    ``tf.math.top_k`` in the graph (:func:`open_l2o_tf.device.policy`: on a GPU no host
    round trip per layer per step).
    """

    def __init__(self, model, train, val, test=None, *, task="sc", lam=None, lr=5e-4,
                 grad_multiplier=0.3, decay_mode="grad", patience=5, steps_per_epoch=400,
                 batch_size=128, val_batch_size=1024, max_epochs=None, keep="last",
                 lasso_factor=0.25, ckpt_dir=None,
                 tb=None, progress=print, seed=0, jit_compile=True, engine="epoch",
                 cache_stage1=True, strategy=None):
        if task not in ("sc", "lasso"):
            raise UserError(f"task must be 'sc' or 'lasso', got {task!r}")
        if task == "lasso" and lam is None:
            raise UserError("task 'lasso' needs lam")
        if keep not in ("last", "best"):
            raise UserError(f"keep must be 'last' or 'best', got {keep!r}")
        if engine not in ("epoch", "step"):
            raise UserError(f"engine must be 'epoch' or 'step', got {engine!r}")
        if decay_mode not in ("grad", "lr"):
            raise UserError(f"decay_mode must be 'grad' or 'lr', got {decay_mode!r}")
        if strategy is not None and engine != "epoch":
            raise UserError(f"engine {engine!r} does not run under a tf.distribute strategy "
                            "(it calls one compiled step per batch from Python, with no "
                            "replica split); use engine 'epoch'")
        self.strategy = strategy
        self.per_replica_batch = distribute.per_replica_size(batch_size, strategy,
                                                             "batch size")
        self.chief = distribute.is_chief(strategy)
        self._said_jit = False
        self.model = model
        self.task, self.lam = task, lam
        self.train_y = tf.constant(np.asarray(train[0], np.float32))
        self.train_x = tf.constant(np.asarray(train[1], np.float32))
        self.num_train = int(self.train_y.shape[0])
        if self.num_train < batch_size:
            raise UserError(f"the training split has {self.num_train} samples, fewer than "
                            f"the batch size {batch_size}")
        self.val_y = np.asarray(val[0][:val_batch_size], np.float32)
        self.val_x = np.asarray(val[1][:val_batch_size], np.float32)
        self.test = test
        self.lr, self.grad_multiplier, self.decay_mode = lr, grad_multiplier, decay_mode
        self.patience, self.steps_per_epoch = patience, steps_per_epoch
        self.batch_size, self.max_epochs, self.keep = batch_size, max_epochs, keep
        self.lasso_factor = lasso_factor
        self.ckpt_dir, self.tb = ckpt_dir, tb or olog.TensorBoard(None)
        self.say = progress or (lambda *a, **k: None)
        self.seed, self.jit_compile = int(seed), bool(jit_compile)
        self.engine, self.cache_stage1 = engine, bool(cache_stage1)
        self.policy = device.policy(strategy)
        self.kth_on_host = self.policy.kth_on_host(self.jit_compile)
        self._val_fns = {}
        self.variables = [v for t in range(model.num_layers) for v in model.layer_variables(t)]
        self.first_layer = {id(v): t for t in range(model.num_layers)
                            for v in model.layer_variables(t)}
        self.adam = _AdamSlots(self.variables)
        self.global_step = 0
        self.state = {"layer": 0, "stage": 0, "test_metric": [], "val_metric": [],
                      "global_step": 0, "train_seconds": 0.0, "events": []}

    # -- losses ------------------------------------------------------------------------
    def _loss(self, x_hat, y, x):
        if self.task == "sc":
            return 0.5 * tf.reduce_sum(tf.square(x_hat - x))
        residual = tf.matmul(x_hat, self.model.A, transpose_b=True) - y
        return (self.lasso_factor * tf.reduce_sum(tf.square(residual))
                + self.lam * tf.reduce_sum(tf.abs(x_hat)))

    def _metric(self, x_hat, y, x):
        if self.task == "sc":
            return metrics.nmse_db(x_hat, x)
        return tf.reduce_mean(metrics.lasso_objective(self.model.A, x_hat, y, self.lam))

    def validation_metric(self, depth, cache=None):
        """Validation NMSE (dB, per-sample mean) or mean Lasso objective at ``depth``.

        ``cache``: ``(x_t, state_t)`` of the validation set after the first ``depth - 1``
        layers (then only layer ``depth`` runs)."""
        if self.engine == "step":
            x_hat = self.model(self.val_y, num_layers=depth)[-1]
            return float(self._metric(x_hat, self.val_y, self.val_x))
        key = (depth, cache is not None)
        if key not in self._val_fns:
            start = depth - 1 if cache is not None else 0

            @tf.function
            def fn(y, x, cached):
                xs, state = cached if cached is not None else (None, None)
                outs, _ = self.model.run_layers(y, xs, state, start, depth)
                return self._metric(outs[-1], y, x)
            self._val_fns[key] = fn
        return float(self._val_fns[key](tf.constant(self.val_y), tf.constant(self.val_x),
                                        cache))

    def test_metric(self, depth):
        y, x = self.test
        if self.task == "sc":
            if self.engine == "epoch":
                return evaluate(self.model, y, x, depth)[-1]
            return _evaluate_eager(self.model, y, x, depth)[-1]
        return evaluate_lasso(self.model, y, self.lam, depth)[-1]

    # -- one stage ---------------------------------------------------------------------
    def _stage_setup(self, depth, stage):
        layer = depth - 1
        if stage == 0:
            active = {id(v) for v in self.model.layer_variables(layer)}
        else:
            active = {id(v) for t in range(depth) for v in self.model.layer_variables(t)}
        indices = [i for i, v in enumerate(self.variables) if id(v) in active]
        variables = [self.variables[i] for i in indices]
        ages = [layer - self.first_layer[id(v)] for v in variables]
        decay = [self.grad_multiplier ** a if stage > 0 else 1.0 for a in ages]
        multipliers = decay if self.decay_mode == "grad" else [1.0] * len(decay)
        scales = decay if self.decay_mode == "lr" else [1.0] * len(decay)
        lr = self.lr * STAGE_LR_FACTORS[stage]
        adam = first_order.Adam(lr, eps=1e-7, grad_multipliers=multipliers,
                                step_multipliers=scales, form="textbook")
        return variables, indices, adam

    def _grads_fn(self, depth, cached, variables):
        """``grads(y, x, cache) -> (loss, grads)`` of the batch's training loss (not
        compiled); with ``cached`` the batch's ``(x_{depth-1}, state)`` comes in and only
        layer ``depth`` runs."""
        start = depth - 1 if cached else 0

        def grads(y, x, cache):
            xs, state = cache if cached else (None, None)
            with tf.GradientTape() as tape:
                x_hat = self.model.run_layers(y, xs, state, start, depth)[0][-1]
                loss = self._loss(x_hat, y, x)
            return loss, tape.gradient(loss, variables)

        return grads

    def _all_reduced(self, grads_fn, variables):
        """``grads_fn`` under ``self.strategy``: replica ``r`` takes rows ``r b/R ..
        (r+1) b/R - 1`` of the global batch, and its loss and gradient are all-reduced
        (summed: the loss is a sum over the batch, so the sum is the single-device one)
        across the replicas of every worker."""
        per, strategy = self.per_replica_batch, self.strategy

        @tf.function(jit_compile=self._replica_jit())
        def local(y, x, cache):
            loss, grads = grads_fn(y, x, cache)
            return loss, [tf.zeros_like(v) if g is None else g
                          for g, v in zip(grads, variables)]

        def replica(y, x, cache):
            rows = lambda t: distribute.replica_rows(t, per)  # noqa: E731
            loss, grads = local(rows(y), rows(x), tf.nest.map_structure(rows, cache))
            return tf.distribute.get_replica_context().all_reduce("sum", [loss] + grads)

        def reduced(y, x, cache):
            out = distribute.first_local(strategy, strategy.run(replica, args=(y, x, cache)))
            return out[0], out[1:]

        return reduced

    def _step_body(self, depth, stage, cached):
        """``body(y, x, cache) -> (loss, finite)``: one training step (not compiled), the
        update skipped when the loss or a gradient is not finite.  Under a strategy the
        batch is split over the replicas (:meth:`_all_reduced`)."""
        variables, indices, adam = self._stage_setup(depth, stage)
        grads_fn = self._grads_fn(depth, cached, variables)
        if self.strategy is not None:
            grads_fn = self._all_reduced(grads_fn, variables)

        def body(y, x, cache):
            loss, grads = grads_fn(y, x, cache)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                                    if g is not None] + [tf.math.is_finite(loss)])
            if finite:
                self.adam.apply(adam, indices, grads)
            return loss, finite

        return body

    def _make_step(self, depth, stage):
        """One compiled training step ``step(y, x) -> (loss, finite)`` (full forward)."""
        body = self._step_body(depth, stage, cached=False)

        @tf.function(jit_compile=self.jit_compile)
        def step(y, x):
            return body(y, x, None)
        return step

    def _make_epoch(self, depth, stage, cached):
        """``epoch(order, train_y, train_x, cache) -> (loss_sum, bad_step)``: all
        ``steps_per_epoch`` steps in one compiled loop; ``bad_step`` is the 0-based step whose
        loss or gradient was not finite (the loop stops there, no update), else -1.  Under
        a strategy the loop around ``strategy.run`` is not XLA-compiled (XLA does not
        compile across devices); each replica's step is (:meth:`_replica_jit`)."""
        body = self._step_body(depth, stage, cached)
        steps, bs = self.steps_per_epoch, self.batch_size
        span = self.num_train - bs + 1

        @tf.function(jit_compile=self.jit_compile and self.strategy is None)
        def epoch(order, train_y, train_x, cache):
            total = tf.constant(0.0)
            bad = tf.constant(-1)
            for k in tf.range(steps):
                idx = tf.slice(order, [(k * bs) % span], [bs])
                yb, xb = tf.gather(train_y, idx), tf.gather(train_x, idx)
                cb = tf.nest.map_structure(lambda c: tf.gather(c, idx), cache)
                loss, finite = body(yb, xb, cb)
                if not finite:
                    bad = k
                    break
                total += loss
            return total, bad

        return epoch

    def _replica_jit(self):
        local = len(getattr(self.strategy.extended, "worker_devices", ())) or 1
        if self.jit_compile and local > 1 and not self._said_jit:
            self._said_jit = True
            self.say(f"[progressive] XLA off under {type(self.strategy).__name__} with "
                     f"{local} devices in this process (XLA cannot read variables of "
                     "another device); each replica's step runs in a plain tf.function")
        return self.jit_compile and local == 1

    def _cache(self, depth, y):
        """``(x_{depth-1}, state)`` of the fixed first ``depth - 1`` layers on ``y``,
        computed in chunks (compiled)."""
        key = ("cache", depth)
        if key not in self._val_fns:
            @tf.function(jit_compile=self.jit_compile,
                         input_signature=[tf.TensorSpec([None, self.model.m], tf.float32)])
            def fn(yb):
                outs, state = self.model.run_layers(yb, None, None, 0, depth - 1)
                return outs[-1], state
            self._val_fns[key] = fn
        y = tf.convert_to_tensor(y, tf.float32)
        chunks = [self._val_fns[key](y[i:i + 1024]) for i in range(0, int(y.shape[0]), 1024)]
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, 0), *chunks)

    def _batches(self, layer, stage, epoch):
        """The shuffled order of the training set for one epoch (a function of
        ``(seed, layer, stage, epoch)``)."""
        seed = tf.constant([self.seed & 0x7FFFFFFF, (layer * 3 + stage) * 100003 + epoch],
                           tf.int32)
        return tf.argsort(tf.random.stateless_uniform([self.num_train], seed))

    def _snapshot(self):
        return [v.numpy() for v in self.variables]

    def _restore(self, values):
        for v, value in zip(self.variables, values):
            v.assign(value)

    def run_stage(self, layer, stage):
        """Trains one stage; returns ``(validation history, seconds)``."""
        if self.engine == "step":
            return self._run_stage_steps(layer, stage)
        with shrinkage.kth_on_host(self.kth_on_host):
            return self._run_stage_epochs(layer, stage)

    def _run_stage_epochs(self, layer, stage):
        depth = layer + 1
        cached = self.cache_stage1 and stage == 0 and depth > 1
        start = time.time()
        epoch_fn = self._make_epoch(depth, stage, cached)
        if cached:
            train_cache = self._cache(depth, self.train_y)
            val_cache = self._cache(depth, self.val_y)
        else:
            train_cache, val_cache = (), None
        def run_epoch(epoch):
            order = self._batches(layer, stage, epoch)
            total, bad = epoch_fn(order, self.train_y, self.train_x, train_cache)
            bad = int(bad)
            if bad >= 0:
                self.global_step += bad
                return bad, None, None
            self.global_step += self.steps_per_epoch
            return None, float(total) / self.steps_per_epoch, self.validation_metric(
                depth, val_cache)

        return self._train_stage(depth, stage, run_epoch, start)

    def _train_stage(self, depth, stage, run_epoch, start):
        """The stage loop both engines share: ``run_epoch(epoch)`` returns
        ``(bad_step, train_loss, val_metric)`` (``bad_step`` not None on a non-finite
        loss/gradient); early stopping by patience/max_epochs, ``keep`` best or last."""
        self.adam.reset()
        start_values = self._snapshot()
        best, best_values, wait, epoch, history = math.inf, None, 0, 0, []
        while True:
            bad, train_loss, metric = run_epoch(epoch)
            if bad is not None:
                self._restore(start_values)
                event = (f"non-finite training loss/gradient at layer {depth} stage "
                         f"{stage + 1} epoch {epoch + 1} step {bad + 1}; restored the "
                         f"stage's starting weights and ended the stage")
                self.say(f"[progressive] WARNING: {event}")
                self.state["events"].append(event)
                return history, time.time() - start
            history.append(metric)
            self._log_epoch(depth, stage, epoch, train_loss, metric, start)
            epoch += 1
            if metric < best:
                best, wait = metric, 0
                if self.keep == "best":
                    best_values = self._snapshot()
            else:
                wait += 1
            if wait >= self.patience or (self.max_epochs and epoch >= self.max_epochs):
                break
        if self.keep == "best" and best_values is not None:
            self._restore(best_values)
        return history, time.time() - start

    def _log_epoch(self, depth, stage, epoch, train_loss, metric, start):
        # one chart per metric over the global step; layer and stage are their own scalars
        self.tb.scalars({"train/loss": train_loss, "val/metric": metric, "train/layer": depth,
                         "train/stage": stage + 1}, self.global_step)
        self.tb.flush()
        self.say(f"[progressive] layer {depth}/{self.model.num_layers} stage "
                 f"{stage + 1}/3 epoch {epoch + 1} loss={train_loss:.4g} "
                 f"val_{'nmse' if self.task == 'sc' else 'lasso'}={metric:.4g} "
                 f"({time.time() - start:.0f} s)")

    def _run_stage_steps(self, layer, stage):
        """The previous trainer: one compiled call per step, full forward pass."""
        depth = layer + 1
        step = self._make_step(depth, stage)
        start = time.time()

        def run_epoch(epoch):
            order = self._batches(layer, stage, epoch)
            total = 0.0
            for k in range(self.steps_per_epoch):
                lo = (k * self.batch_size) % (self.num_train - self.batch_size + 1)
                idx = order[lo:lo + self.batch_size]
                yb, xb = tf.gather(self.train_y, idx), tf.gather(self.train_x, idx)
                loss, finite = step(yb, xb)
                if not bool(finite):
                    return k, None, None
                total += float(loss)
                self.global_step += 1
            return None, total / self.steps_per_epoch, self.validation_metric(depth)

        return self._train_stage(depth, stage, run_epoch, start)

    # -- checkpoints -------------------------------------------------------------------
    def _progress_path(self):
        return os.path.join(self.ckpt_dir, "progress.json")

    def save(self):
        if not self.ckpt_dir or not self.chief:
            return
        name = f"layer{self.state['layer']:02d}_stage{self.state['stage']}"
        arrays = {f"v{i}": v.numpy() for i, v in enumerate(self.variables)}
        olog.atomic_save_files(os.path.join(self.ckpt_dir, name),
                               {"weights.npz": lambda h: np.savez(h, **arrays)})
        previous = self.state.get("checkpoint")
        self.state["checkpoint"] = name
        olog.atomic_write_json(self._progress_path(), self.state)
        if previous and previous != name:
            shutil.rmtree(os.path.join(self.ckpt_dir, previous), ignore_errors=True)

    def restore(self):
        """Loads the last checkpoint; returns True when there was one.  Under a
        multi-worker strategy the chief reads it and broadcasts it to the other workers
        (which read no file)."""
        if distribute.multi_process(self.strategy):
            state = distribute.restore_on_chief(self.strategy, self._restore_file,
                                                lambda: self.state)
            if state is None:
                return False
            self._restore(distribute.broadcast_arrays(self.strategy, self._snapshot()))
            self.state = state
            self.global_step = state.get("global_step", 0)
            return True
        return self._restore_file()

    def _restore_file(self):
        if not self.ckpt_dir:
            return False
        state = olog.read_json(self._progress_path(), expect={
            "layer": int, "stage": int, "checkpoint": (str, type(None)),
            "test_metric": list, "global_step": int, "train_seconds": (int, float)})
        if not state or not state.get("checkpoint"):
            return False
        for key in ("layer", "stage"):
            if key not in state:
                raise UserError(f"{self._progress_path()} has no {key!r}; delete "
                                f"{self.ckpt_dir} to start over")
        path = os.path.join(self.ckpt_dir, state["checkpoint"], "weights.npz")
        try:
            with np.load(path, allow_pickle=False) as data:
                count = len([k for k in data.files if k.startswith("v")])
                if count != len(self.variables):
                    raise UserError(
                        f"checkpoint {path} holds {count} variables, this model has "
                        f"{len(self.variables)} ({self.model.num_layers} layers): it was "
                        f"written for another depth or model; use another --workdir or "
                        f"delete {self.ckpt_dir}")
                values = [data[f"v{i}"] for i in range(len(self.variables))]
        except UserError:
            raise
        except Exception as err:  # pylint: disable=broad-except
            raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); "
                            f"delete {self.ckpt_dir} to start over") from None
        for v, value in zip(self.variables, values):
            if tuple(v.shape) != value.shape:
                raise UserError(f"checkpoint {path} does not match this model (variable "
                                f"{v.name}: {value.shape} vs {tuple(v.shape)}); use another "
                                f"--workdir or delete {self.ckpt_dir}")
            v.assign(value)
        self.state = state
        self.global_step = state.get("global_step", 0)
        return True

    # -- the whole schedule --------------------------------------------------------------
    def train(self, num_layers=None, on_layer_end=None):
        """Trains layers ``1..num_layers``, resuming from the last checkpoint.

        Returns the list of per-layer test metrics (validation when no test set).
        ``on_layer_end(depth, state)`` is called after each layer (e.g. to write results).
        """
        T = num_layers or self.model.num_layers
        if self.restore():
            self.say(f"[progressive] resuming after layer {self.state['layer'] + 1} stage "
                     f"{self.state['stage'] + 1} ({self.state['checkpoint']})")
            layer, stage = self.state["layer"], self.state["stage"] + 1
            if stage == 3:
                layer, stage = layer + 1, 0
        else:
            layer, stage = 0, 0
        while layer < T:
            while stage < 3:
                history, seconds = self.run_stage(layer, stage)
                self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + seconds
                # epochs each stage ran, row per layer: [stage 1, stage 2, stage 3]
                epochs = self.state.setdefault("stage_epochs", [])
                while len(epochs) <= layer:
                    epochs.append([0, 0, 0])
                epochs[layer][stage] = len(history)
                self.state.update(layer=layer, stage=stage, global_step=self.global_step)
                if stage == 2:
                    depth = layer + 1
                    val = self.validation_metric(depth)
                    metric = self.test_metric(depth) if self.test is not None else val
                    self.state["val_metric"] = self.state["val_metric"][:layer] + [val]
                    self.state["test_metric"] = self.state["test_metric"][:layer] + [metric]
                    self.tb.scalar("test/metric_per_layer", metric, depth)
                    self.tb.scalar("val/metric_per_layer", val, depth)
                    self.tb.flush()
                    self.say(f"[progressive] layer {depth} done: val={val:.4g} "
                             f"test={metric:.4g}")
                self.save()
                if stage == 2 and on_layer_end is not None:
                    on_layer_end(layer + 1, self.state)
                stage += 1
            layer, stage = layer + 1, 0
        return list(self.state["test_metric"])

    @property
    def train_steps(self):
        return self.global_step
