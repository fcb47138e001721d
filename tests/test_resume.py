"""Exact resume after an interruption in the middle of meta-training (issue 10 item 11):
L2O-enhanced (curriculum + imitation: its RNG and the imitation optimizer's slots are in the
checkpoint), L2O-Swarm and Twin-L2O.  An interrupted run resumed with the same command ends
with the same weights, optimizer slots and best score as an uninterrupted one."""
import keras
import numpy as np
import pytest

from model_free import swarm as swarm_lib
from model_free import twin as twin_lib
from model_free.curriculum import Curriculum
from model_free.dm import L2ODM
from model_free.imitation import Imitation
from model_free.meta_trainer import MetaTrainer
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


def test_twin_resumes_exactly(tmp_path):
    def make(ckpt):
        return twin_lib.TwinTrainer(twin_lib.TwinL2O(hidden=8), minimax.Saddle(batch_size=8),
                                    iterations=20, eval_half_steps=20, eval_every=2,
                                    eval_instances=2, progress=None, ckpt_dir=ckpt)

    _check_resume(tmp_path, make, 4, 3, lambda t: (t.twin, [t.opt_min, t.opt_max]))
