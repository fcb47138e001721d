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
``progress.json`` that points at them), and within a stage every ``checkpoint_seconds``
(600 s) at an epoch's end: the weights, the stage's Adam slots, the weights the stage
started from and its early-stopping state (epoch, best, wait, history).
:meth:`ProgressiveTrainer.train` resumes at the epoch after the last checkpoint, with the
numbers of an uninterrupted run (a paper-size stage can run for hours; without this an
interrupted one started over).  Under a multi-worker strategy only the ends of stages are
checkpointed.  A non-finite training loss ends the stage, restores the weights the
stage started from, and is reported with its layer, stage, epoch and step.

Speed (:mod:`model_based.compiled_epochs`): a whole epoch is one compiled function,
validation and test are compiled, and in stage 1 of layer ``t`` the fixed first ``t - 1``
layers are run once per stage, so each step runs only layer ``t``.  Without XLA on a CPU,
support selection finds its k-th largest magnitude with NumPy's partition instead of
``top_k`` (:func:`shrinkage.kth_on_host`; on a GPU ``top_k`` stays in the graph:
:mod:`open_l2o_tf.device`).  The settings are one
:class:`model_based.progressive_settings.ProgressiveSettings`.
"""
import math
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from model_based import shrinkage, stage_checkpoints
from model_based.compiled_epochs import STAGE_LR_FACTORS, CompiledEpochs  # noqa: F401
from model_based.progressive_settings import ProgressiveSettings
from open_l2o_tf import device, distribute, position
from open_l2o_tf import logging as olog
from open_l2o_tf import metrics
from open_l2o_tf.classic import first_order  # noqa: F401  (tests spy on its Adam)
from open_l2o_tf.errors import UserError
from open_l2o_tf.trainer_support import printer, report_skip


def _nmse_sums_fn(model, T):
    @tf.function(reduce_retracing=True)
    def sums(y, x):
        outs = model(y, num_layers=T)
        return tf.stack([tf.reduce_sum(metrics.nmse_db_per_sample(o, x)) for o in outs])
    return sums


def evaluate(model, y, x, num_layers=None, batch_size=1024, tb=None,
             tag="test/nmse_db_by_layer"):
    """Per-layer NMSE in dB (per-sample mean) of ``model`` on ``(y, x)`` (compiled).

    With ``tb`` (an :class:`open_l2o_tf.logging.TensorBoard`) the curve is also logged as
    one chart, the scalar series ``tag`` with step = layer ``1..T``."""
    T = num_layers or model.num_layers
    fn = _nmse_sums_fn(model, T)
    sums = np.zeros(T)
    for start in range(0, len(y), batch_size):
        sums += fn(tf.constant(y[start:start + batch_size], tf.float32),
                   tf.constant(x[start:start + batch_size], tf.float32)).numpy()
    curve = list(sums / len(y))
    if tb is not None:
        for layer, value in enumerate(curve, start=1):
            tb.scalar(tag, value, layer)
        tb.flush()
    return curve


def evaluate_lasso(model, y, lam, num_layers=None):
    """Per-layer mean Lasso objective ``1/2||Ax-y||^2 + lam||x||_1``."""
    outs = model(y, num_layers=num_layers or model.num_layers)
    return [float(tf.reduce_mean(metrics.lasso_objective(model.A, o, y, lam))) for o in outs]


def improvement_rate(history, window=5):
    """The validation metric's improvement an epoch over the last ``window`` epochs of a
    stage (``(h[-1-w] - h[-1]) / w``, ``w = min(window, len - 1)``; positive: still going
    down), None for fewer than 2 epochs."""
    if len(history) < 2:
        return None
    w = min(window, len(history) - 1)
    return float(history[-1 - w] - history[-1]) / w


def stop_summary(state, cap=None):
    """What a run's ``stage_stop`` / ``stage_val_rate`` say, for ``results.json``:
    ``{"max_epochs": cap, "capped_stages": stages stopped by the cap, "last_stage":
    [layer, stage] (1-based) of the last finished stage, "last_stage_stop", and
    "last_val_improvement_per_epoch": its rate}``."""
    stops = state.get("stage_stop") or []
    rates = state.get("stage_val_rate") or []
    done = [(t, k) for t, row in enumerate(stops) for k, why in enumerate(row)
            if why is not None]
    last = done[-1] if done else None
    return {"max_epochs": cap,
            "capped_stages": sum(why == "cap" for row in stops for why in row),
            "last_stage": None if last is None else [last[0] + 1, last[1] + 1],
            "last_stage_stop": None if last is None else stops[last[0]][last[1]],
            "last_val_improvement_per_epoch": None if last is None
            else rates[last[0]][last[1]]}


class ProgressiveTrainer:
    """Layer-wise trainer of an :class:`model_based.base.UnrolledModel`.

    Args:
      model: the unrolled model.
      train: ``(y, x)`` numpy arrays of the training split.
      val: ``(y, x)`` of the validation split (the first ``val_batch_size`` rows are used).
      test: optional ``(y, x)``: per-layer test metric after every layer.
      settings: a :class:`model_based.progressive_settings.ProgressiveSettings` (None: its
        defaults); ``overrides``, its fields by name, replace its values.
      ckpt_dir: checkpoint directory (None: no checkpoints).
      tb: an :class:`open_l2o_tf.logging.TensorBoard` (or None).
      progress: a ``print``-like function for one line per epoch/stage (None: silent).
      strategy: a ``tf.distribute`` strategy (:func:`open_l2o_tf.distribute.make_strategy`)
        or None (one device).  Under a strategy every step's global batch of
        ``batch_size`` is split over the replicas (``batch_size / replicas`` rows each),
        the gradients of the replicas' parts of the loss are all-reduced (summed: the loss
        is a sum over the batch, so the sum is the single-device gradient) and the update
        is applied once per process; validation and test run on the full sets; only the
        chief writes checkpoints, and on resume it broadcasts them.  With ``jit_compile``
        each replica's step is XLA-compiled when a process has one replica (multi-worker,
        one device per worker); the epoch loop around ``strategy.run`` is not (XLA does
        not compile across devices), and with several replicas in one process (mirrored)
        the steps run without XLA: the variables live on the first device and XLA cannot
        read a variable of another device (a line says so).

    The support selection's k-th largest magnitude is found on the host (NumPy, a
    ``tf.numpy_function``) when the step is not XLA-compiled and runs on a CPU, else by
    ``tf.math.top_k`` in the graph (:func:`open_l2o_tf.device.policy`: on a GPU no host
    round trip per layer per step).
    """

    def __init__(self, model, train, val, test=None, settings=None, *, ckpt_dir=None,
                 tb=None, progress=print, strategy=None, **overrides):
        settings = (settings or ProgressiveSettings()).replace(**overrides)
        self.settings, self.model, self.test = settings, model, test
        self.strategy, self.chief = strategy, distribute.is_chief(strategy)
        self.ckpt_dir, self.tb = ckpt_dir, tb or olog.TensorBoard(None)
        self.say = printer(progress)
        self.epochs = CompiledEpochs(model, settings, train, val, strategy, self.say,
                                     device.policy(strategy))
        self.variables = self.epochs.variables
        self.global_step = 0
        self.last_stop = None    # why the last run_stage ended: patience, cap, nonfinite
        self.state = {"layer": 0, "stage": 0, "test_metric": [], "val_metric": [],
                      "global_step": 0, "train_seconds": 0.0, "events": []}

    def validation_metric(self, depth, cache=None):
        """Validation NMSE (dB, per-sample mean) or mean Lasso objective at ``depth``."""
        return self.epochs.validation_metric(depth, cache)

    def test_metric(self, depth):
        y, x = self.test
        if self.settings.task == "sc":
            return evaluate(self.model, y, x, depth)[-1]
        return evaluate_lasso(self.model, y, self.settings.lam, depth)[-1]

    def _snapshot(self):
        return [v.numpy() for v in self.variables]

    def _restore(self, values):
        for v, value in zip(self.variables, values):
            v.assign(value)

    # -- one stage ---------------------------------------------------------------------
    def run_stage(self, layer, stage, resume=None):
        """Trains one stage; returns ``(validation history, seconds)``: epochs until
        ``patience`` epochs without a strict improvement (or ``max_epochs``), the ``keep``
        weights (best or last).  A non-finite loss/gradient restores the stage's starting
        weights and ends the stage.  ``resume``: a mid-stage checkpoint of this stage
        (:func:`model_based.stage_checkpoints.load_partial`), continued at its next epoch."""
        s, depth = self.settings, layer + 1
        with shrinkage.kth_on_host(self.epochs.kth_on_host):
            start = time.time()
            run_epoch, val_cache = self.epochs.epoch_runner(layer, stage)
            self.epochs.adam.reset()
            start_values = self._snapshot()
            best, best_values, wait, epoch, history = math.inf, None, 0, 0, []
            before = 0.0      # seconds of this stage before a resume
            if resume is not None:
                start_values, best_values = resume["start_values"], resume["best_values"]
                best, wait, epoch = resume["best"], resume["wait"], resume["epoch"]
                history, before = list(resume["history"]), resume["seconds"]
                self._restore(resume["values"])
                self.epochs.adam.load(resume["adam"])
            saved_at = time.time()
            while True:
                position.set(f"layer {depth} stage {stage + 1} epoch {epoch + 1}")
                bad, total = run_epoch(epoch)
                if bad >= 0:
                    self.global_step += bad
                    self._restore(start_values)
                    report_skip(self.say, self.state["events"], "progressive",
                                "training loss/gradient", f"layer {depth} stage {stage + 1} "
                                f"epoch {epoch + 1} step {bad + 1}", "restored the stage's "
                                "starting weights and ended the stage")
                    self.last_stop = "nonfinite"
                    return history, before + time.time() - start
                self.global_step += s.steps_per_epoch
                train_loss = float(total) / s.steps_per_epoch
                metric = self.validation_metric(depth, val_cache)
                history.append(metric)
                self._log_epoch(depth, stage, epoch, train_loss, metric, start)
                epoch += 1
                if metric < best:
                    best, wait = metric, 0
                    if s.keep == "best":
                        best_values = self._snapshot()
                else:
                    wait += 1
                if wait >= s.patience:
                    self.last_stop = "patience"
                    break
                if s.max_epochs and epoch >= s.max_epochs:
                    self.last_stop = "cap"
                    break
                if (s.checkpoint_seconds is not None
                        and time.time() - saved_at >= s.checkpoint_seconds):
                    stage_checkpoints.save_partial(self, layer, stage, dict(
                        epoch=epoch, best=best, wait=wait, history=history,
                        seconds=before + time.time() - start), start_values, best_values)
                    saved_at = time.time()
            if s.keep == "best" and best_values is not None:
                self._restore(best_values)
            return history, before + time.time() - start

    def _log_epoch(self, depth, stage, epoch, train_loss, metric, start):
        # one chart per metric over the global step; layer and stage are their own scalars
        self.tb.scalars({"train/loss": train_loss, "val/metric": metric, "train/layer": depth,
                         "train/stage": stage + 1}, self.global_step)
        self.tb.flush()
        self.say(f"[progressive] layer {depth}/{self.model.num_layers} stage "
                 f"{stage + 1}/3 epoch {epoch + 1} loss={train_loss:.4g} "
                 f"val_{'nmse' if self.settings.task == 'sc' else 'lasso'}={metric:.4g} "
                 f"({time.time() - start:.0f} s)")
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
        partial = self.state.pop("partial", None)
        olog.atomic_write_json(self._progress_path(), self.state)
        if previous and previous != name:
            shutil.rmtree(os.path.join(self.ckpt_dir, previous), ignore_errors=True)
        if partial:
            shutil.rmtree(os.path.join(self.ckpt_dir, partial["checkpoint"]),
                          ignore_errors=True)

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
        if not state:
            return False
        if not state.get("checkpoint"):
            if not state.get("partial"):
                return False
            # only a mid-stage checkpoint of the first stage: nothing to load here
            self.state, self.global_step = state, state.get("global_step", 0)
            return True
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
        stage_checkpoints.check_shapes(self.variables, values, path, self.ckpt_dir)
        for v, value in zip(self.variables, values):
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
        resumed = self.restore()
        if resumed and self.state.get("checkpoint"):
            self.say(f"[progressive] resuming after layer {self.state['layer'] + 1} stage "
                     f"{self.state['stage'] + 1} ({self.state['checkpoint']})")
            layer, stage = self.state["layer"], self.state["stage"] + 1
            if stage == 3:
                layer, stage = layer + 1, 0
        else:
            layer, stage = 0, 0
        partial = self.state.get("partial") if resumed else None
        resume = None
        if (partial and not distribute.multi_process(self.strategy)
                and (partial.get("layer"), partial.get("stage")) == (layer, stage)):
            resume = stage_checkpoints.load_partial(self, partial)
            self.global_step = int(partial.get("global_step", self.global_step))
            self.say(f"[progressive] resuming layer {layer + 1} stage {stage + 1} at epoch "
                     f"{resume['epoch'] + 1} ({partial['checkpoint']})")
        while layer < T:
            while stage < 3:
                history, seconds = (self.run_stage(layer, stage) if resume is None
                                    else self.run_stage(layer, stage, resume))
                resume = None
                self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + seconds
                # per layer, [stage 1, stage 2, stage 3]: the epochs each stage ran, why it
                # stopped ("patience", "cap": max_epochs, "nonfinite") and the validation
                # metric's improvement an epoch over its last epochs (improvement_rate)
                for key, value in (("stage_epochs", len(history)),
                                   ("stage_stop", self.last_stop),
                                   ("stage_val_rate", improvement_rate(history))):
                    rows = self.state.setdefault(key, [])
                    while len(rows) <= layer:
                        rows.append([None, None, None] if key != "stage_epochs" else [0, 0, 0])
                    rows[layer][stage] = value
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
        position.clear()
        return list(self.state["test_metric"])

    @property
    def train_steps(self):
        return self.global_step
