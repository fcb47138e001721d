"""Exact resume after an interruption in the middle of meta-training (issue 10 item 11):
L2O-enhanced (curriculum + imitation: its RNG and the imitation optimizer's slots are in the
checkpoint), L2O-Swarm, Twin-L2O and L2O-Scale (its optimizer state carried across episodes
is in the checkpoint).  An interrupted run resumed with the same command ends with the same
weights, optimizer slots, best score and history as an uninterrupted one; a kill between
the files of a checkpoint never resumes new weights with old counters."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_free.meta.curriculum import Curriculum
from model_free.meta.imitation import Imitation
from model_free.meta.meta_trainer import MetaTrainer
from model_free.rules import swarm as swarm_lib
from model_free.rules import twin as twin_lib
from model_free.rules.dm import L2ODM
from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees import minimax
from open_l2o_tf.optimizees.quadratic import Quadratic
from open_l2o_tf.optimizees.rastrigin import Rastrigin


class _Interrupt(Exception):
    pass


def _interrupt_at(trainer, episode):
    run = trainer.run_episode

    def wrapped(e):
        if e == episode:
            raise _Interrupt
        return run(e)

    trainer.run_episode = wrapped


def _state(trainer, model, optimizers):
    return ([w.numpy() for w in model.weights],
            [v.numpy() for opt in optimizers for v in opt.variables], trainer.best_score)


def _check_resume(tmp_path, make, episodes, interrupt, models):
    keras.utils.set_random_seed(0)
    full = make(str(tmp_path / "full"))
    full.train(episodes)
    keras.utils.set_random_seed(0)
    part = make(str(tmp_path / "part"))
    _interrupt_at(part, interrupt)
    with pytest.raises(_Interrupt):
        part.train(episodes)
    keras.utils.set_random_seed(1)      # the resumed process starts from other weights
    resumed = make(str(tmp_path / "part"))
    resumed.train(episodes)
    a, b = _state(full, *models(full)), _state(resumed, *models(resumed))
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert a[2] == pytest.approx(b[2], rel=1e-6)
    assert resumed.history == full.history      # the history is in the checkpoint


def test_enhanced_resumes_exactly(tmp_path):
    def make(ckpt):
        opt = L2ODM(preprocess="identity", output_scale=1.0)
        return MetaTrainer(opt, Quadratic(dim=3, batch_size=4), truncation=5,
                           curriculum=Curriculum((5, 10, 20)),
                           imitation=Imitation("dm", probability=0.5, seed=3),
                           eval_every=2, eval_instances=1, progress=None, ckpt_dir=ckpt)

    _check_resume(tmp_path, make, 8, 5,
                  lambda t: (t.opt, [t.meta_opt, t.il_opt]))


def test_swarm_resumes_exactly(tmp_path):
    def make(ckpt):
        return swarm_lib.SwarmTrainer(swarm_lib.L2OSwarm(dim=2), Rastrigin(n=2, batch_size=4),
                                      unroll=10, truncation=5, eval_every=2,
                                      eval_instances=2, progress=None, ckpt_dir=ckpt)

    _check_resume(tmp_path, make, 4, 3, lambda t: (t.swarm, [t.opt]))


def _twin_trainer(ckpt, eval_every=2):
    return twin_lib.TwinTrainer(twin_lib.TwinL2O(hidden=8), minimax.Saddle(batch_size=8),
                                iterations=20, eval_half_steps=20, eval_every=eval_every,
                                eval_instances=2, progress=None, ckpt_dir=ckpt)


def test_twin_resumes_exactly(tmp_path):
    _check_resume(tmp_path, _twin_trainer, 4, 3, lambda t: (t.twin, [t.opt_min, t.opt_max]))


def _scale_trainer(ckpt):
    from model_free.rules.scale import L2OScale   # pylint: disable=import-outside-toplevel
    opt = L2OScale(hidden0=4, hidden1=4, hidden2=4, batched_instances=True)
    recipe = L2OScale.meta_training(opt, meta_lr=1e-2)     # carry_state=True, TF1 RMSProp
    assert recipe.carry_state
    return MetaTrainer(opt, Rastrigin(n=2, batch_size=4), unroll=4, truncation=2,
                       eval_every=2, eval_instances=2, progress=None, ckpt_dir=ckpt,
                       recipe=recipe)


def _check_same_scale(full, resumed):
    a, b = _state(full, full.opt, [full.meta_opt]), _state(resumed, resumed.opt,
                                                            [resumed.meta_opt])
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(x, y)
    assert a[2] == b[2]
    carried_a, carried_b = tf.nest.flatten(full.carried.state), tf.nest.flatten(resumed.carried.state)
    assert len(carried_a) == len(carried_b) == 9
    for x, y in zip(carried_a, carried_b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert float(carried_b[-1]) == 4 * 4        # the step counter: 4 episodes of 4 steps
    assert full.history == resumed.history and len(full.history["episode_loss"]) == 4
    assert full.truncations == resumed.truncations == 4 * 2


def test_scale_carried_state_resumes_exactly(tmp_path):
    """L2O-Scale meta-training carries the optimizer state across episodes.  4 episodes in
    one go end as: 2 episodes, the checkpoint, and a NEW trainer (other initial weights,
    other global-RNG history) restored from it that trains the other 2, whether the first
    trainer was killed during episode 3 (its work after the checkpoint is lost and
    redone) or finished its 2 episodes.  Exactly equal: weights, carried state, RMSProp
    slots, best score, history (the same float operations in the same order; the only
    random draws, L2O-Scale's initial learning rates, are seeded by episode and held-out
    instance)."""
    keras.utils.set_random_seed(0)
    full = _scale_trainer(str(tmp_path / "full"))
    full.train(4)
    for stop in ("killed", "finished"):
        keras.utils.set_random_seed(0)
        part = _scale_trainer(str(tmp_path / stop))
        if stop == "killed":
            _interrupt_at(part, 3)              # the checkpoint of episode 2 is the last
            with pytest.raises(_Interrupt):
                part.train(4)
        else:
            part.train(2)
        keras.utils.set_random_seed(1)
        tf.random.uniform([7])                  # the global RNG elsewhere than in `full`
        resumed = _scale_trainer(str(tmp_path / stop))
        resumed.train(4)
        _check_same_scale(full, resumed)
    # a damaged checkpoint is one UserError naming it, not a traceback
    with open(tmp_path / "killed" / "trainer_state.npz", "wb") as handle:
        handle.write(b"PK\x03\x04 truncated zip")
    with pytest.raises(UserError, match="trainer_state.npz cannot be read"):
        _scale_trainer(str(tmp_path / "killed")).restore()


def test_episodic_checkpoint_is_one_file_a_torn_write_keeps_counters_with_weights(
        tmp_path, monkeypatch):
    """Twin-L2O / L2O-Swarm (EpisodicTrainer): the checkpoint of episode 2 killed after its
    npz was written and before its readable json: the resumed trainer's counters, best score
    and history are those of the weights it loads (all read from the one npz), not the
    json's of episode 1.  A checkpoint of the older format (progress in the json only)
    still resumes."""
    ckpt = str(tmp_path / "ckpt")
    keras.utils.set_random_seed(0)
    part = _twin_trainer(ckpt, eval_every=1)
    write_json = olog.atomic_write_json

    def killed_at_episode_2(path, obj):
        if path.endswith("twin_state.json") and obj["episode"] == 2:
            raise _Interrupt
        write_json(path, obj)

    monkeypatch.setattr(olog, "atomic_write_json", killed_at_episode_2)
    with pytest.raises(_Interrupt):
        part.train(3)
    monkeypatch.undo()
    with open(os.path.join(ckpt, "twin_state.json"), encoding="utf-8") as handle:
        assert json.load(handle)["episode"] == 1       # the readable copy: episode 1's
    weights = [w.numpy() for w in part.twin.weights]
    keras.utils.set_random_seed(1)
    resumed = _twin_trainer(ckpt, eval_every=1)
    assert resumed.restore()
    assert resumed.episode == 2 and resumed.best_score == part.best_score
    assert resumed.history == part.history and len(resumed.history["loss"]) == 2
    for x, y in zip(weights, resumed.twin.weights):
        np.testing.assert_array_equal(x, y.numpy())
    # the older format: no progress in the npz, counters in the json
    resumed.save()
    with np.load(os.path.join(ckpt, "twin_state.npz")) as data:
        arrays = {k: data[k] for k in data.files if k != "progress"}
    np.savez(os.path.join(ckpt, "twin_state.npz"), **arrays)
    old = _twin_trainer(ckpt, eval_every=1)
    assert old.restore() and old.episode == 2 and old.best_score == part.best_score
    for x, y in zip(weights, old.twin.weights):
        np.testing.assert_array_equal(x, y.numpy())


def _edit_progress(path, edit):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    progress = json.loads(str(arrays["progress"]))
    edit(progress)
    arrays["progress"] = np.array(json.dumps(progress))
    np.savez(path, **arrays)


def test_a_hand_edited_progress_is_one_user_error(tmp_path):
    """A checkpoint whose progress parses but holds a field of the wrong type (the history's
    losses as a string, an eval entry without its score) is one UserError naming the file,
    for both meta-trainers (MetaTrainer, EpisodicTrainer), not a traceback."""
    keras.utils.set_random_seed(0)
    meta_dir = str(tmp_path / "meta")
    _scale_trainer(meta_dir).train(2)
    path = os.path.join(meta_dir, "trainer_state.npz")
    _edit_progress(path, lambda p: p["history"].update(episode_loss="not a list"))
    with pytest.raises(UserError, match="trainer_state.npz holds a progress record"):
        _scale_trainer(meta_dir).restore()
    twin_dir = str(tmp_path / "twin")
    _twin_trainer(twin_dir, eval_every=1).train(1)
    path = os.path.join(twin_dir, "twin_state.npz")
    _edit_progress(path, lambda p: p["history"].update(eval=[[1]]))
    with pytest.raises(UserError, match="twin_state.npz holds a progress record"):
        _twin_trainer(twin_dir, eval_every=1).restore()
