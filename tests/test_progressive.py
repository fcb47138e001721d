"""Progressive layer-wise training: schedule, decay, early stopping, checkpoints, resume."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from model_based import progressive
from model_based.factory import build_model
from open_l2o_tf.data import alista_weight, sparse_recovery
from tests.cli import error_lines, run_cli

M, N = 16, 32


@pytest.fixture(scope="module")
def data():
    A = sparse_recovery.gaussian_matrix(M, N, 0)
    W = alista_weight.analytic_weight(A)
    split = lambda seed, num: [a.numpy() for a in sparse_recovery.sample_measurements(A, seed, num)]
    return A, W, split(1, 512), split(2, 256), split(3, 256)


def _trainer(data, name="alista", layers=3, ckpt=None, **kw):
    A, W, train, val, test = data
    model = build_model(name, A, W, layers)
    kw.setdefault("steps_per_epoch", 10)
    kw.setdefault("patience", 1)
    kw.setdefault("max_epochs", 3)
    return model, progressive.ProgressiveTrainer(
        model, train, val, test, batch_size=32, val_batch_size=256, ckpt_dir=ckpt,
        progress=None, seed=0, jit_compile=False, **kw)


def test_stage_schedule_and_multipliers(data, monkeypatch):
    model, trainer = _trainer(data)
    seen = []
    original = progressive.first_order.Adam

    class Spy(original):   # records every update's variables, lr and gradient multipliers
        def correction(self, count):
            seen.append((len(self.grad_multipliers), float(self.lr),
                         tuple(np.round(self.grad_multipliers, 6))))
            return super().correction(count)

    monkeypatch.setattr(progressive.first_order, "Adam", Spy)
    for stage in range(3):
        trainer.epochs.single_step(2, stage)(*[tf.constant(a[:32]) for a in data[2]])
    # ALISTA: 2 variables per layer; stage 1 only layer 2's, stages 2-3 all 4.
    assert seen[0] == (2, 5e-4, (1.0, 1.0))
    assert seen[1][0] == 4 and seen[1][1] == pytest.approx(1e-4)
    assert seen[1][2] == (0.3, 0.3, 1.0, 1.0)
    assert seen[2][1] == pytest.approx(1e-5)


def test_only_new_layer_changes_in_stage_one(data):
    model, trainer = _trainer(data)
    before = [v.numpy().copy() for v in model.layer_variables(0)]
    step = trainer.epochs.single_step(2, 0)
    step(*[tf.constant(a[:32]) for a in data[2]])
    after = [v.numpy() for v in model.layer_variables(0)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not np.allclose(model.layer_variables(1)[0].numpy(), 1.0)


def test_early_stopping_and_nmse_decreases(data):
    model, trainer = _trainer(data, patience=1, max_epochs=50)
    history, _ = trainer.run_stage(0, 0)
    assert 2 <= len(history) < 50
    # patience 1: every epoch but the last improved strictly on the best so far, and the
    # stage stopped at the first epoch that did not
    assert all(history[i] < min(history[:i]) for i in range(1, len(history) - 1))
    assert history[-1] >= min(history[:-1])
    before = trainer.train_steps
    metrics = trainer.train(3)
    assert len(metrics) == 3 and metrics[2] < metrics[0] - 3.0
    epochs = trainer.state["stage_epochs"]
    assert len(epochs) == 3 and all(2 <= e <= 50 for row in epochs for e in row)
    assert trainer.train_steps - before == 10 * sum(map(sum, epochs))


def test_stages_stopped_by_the_cap_are_told_apart_with_their_improvement_rate(data):
    model, trainer = _trainer(data, layers=1, patience=50, max_epochs=3)
    trainer.train(1)
    assert trainer.state["stage_stop"] == [["cap", "cap", "cap"]]
    rates = trainer.state["stage_val_rate"][0]
    assert all(isinstance(r, float) for r in rates) and rates[0] > 0   # stage 1 improves
    summary = progressive.stop_summary(trainer.state, 3)
    assert summary["capped_stages"] == 3 and summary["last_stage"] == [1, 3]
    assert summary["last_val_improvement_per_epoch"] == rates[2]
    assert progressive.improvement_rate([-1.0, -2.0, -4.0]) == 1.5
    assert progressive.improvement_rate([-1.0]) is None


def test_resume_matches_uninterrupted(data, tmp_path):
    _, full = _trainer(data, ckpt=str(tmp_path / "full"))
    reference = full.train(2)

    class Stop(Exception):
        pass

    model, first = _trainer(data, ckpt=str(tmp_path / "cut"))
    calls = {"n": 0}
    original = first.run_stage

    def run_stage(layer, stage):
        if calls["n"] == 4:
            raise Stop()
        calls["n"] += 1
        return original(layer, stage)

    first.run_stage = run_stage
    with pytest.raises(Stop):
        first.train(2)
    progress = json.load(open(tmp_path / "cut" / "progress.json"))
    assert (progress["layer"], progress["stage"]) == (1, 0)
    _, second = _trainer(data, ckpt=str(tmp_path / "cut"))
    resumed = second.train(2)
    np.testing.assert_allclose(resumed, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("keep", ["last", "best"])
def test_resume_within_a_stage_matches_uninterrupted(data, tmp_path, keep):
    """A run stopped in the middle of a stage resumes at the epoch after its last
    mid-stage checkpoint, with the stage's Adam slots and early-stopping state: the same
    epochs, weights and metrics as an uninterrupted run."""
    kw = dict(max_epochs=4, patience=3, checkpoint_seconds=0, keep=keep)
    full_model, full = _trainer(data, ckpt=str(tmp_path / "full"), **kw)
    reference = full.train(2)

    class Stop(Exception):
        pass

    def progress(line):     # stops the run as layer 2 stage 2 begins its third epoch
        if "layer 2/3 stage 2/3 epoch 3 " in line:
            raise Stop()

    A, W, train, val, test = data
    cut = str(tmp_path / "cut")
    first = progressive.ProgressiveTrainer(
        build_model("alista", A, W, 3), train, val, test, batch_size=32, val_batch_size=256,
        ckpt_dir=cut, progress=progress, seed=0, jit_compile=False, steps_per_epoch=10, **kw)
    with pytest.raises(Stop):
        first.train(2)
    progress_file = json.load(open(os.path.join(cut, "progress.json")))
    partial = progress_file["partial"]
    assert (partial["layer"], partial["stage"], partial["epoch"]) == (1, 1, 2)
    assert len(partial["history"]) == 2
    lines = []
    model, second = _trainer(data, ckpt=cut, **kw)
    second.say = lines.append
    resumed = second.train(2)
    assert any("resuming layer 2 stage 2 at epoch 3" in line for line in lines)
    # epochs 1-2 of that stage were not run again
    assert not any("layer 2/3 stage 2/3 epoch 2 " in line for line in lines)
    np.testing.assert_allclose(resumed, reference, rtol=1e-6)
    for a, b in zip(model.trainable_variables, full_model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    assert second.state["stage_epochs"] == full.state["stage_epochs"]
    assert second.train_steps == full.train_steps
    # the finished run keeps no mid-stage checkpoint
    assert "partial" not in json.load(open(os.path.join(cut, "progress.json")))
    assert not [d for d in os.listdir(cut) if d.startswith("partial")]


def test_nonfinite_loss_restores_weights(data):
    model, trainer = _trainer(data)
    A, W, train, val, test = data
    trainer.epochs.train_y = tf.constant(np.full_like(train[0], np.nan))
    start = [v.numpy().copy() for v in trainer.variables]
    trainer.run_stage(0, 0)
    assert trainer.state["events"] and "non-finite" in trainer.state["events"][0]
    assert "epoch 1 step 1;" in trainer.state["events"][0] and trainer.global_step == 0
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(start, trainer.variables))


def test_cli_quick_and_errors(tmp_path):
    work = tmp_path / "w"
    proc = run_cli("run.sparse_recovery", "--model=lista_cpss", "--preset=quick",
                   f"--workdir={work}", "--num_layers=2", "--steps_per_epoch=5",
                   "--max_epochs=2", "--nojit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.load(open(work / "results.json"))
    assert record["test"] == "sparse_recovery" and record["metric"] == "nmse_db"
    assert len(record["curve"]) == 2 and record["final"] == record["curve"][-1]
    # the cap is declared: in the budget text and as keys, with the last stage's rate
    assert record["budget"] == "quick preset, at most 2 epochs a stage"
    assert record["max_epochs"] == 2 and record["last_stage"] == [2, 3]
    assert isinstance(record["last_val_improvement_per_epoch"], float)
    assert os.path.exists(work / "model.keras") and os.path.isdir(work / "tb")
    proc = run_cli("run.sparse_recovery", "--model=nope", f"--workdir={work}")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1
    proc = run_cli("run.sparse_recovery", "--model=lista", f"--data_dir={tmp_path / 'none'}",
                   f"--workdir={tmp_path / 'w2'}")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "run.make_data" in lines[0]


@pytest.mark.parametrize("name", ["alista", "lista", "lfista", "lamp", "glista"])
def test_stage_one_cache_gives_the_same_gradients(data, name):
    """Stage 1 of layer 3 from the cached (x_2, state_2) = the full 3-layer forward pass."""
    A, W, train, _, _ = data
    model = build_model(name, A, W, 4, alti=1.0)
    y, x = (tf.constant(a[:64]) for a in train)
    vs = model.layer_variables(2)
    with tf.GradientTape() as tape:
        full = model(y, num_layers=3)[-1]
        loss_full = tf.reduce_sum(tf.square(full - x))
    g_full = tape.gradient(loss_full, vs)
    outs, state = model.run_layers(y, None, None, 0, 2)
    with tf.GradientTape() as tape:
        cached = model.run_layers(y, outs[-1], state, 2, 3)[0][-1]
        loss_cached = tf.reduce_sum(tf.square(cached - x))
    g_cached = tape.gradient(loss_cached, vs)
    np.testing.assert_allclose(cached.numpy(), full.numpy(), rtol=1e-6, atol=1e-6)
    for a, b in zip(g_cached, g_full):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert any(np.abs(g.numpy()).max() > 0 for g in g_full)


def test_tensorboard_one_chart_per_metric(data, tmp_path):
    """TensorBoard: one tag per metric over the global step (layer and stage as their own
    scalars, not one tag per (layer, stage)), written to disk after every epoch."""
    from open_l2o_tf import logging as olog
    tb = olog.TensorBoard(str(tmp_path / "tb"))
    model, trainer = _trainer(data, layers=2, tb=tb, max_epochs=2)
    trainer.run_stage(0, 0)
    # flushed at the end of each epoch: readable before the writer is closed
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    seen = {}
    for event in tf.compat.v1.train.summary_iterator(str(files[0])):
        for value in event.summary.value:
            seen.setdefault(value.tag, []).append(
                (event.step, float(tf.make_ndarray(value.tensor))))
    assert set(seen) == {"train/loss", "val/metric", "train/layer", "train/stage"}
    epochs = len(seen["train/loss"])
    assert 1 <= epochs <= 2 and [s for s, _ in seen["train/loss"]] == \
        [10 * (k + 1) for k in range(epochs)]
    assert {v for _, v in seen["train/layer"]} == {1.0}
    assert {v for _, v in seen["train/stage"]} == {1.0}
    trainer.train(2)
    seen = {}
    for event in tf.compat.v1.train.summary_iterator(str(files[0])):
        for value in event.summary.value:
            seen.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert {"test/metric_per_layer", "val/metric_per_layer"} <= set(seen)
    assert not [tag for tag in seen if "layer1" in tag or "stage" in tag and tag != "train/stage"]
    assert set(seen["train/layer"]) == {1.0, 2.0} and set(seen["train/stage"]) == {1.0, 2.0, 3.0}
