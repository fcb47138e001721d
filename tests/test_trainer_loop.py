"""The trainers' shared pieces: the episode loop's progress lines, checkpoints and position
(model_free.meta.episodic), and the one guard against non-finite updates
(open_l2o_tf.trainer_support.apply_if_finite)."""
import json
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from model_free.meta import episodic
from model_free.rules.twin import TwinL2O
from open_l2o_tf import position
from open_l2o_tf.trainer_support import apply_if_finite, report_skip


class _Toy(episodic.EpisodicTrainer):
    tag = "toy"
    PROGRESS_EVERY = 2

    def __init__(self, ckpt, lines, seen):
        model = TwinL2O(hidden=2)      # any network with weights and a config
        super().__init__(model, {}, eval_every=5, progress=lines.append, tb=None,
                         ckpt_dir=ckpt)
        self.seen, self.saved = seen, []

    def run_episode(self, episode):
        self.seen.append(position.get())
        return float(episode)

    def score(self):
        return 10.0 - self.episode

    def save(self):
        super().save()
        self.saved.append(json.load(open(os.path.join(self.ckpt_dir, "toy_state.json")))
                          ["episode"])


def test_progress_line_and_checkpoint_between_evaluations(tmp_path):
    lines, seen = [], []
    trainer = _Toy(str(tmp_path), lines, seen)
    trainer.train(7)
    assert seen == [f"episode {e}/7" for e in range(1, 8)] and position.get() == ""
    # evaluations at 5 and 7 (the last); progress lines and checkpoints at 2, 4, 6 too
    assert trainer.saved == [2, 4, 5, 6, 7, 7]
    assert [line.split()[2] for line in lines] == ["2/7", "4/7", "5/7", "6/7", "7/7"]
    assert "held-out" not in lines[0] and "held-out=5" in lines[2]
    assert trainer.history["eval"] == [(5, 5.0), (7, 3.0)]
    again = _Toy(str(tmp_path), [], [])
    again.train(8)                  # resumes at 7: one more episode, evaluated (the last)
    assert again.seen == ["episode 8/8"] and again.history["eval"][-1] == (8, 2.0)


class _Slow(_Toy):
    def run_episode(self, episode):
        time.sleep(0.02)
        return float(episode)

    def score(self):
        time.sleep(0.3)
        return 1.0


def test_progress_line_times_episodes_apart_from_the_evaluation(tmp_path):
    """The line's ``s/episode`` is the mean episode time since the last line; the held-out
    evaluation's seconds are given beside it, not folded into one episode."""
    lines = []
    _Slow(str(tmp_path), lines, []).train(5)
    per_episode = [float(re.search(r"\(([0-9.]+) s/episode", line).group(1)) for line in lines]
    assert max(per_episode) < 0.2, lines
    held_out = float(re.search(r"held-out ([0-9.]+) s\)", lines[-1]).group(1))
    assert "held-out=" in lines[-1] and held_out >= 0.3, lines[-1]


def test_apply_if_finite_skips_and_keeps_the_weights():
    v = tf.Variable([1.0, 2.0])
    opt = keras.optimizers.SGD(0.5)
    opt.build([v])

    @tf.function
    def step(grad, loss):
        return apply_if_finite(lambda g: opt.apply_gradients([(g[0], v)]), [grad], loss)

    assert bool(step(tf.constant([1.0, 1.0]), tf.constant(3.0)))
    np.testing.assert_allclose(v.numpy(), [0.5, 1.5])
    assert not bool(step(tf.constant([np.nan, 1.0]), tf.constant(3.0)))
    assert not bool(step(tf.constant([1.0, 1.0]), tf.constant(np.inf)))
    np.testing.assert_allclose(v.numpy(), [0.5, 1.5])      # the last good weights
    said, log = [], []
    report_skip(said.append, log, "meta", "meta-loss/gradient", "episode 3 truncation 2",
                "episode ended")
    assert said == ["[meta] WARNING: non-finite meta-loss/gradient at episode 3 truncation 2; "
                    "update skipped, episode ended"] and log == [said[0][len("[meta] WARNING: "):]]
