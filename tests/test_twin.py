"""Twin-L2O and alternating GDA on the minimax problems; run.minimax."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_free.rules import twin as twin_lib
from open_l2o_tf.classic.gda import alternating_gda
from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees import minimax
from tests.cli import error_lines, run_cli


def test_gda_converges_on_the_saddle_and_alternates():
    p = minimax.Saddle(batch_size=8)
    inst = p.sample_instance(0)
    params = p.init_params(1, inst)
    curve = alternating_gda(p, inst, params, 200, lr=0.05)
    assert curve.shape == (201, 8)
    assert np.all(curve[-1] < 1e-6 * curve[0])
    # one half-step moves only u: u' = u - lr * 2 a u, v unchanged
    one = alternating_gda(p, inst, params, 1, lr=0.05)
    u, v = params[0].numpy(), params[1].numpy()
    u1 = u - 0.05 * 2 * inst["a"].numpy() * u
    np.testing.assert_allclose(one[1], np.abs(u1).sum(1) ** 2 + np.abs(v).sum(1) ** 2,
                               rtol=1e-5)
    with pytest.raises(UserError, match="method"):
        alternating_gda(p, inst, params, 4, method="sgd")


def test_twin_half_step_moves_one_player_with_the_warm_up_sign_step():
    p = minimax.Saddle(batch_size=4)
    inst = p.sample_instance(0)
    u, v = p.init_params(1, inst)
    twin = twin_lib.TwinL2O(hidden=8)
    state = twin.initial_state([u, v], tf.constant([0, 1]))
    u1, v1, _ = twin.half_step(p, inst, u, v, state, tf.constant(0), 100, True)
    np.testing.assert_array_equal(v1, v)
    np.testing.assert_allclose(np.abs(u1 - u), 1e-4, rtol=1e-3)   # sign(out) * lr_0
    u2, v2, _ = twin.half_step(p, inst, u1, v1, state, tf.constant(10), 100, False)
    np.testing.assert_array_equal(u2, u1)
    np.testing.assert_allclose(np.abs(v2 - v1), 1e-4 + (0.1 - 1e-4) * 10 / 20, rtol=1e-3)
    u3, _, _ = twin.half_step(p, inst, u, v, state, tf.constant(50), 100, True)
    # after the warm-up the step is the network's output itself: no longer one magnitude
    assert np.std(np.abs(u3 - u)) > 1e-7


def test_twin_training_lowers_the_heldout_distance_and_resumes(tmp_path):
    p = minimax.Saddle(batch_size=32)
    twin = twin_lib.TwinL2O(hidden=16)
    trainer = twin_lib.TwinTrainer(twin, p, eval_half_steps=100, eval_every=4,
                                   eval_instances=8, progress=None,
                                   ckpt_dir=str(tmp_path / "ckpt"))
    start = trainer.score()
    trainer.train(8)
    assert trainer.best_score < 0.5 * start
    assert np.isfinite(trainer.history["loss"]).all()
    again = twin_lib.TwinTrainer(twin_lib.TwinL2O(hidden=16), p, eval_half_steps=100,
                                 eval_every=4, eval_instances=8, progress=None,
                                 ckpt_dir=str(tmp_path / "ckpt"))
    again.train(8)   # already done: restores and trains nothing
    assert again.epoch == 8 and again.best_score == pytest.approx(trainer.best_score)
    for a, b in zip(again.twin.weights, twin.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy())
    path = str(tmp_path / "twin.npz")
    twin_lib.save_twin(twin, path)
    loaded = twin_lib.load_twin(path)
    inst = p.sample_instance(5, 4)
    params = p.init_params(6, inst)
    np.testing.assert_allclose(twin_lib.play(loaded, p, inst, params, 20),
                               twin_lib.play(twin, p, inst, params, 20), rtol=1e-5)
    with pytest.raises(UserError, match="does not exist"):
        twin_lib.load_twin(str(tmp_path / "nope.npz"))


def _trained_twin(seed, eagerly=False):
    """Weights, history and the trainer of a tiny meta-training (2 epochs, two held-out
    plays)."""
    tf.config.run_functions_eagerly(eagerly)
    try:
        keras.utils.set_random_seed(seed)
        twin = twin_lib.TwinL2O(hidden=8)
        trainer = twin_lib.TwinTrainer(twin, minimax.Saddle(batch_size=8), iterations=10,
                                       eval_half_steps=10, eval_every=1, eval_instances=4,
                                       seed=seed, progress=None)
        history = trainer.train(2)
        return [w.numpy() for w in twin.weights], history["loss"] + history["eval"], trainer
    finally:
        tf.config.run_functions_eagerly(False)


def test_meta_training_repeats_bit_for_bit_and_traces_the_heldout_play_once():
    weights, history, trainer = _trained_twin(3)
    again, history_again, _ = _trained_twin(3)
    assert history == history_again and len(history) == 4
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)
    # the compiled steps compute what eager execution computes, bit for bit (Grappler's
    # rewrites, which made the meta-gradients vary from trace to trace, are off)
    eager, history_eager, _ = _trained_twin(3, eagerly=True)
    assert history == history_eager
    for a, b in zip(weights, eager):
        np.testing.assert_array_equal(a, b)
    other, _, _ = _trained_twin(4)
    assert not np.array_equal(weights[0], other[0])
    # two held-out plays (epochs 1 and 2), one trace
    assert trainer._score_run.__wrapped__.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
    trainer.score()
    assert trainer._score_run.__wrapped__.experimental_get_tracing_count() == 1  # pylint: disable=protected-access


def test_minimax_cli(tmp_path):
    proc = run_cli("run.minimax", "--optimizer=gda", "--problem=rotated_saddle",
                   "--preset=quick", "--half_steps=100", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.load(open(tmp_path / "results.json"))
    assert record["test"] == "minimax" and record["metric"] == "saddle_distance"
    assert len(record["curve"]) == 101 and record["final"] < record["curve"][0]
    assert record["paper"] is None and "second_half_mean" in record
    proc = run_cli("run.minimax", "--optimizer=gda", "--half_steps=7", f"--workdir={tmp_path}")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "--half_steps" in lines[0]
