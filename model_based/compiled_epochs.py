"""The compiled machinery of progressive training (:mod:`model_based.progressive`): a whole
epoch is one compiled function (a ``tf.while_loop`` over the steps; batches gathered in the
graph; the loss sum and the finite check stay on the device until the epoch ends),
validation and the stage-1 cache are compiled.

In stage 1 of layer ``t`` the fixed first ``t - 1`` layers are run once per stage on the
training and validation sets (:meth:`UnrolledModel.run_layers` gives ``(x_t, state_t)``),
so each step runs only layer ``t``.  A step whose loss or gradient is not finite makes no
update (:func:`open_l2o_tf.trainer_support.apply_if_finite`) and ends the epoch; the epoch
returns that step.  Under a ``tf.distribute`` strategy every step's global batch is split
over the replicas and the gradients of the replicas' parts are all-reduced
(:meth:`CompiledEpochs._all_reduced`).
"""
import numpy as np
import tensorflow as tf

from open_l2o_tf import distribute
from open_l2o_tf import metrics
from open_l2o_tf.classic import first_order
from open_l2o_tf.errors import UserError
from open_l2o_tf.trainer_support import apply_if_finite

STAGE_LR_FACTORS = (1.0, 0.2, 0.02)


class AdamSlots:
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

    def arrays(self):
        """The slots as NumPy arrays (``count``, ``m0..``, ``v0..``), for a checkpoint."""
        out = {"count": self.count.numpy()}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            out[f"m{i}"], out[f"v{i}"] = m.numpy(), v.numpy()
        return out

    def load(self, arrays):
        """Assigns slots saved by :meth:`arrays`."""
        self.count.assign(arrays["count"])
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m.assign(arrays[f"m{i}"])
            v.assign(arrays[f"v{i}"])

    def apply(self, adam, indices, grads):
        correction = adam.correction(self.count.assign_add(1.0))
        for j, i in enumerate(indices):
            if grads[j] is None:
                continue
            m, v = adam.moments(j, grads[j], self.m[i], self.v[i])
            self.m[i].assign(m)
            self.v[i].assign(v)
            self.variables[i].assign_add(adam.step(j, self.m[i], self.v[i], correction))


class CompiledEpochs:
    """The compiled epochs of one model, training split and settings
    (:class:`model_based.progressive_settings.ProgressiveSettings`):
    ``epoch_runner(layer, stage)`` gives ``run(epoch) -> (bad_step, loss_sum)`` of that
    stage; ``validation_metric(depth, cache)``; ``cache(depth, y)``."""

    def __init__(self, model, settings, train, val, strategy=None, say=None, policy=None):
        self.model, self.settings, self.strategy = model, settings, strategy
        self.say = say or (lambda *a, **k: None)
        self.per_replica_batch = distribute.per_replica_size(settings.batch_size, strategy,
                                                             "batch size")
        self.train_y = tf.constant(np.asarray(train[0], np.float32))
        self.train_x = tf.constant(np.asarray(train[1], np.float32))
        self.num_train = int(self.train_y.shape[0])
        if self.num_train < settings.batch_size:
            raise UserError(f"the training split has {self.num_train} samples, fewer than "
                            f"the batch size {settings.batch_size}")
        self.val_y = np.asarray(val[0][:settings.val_batch_size], np.float32)
        self.val_x = np.asarray(val[1][:settings.val_batch_size], np.float32)
        self.jit_compile = bool(settings.jit_compile)
        self.kth_on_host = policy.kth_on_host(self.jit_compile)
        self.variables = [v for t in range(model.num_layers) for v in model.layer_variables(t)]
        self.first_layer = {id(v): t for t in range(model.num_layers)
                            for v in model.layer_variables(t)}
        self.adam = AdamSlots(self.variables)
        self._fns, self._said_jit = {}, False

    # -- losses and metrics ---------------------------------------------------------------
    def loss(self, x_hat, y, x):
        s = self.settings
        if s.task == "sc":
            return 0.5 * tf.reduce_sum(tf.square(x_hat - x))
        residual = tf.matmul(x_hat, self.model.A, transpose_b=True) - y
        return (s.lasso_factor * tf.reduce_sum(tf.square(residual))
                + s.lam * tf.reduce_sum(tf.abs(x_hat)))

    def metric(self, x_hat, y, x):
        if self.settings.task == "sc":
            return metrics.nmse_db(x_hat, x)
        return tf.reduce_mean(metrics.lasso_objective(self.model.A, x_hat, y,
                                                      self.settings.lam))

    def validation_metric(self, depth, cache=None):
        """Validation NMSE (dB, per-sample mean) or mean Lasso objective at ``depth``
        (compiled); ``cache``: ``(x_t, state_t)`` of the validation set after the first
        ``depth - 1`` layers (then only layer ``depth`` runs)."""
        key = ("val", depth, cache is not None)
        if key not in self._fns:
            start = depth - 1 if cache is not None else 0

            @tf.function
            def fn(y, x, cached):
                xs, state = cached if cached is not None else (None, None)
                outs, _ = self.model.run_layers(y, xs, state, start, depth)
                return self.metric(outs[-1], y, x)
            self._fns[key] = fn
        return float(self._fns[key](tf.constant(self.val_y), tf.constant(self.val_x), cache))

    # -- one step -------------------------------------------------------------------------
    def stage_setup(self, depth, stage):
        """``(variables, indices, adam)`` of a stage: the variables it trains, their indices
        in :attr:`variables` and the stage's Adam (rate, age multipliers)."""
        s, layer = self.settings, depth - 1
        if stage == 0:
            active = {id(v) for v in self.model.layer_variables(layer)}
        else:
            active = {id(v) for t in range(depth) for v in self.model.layer_variables(t)}
        indices = [i for i, v in enumerate(self.variables) if id(v) in active]
        variables = [self.variables[i] for i in indices]
        ages = [layer - self.first_layer[id(v)] for v in variables]
        decay = [s.grad_multiplier ** a if stage > 0 else 1.0 for a in ages]
        multipliers = decay if s.decay_mode == "grad" else [1.0] * len(decay)
        scales = decay if s.decay_mode == "lr" else [1.0] * len(decay)
        lr = s.lr * STAGE_LR_FACTORS[stage]
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
                loss = self.loss(x_hat, y, x)
            return loss, tape.gradient(loss, variables)

        return grads

    def _all_reduced(self, grads_fn, variables):
        """``grads_fn`` under the strategy: replica ``r`` takes rows ``r b/R .. (r+1) b/R -
        1`` of the global batch, and its loss and gradient are all-reduced (summed: the loss
        is a sum over the batch, so the sum is the single-device one) across the replicas
        of every worker."""
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

    def step_body(self, depth, stage, cached):
        """``body(y, x, cache) -> (loss, finite)``: one training step (not compiled), the
        update skipped when the loss or a gradient is not finite."""
        variables, indices, adam = self.stage_setup(depth, stage)
        grads_fn = self._grads_fn(depth, cached, variables)
        if self.strategy is not None:
            grads_fn = self._all_reduced(grads_fn, variables)

        def body(y, x, cache):
            loss, grads = grads_fn(y, x, cache)
            finite = apply_if_finite(lambda g: self.adam.apply(adam, indices, g), grads, loss)
            return loss, finite

        return body

    def single_step(self, depth, stage):
        """One compiled training step ``step(y, x) -> (loss, finite)`` with the full forward
        pass (probes and timings; training runs whole epochs)."""
        body = self.step_body(depth, stage, cached=False)
        return tf.function(lambda y, x: body(y, x, None), jit_compile=self.jit_compile)

    # -- one epoch ------------------------------------------------------------------------
    def make_epoch(self, depth, stage, cached):
        """``epoch(order, train_y, train_x, cache) -> (loss_sum, bad_step)``: all
        ``steps_per_epoch`` steps in one compiled loop; ``bad_step`` is the 0-based step whose
        loss or gradient was not finite (the loop stops there, no update), else -1.  Under
        a strategy the loop around ``strategy.run`` is not XLA-compiled (XLA does not
        compile across devices); each replica's step is (:meth:`_replica_jit`)."""
        body = self.step_body(depth, stage, cached)
        steps, bs = self.settings.steps_per_epoch, self.settings.batch_size
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

    def cache(self, depth, y):
        """``(x_{depth-1}, state)`` of the fixed first ``depth - 1`` layers on ``y``,
        computed in chunks (compiled)."""
        key = ("cache", depth)
        if key not in self._fns:
            @tf.function(jit_compile=self.jit_compile,
                         input_signature=[tf.TensorSpec([None, self.model.m], tf.float32)])
            def fn(yb):
                outs, state = self.model.run_layers(yb, None, None, 0, depth - 1)
                return outs[-1], state
            self._fns[key] = fn
        y = tf.convert_to_tensor(y, tf.float32)
        chunks = [self._fns[key](y[i:i + 1024]) for i in range(0, int(y.shape[0]), 1024)]
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, 0), *chunks)

    def batches(self, layer, stage, epoch):
        """The shuffled order of the training set for one epoch (a function of
        ``(seed, layer, stage, epoch)``)."""
        seed = tf.constant([self.settings.seed & 0x7FFFFFFF,
                            (layer * 3 + stage) * 100003 + epoch], tf.int32)
        return tf.argsort(tf.random.stateless_uniform([self.num_train], seed))

    def epoch_runner(self, layer, stage):
        """``run(epoch) -> (bad_step, loss_sum, val_cache)`` of one stage: the stage's
        compiled epoch (with the stage-1 cache of the training and validation sets)."""
        depth = layer + 1
        cached = self.settings.cache_stage1 and stage == 0 and depth > 1
        epoch_fn = self.make_epoch(depth, stage, cached)
        if cached:
            train_cache = self.cache(depth, self.train_y)
            val_cache = self.cache(depth, self.val_y)
        else:
            train_cache, val_cache = (), None

        def run(epoch):
            order = self.batches(layer, stage, epoch)
            total, bad = epoch_fn(order, self.train_y, self.train_x, train_cache)
            return int(bad), total

        return run, val_cache
