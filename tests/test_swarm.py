"""L2O-Swarm: features by hand, instance independence, entropy, meta-training, CLI."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_free.rules import swarm as swarm_lib
from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees.rastrigin import Rastrigin
from tests.cli import error_lines, run_cli, run_ok


def test_attraction_and_distance_to_best_by_hand():
    sw = swarm_lib.L2OSwarm(dim=1, particles=2)
    x = tf.constant([[[0.0]], [[1.0]]])          # (k=2, B=1, n=1)
    f = tf.constant([[1.0], [2.0]])              # particle 0 is better
    g = tf.constant([[[0.5]], [[-0.5]]])
    best = tf.constant([[[0.25]], [[0.5]]])
    feats = sw.features(x, f, g, g, best).numpy()[0]   # (k, 4, n)
    w = math.exp(-1.0) / (1.0 + math.exp(-1.0))
    np.testing.assert_allclose(feats[:, 3, 0], [-w, 0.0], rtol=1e-5)   # as coded
    np.testing.assert_allclose(feats[:, 2, 0], [-0.25, 0.5], rtol=1e-6)
    np.testing.assert_allclose(feats[:, 1, 0], [0.45, -0.45], rtol=1e-6)
    toward = swarm_lib.L2OSwarm(dim=1, particles=2, attraction="toward_better")
    feats = toward.features(x, f, g, g, best).numpy()[0]
    np.testing.assert_allclose(feats[:, 3, 0], [0.0, -w], rtol=1e-5)   # 1 pulled to 0
    with pytest.raises(UserError, match="attraction"):
        swarm_lib.L2OSwarm(dim=1, attraction="nope")


@pytest.mark.parametrize("dim", [2, 10])
def test_attention_bias_drawn_independently_of_its_weights(dim):
    """The original draws the attention kernel and bias with two tf.random_normal ops
    (L2O-Swarm/src/meta.py:346, :348); one shared unseeded Keras 3 initializer gave
    attention_b the first 40 values of attention_w (at n = 2 a copy of it).
    tied_attention_init (--lstm_init=tied) keeps that draw."""
    keras.utils.set_random_seed(0)
    sw = swarm_lib.L2OSwarm(dim=dim)
    w, b = sw.att_w.numpy(), sw.att_b.numpy()
    assert not np.allclose(b.ravel(), w.ravel()[:b.size])
    assert not any(np.allclose(b[:, j], w[:, i]) for i in range(w.shape[1]) for j in range(4))
    assert 0.7 < b.std() < 1.3 and abs(b.mean()) < 0.4     # N(0, 1), 40 values
    keras.utils.set_random_seed(0)
    tied = swarm_lib.L2OSwarm(dim=dim, tied_attention_init=True)
    assert tied.get_config()["tied_attention_init"] is True
    np.testing.assert_array_equal(tied.att_b.numpy().ravel(),
                                  tied.att_w.numpy().ravel()[:b.size])


def test_instances_do_not_interact():
    fam = Rastrigin(n=2, batch_size=3)
    inst = fam.sample_instance(0)
    x0 = fam.init_params(1, inst)[0]
    sw = swarm_lib.L2OSwarm(dim=2)
    a = swarm_lib.swarm_minimize(sw, fam, inst, x0, 5, start="test_start")
    moved = x0 + tf.constant([[0.0, 0.0], [0.0, 0.0], [1.0, -2.0]])
    b = swarm_lib.swarm_minimize(sw, fam, inst, moved, 5, start="test_start")
    np.testing.assert_allclose(a[:, :2], b[:, :2], rtol=1e-5)
    assert not np.allclose(a[:, 2], b[:, 2])


def test_posterior_entropy_bounds_and_sharpness():
    rng = np.random.default_rng(0)
    points = tf.constant(rng.normal(size=(2, 12, 2)), tf.float32)
    flat = tf.ones([2, 12])
    h = swarm_lib.posterior_entropy(points, flat).numpy()
    assert h.shape == (2,) and np.all(h <= math.log(1000) + 1e-4) and np.all(h > 0)
    # a point with a much lower loss near the sampling region concentrates the posterior
    near = tf.concat([tf.zeros([2, 1, 2]), points[:, 1:]], 1)
    values = tf.concat([-50.0 * tf.ones([2, 1]), 50.0 * tf.ones([2, 11])], 1)
    assert np.all(swarm_lib.posterior_entropy(near, values).numpy() < h)


def test_meta_training_improves_the_heldout_score_and_resumes(tmp_path):
    fam = Rastrigin(n=2, batch_size=16)
    sw = swarm_lib.L2OSwarm(dim=2)
    trainer = swarm_lib.SwarmTrainer(sw, fam, unroll=20, truncation=10, eval_every=4,
                                     eval_instances=8, progress=None,
                                     ckpt_dir=str(tmp_path / "ckpt"))
    start = trainer.score()
    # 12 episodes: with the LSTMs' biases drawn independently of their weights (Sonnet 1's
    # init) this seed's held-out score is 0.82 x the start's after 8, 0.06 x after 12
    trainer.train(12)
    assert trainer.best_score < 0.8 * start
    again = swarm_lib.SwarmTrainer(swarm_lib.L2OSwarm(dim=2), fam, unroll=20, truncation=10,
                                   eval_every=4, eval_instances=8, progress=None,
                                   ckpt_dir=str(tmp_path / "ckpt"))
    again.train(12)
    assert again.episode == 12 and again.best_score == pytest.approx(trainer.best_score)
    path = str(tmp_path / "swarm.npz")
    swarm_lib.save_swarm(sw, path)
    loaded = swarm_lib.load_swarm(path, dim=2)
    for a, b in zip(loaded.weights, sw.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy())
    with pytest.raises(UserError, match="n = 2, not n = 10"):
        swarm_lib.load_swarm(path, dim=10)


def test_a_checkpoint_resumes_under_another_initial_draw(tmp_path):
    """The initial-draw options (--lstm_init: tied_lstm_init, tied_attention_init) do not make
    a checkpoint another configuration's, as the weights come from it: a checkpoint of the
    tied draw (or one written before tied_attention_init existed) resumes under the default
    draw.  (Before, the attention option's new config key refused such a checkpoint.)"""
    fam = Rastrigin(n=2, batch_size=4)

    def trainer(**options):
        return swarm_lib.SwarmTrainer(swarm_lib.L2OSwarm(dim=2, **options), fam, unroll=5,
                                      truncation=5, eval_every=1, eval_instances=4,
                                      progress=None, ckpt_dir=str(tmp_path / "ckpt"))
    first = trainer(tied_lstm_init=True, tied_attention_init=True)
    first.train(1)
    again = trainer()
    again.train(1)
    assert again.episode == 1
    for a, b in zip(again.swarm.weights, first.swarm.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _trained_swarm(seed, eagerly=False):
    """Weights and history of a tiny meta-training (one episode, one held-out score)."""
    tf.config.run_functions_eagerly(eagerly)
    try:
        keras.utils.set_random_seed(seed)
        sw = swarm_lib.L2OSwarm(dim=2)
        trainer = swarm_lib.SwarmTrainer(sw, Rastrigin(n=2, batch_size=8), unroll=5,
                                         truncation=5, eval_every=1, eval_instances=4,
                                         seed=seed, progress=None)
        history = trainer.train(1)
        return [w.numpy() for w in sw.weights], history["loss"] + history["eval"]
    finally:
        tf.config.run_functions_eagerly(False)


def test_meta_training_repeats_bit_for_bit_with_the_same_seed():
    weights, history = _trained_swarm(3)
    again, history_again = _trained_swarm(3)
    assert history == history_again
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)
    # the compiled steps compute what eager execution computes, bit for bit (Grappler's
    # rewrites, which made the meta-gradients vary from trace to trace, are off)
    eager, history_eager = _trained_swarm(3, eagerly=True)
    assert history == history_eager
    for a, b in zip(weights, eager):
        np.testing.assert_array_equal(a, b)
    other, _ = _trained_swarm(4)
    assert not np.array_equal(weights[0], other[0])


def test_rastrigin_cli_with_l2o_swarm(tmp_path):
    record = run_ok("run.rastrigin", "--optimizer=l2o_swarm", "--preset=quick", "--steps=30",
                    "--test_instances=4", "--meta_episodes=2", workdir=tmp_path)
    assert record["method"] == "l2o_swarm" and len(record["curve"]) == 31
    assert record["paper"] == pytest.approx(6.5)
    # two meta-episodes leave the swarm near its initial draw, whose loss swings with a period
    # of 10-15 steps: with the attention bias drawn apart from its weights (the original's)
    # meta seeds 0-3 end at 1.07, 0.45, 1.11, 0.90 x the start and reach 0.54, 0.22, 0.80,
    # 0.55 x it on the way; the test asks that it gets well below its start
    assert min(record["curve"]) < 0.9 * record["curve"][0]
    assert (tmp_path / "l2o_swarm.npz").exists()
    # the released evaluation's quantity beside ours: a min of batch means >= a mean of mins
    original = record["swarm_original_curve"]
    assert len(original) == 31 and record["swarm_original_final"] == original[-1]
    assert all(o >= c - 1e-5 for o, c in zip(original, record["curve"]))
    proc = run_cli("run.rastrigin", "--optimizer=l2o_swarm", "--n=10",
                   f"--load={tmp_path / 'l2o_swarm.npz'}", f"--workdir={tmp_path / 'x'}")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "n = 2, not n = 10" in lines[0]


def test_original_quantity_is_min_over_particles_of_batch_means():
    # 2 particles, 2 instances x 2 starts (rows instance-major: instance * 2 + start)
    f = np.array([[[1.0, 5.0, 1.0, 0.0],     # particle 0
                   [4.0, 0.0, 0.0, 3.0]]])   # particle 1
    # ours: mean over rows of each row's best particle
    assert swarm_lib.best_particle_curve(f)[0] == pytest.approx((1 + 0 + 0 + 0) / 4)
    # the original's per start, start 0 = rows 0, 2: min(mean(1, 1), mean(4, 0)) = 1;
    # start 1 = rows 1, 3: min(mean(5, 0), mean(0, 3)) = 1.5; their mean 1.25
    assert swarm_lib.original_curve(f, groups=2)[0] == pytest.approx(1.25)
    # one batch of all rows: min(7 / 4, 7 / 4)
    assert swarm_lib.original_curve(f)[0] == pytest.approx(1.75)
    with pytest.raises(ValueError):
        swarm_lib.original_curve(f, groups=3)
