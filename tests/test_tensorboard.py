"""TensorBoard that compares runs, read back from the event files: every command's flags as
HParams (typed) with its figures as metrics, so a folder of runs is one table; the unrolled
models' per-layer NMSE as one chart; the learned optimizers' effective step sizes as
histograms."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _events(logdir):
    """Every (tag, value, step) of the event files under ``logdir``."""
    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.append((value.tag, value, event.step))
    return out


def _session_start(logdir):
    from tensorboard.plugins.hparams import metadata  # pylint: disable=import-outside-toplevel
    found = [v for tag, v, _ in _events(logdir) if tag == metadata.SESSION_START_INFO_TAG]
    assert found, f"no HParams session in {logdir}"
    info = metadata.parse_session_start_info_plugin_data(
        found[-1].metadata.plugin_data.content)
    return {name: getattr(value, value.WhichOneof("kind"))
            for name, value in info.hparams.items()}


def _experiment_metrics(logdir):
    from tensorboard.plugins.hparams import metadata  # pylint: disable=import-outside-toplevel
    found = [v for tag, v, _ in _events(logdir) if tag == metadata.EXPERIMENT_TAG]
    assert found, f"no HParams experiment config in {logdir}"
    experiment = metadata.parse_experiment_plugin_data(found[-1].metadata.plugin_data.content)
    return {m.name.tag for m in experiment.metric_infos}


def _scalars(logdir, tag):
    return {step: float(tf.make_ndarray(v.tensor)) for t, v, step in _events(logdir)
            if t == tag}


def test_three_runs_of_a_command_are_one_hparams_table(tmp_path):
    """Three tiny run.rastrigin runs with other --lr in one folder (one process,
    tests/cli_batch.py): each run's tb/ holds its flags, typed, and its final loss."""
    runs = tmp_path / "runs"
    lrs = (0.01, 0.1, 0.3)
    cases = [{"args": ["--optimizer=adam", f"--lr={lr}", "--n=2", "--steps=5",
                       "--test_instances=2", "--starts=1", "--preset=quick",
                       f"--workdir={runs / f'lr{lr}'}"]} for lr in lrs]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "cli_batch.py"),
                    "run.rastrigin", str(tmp_path / "cases.json"),
                    str(tmp_path / "results.json")], cwd=ROOT, env=env, check=True,
                   timeout=600)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["code"] for r in results] == [0, 0, 0], results[0]["stderr"][-1500:]
    for lr in lrs:
        logdir = str(runs / f"lr{lr}" / "tb")
        hparams = _session_start(logdir)
        assert hparams["lr"] == lr                       # a number stays a number
        assert hparams["n"] == 2 and hparams["steps"] == 5
        assert hparams["optimizer"] == "adam"            # a string a string (bools: below)
        assert hparams["test"] == "rastrigin"
        assert {"final/loss", "final/train_seconds"} <= _experiment_metrics(logdir)
        record = json.loads((runs / f"lr{lr}" / "results.json").read_text())
        final = list(_scalars(logdir, "final/loss").values())
        assert np.isclose(final[-1], record["final"], rtol=1e-6)
    assert len({_session_start(str(runs / f"lr{lr}" / "tb"))["lr"] for lr in lrs}) == 3


def test_hparams_typed_and_unset_left_out(tmp_path):
    from open_l2o_tf import logging as olog  # pylint: disable=import-outside-toplevel
    from run.workdir import write_results  # pylint: disable=import-outside-toplevel
    record = olog.make_result("lasso", "ista", "5x10", "quick", "relative_loss", [3.0, 0.5],
                              train_seconds=1.5, train_steps=7,
                              config={"lr": 0.1, "iterations": 20, "jit": True,
                                      "shifts": ["noise", "gain"], "load": None})
    write_results(str(tmp_path), record)
    hparams = _session_start(str(tmp_path / "tb"))
    assert hparams["lr"] == 0.1 and hparams["iterations"] == 20 and hparams["jit"] is True
    assert hparams["shifts"] == "noise,gain" and "load" not in hparams
    assert _scalars(str(tmp_path / "tb"), "final/relative_loss") == {7: 0.5}
    assert _scalars(str(tmp_path / "tb"), "final/train_seconds") == {7: 1.5}


def test_unrolled_model_logs_nmse_by_layer(tmp_path):
    from model_based.factory import build_model  # pylint: disable=import-outside-toplevel
    from model_based.progressive import evaluate  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import logging as olog  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    A = (rng.normal(size=(5, 10)) / np.sqrt(5)).astype(np.float32)
    x = (rng.normal(size=(16, 10)) * (rng.random((16, 10)) < 0.2)).astype(np.float32)
    model = build_model("lista", A, None, 3)
    tb = olog.TensorBoard(str(tmp_path / "tb"))
    curve = evaluate(model, x @ A.T, x, tb=tb)
    chart = _scalars(str(tmp_path / "tb"), "test/nmse_db_by_layer")
    assert sorted(chart) == [1, 2, 3]
    assert np.allclose([chart[k] for k in (1, 2, 3)], curve, rtol=1e-5)


def test_learned_optimizer_logs_effective_step_histograms(tmp_path):
    from model_free.meta import evaluation  # pylint: disable=import-outside-toplevel
    from model_free.rules.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import logging as olog  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.optimizees.rastrigin import Rastrigin  # pylint: disable=import-outside-toplevel
    family = Rastrigin(n=2, batch_size=4)
    instance = family.sample_instance(0, 4)
    params = family.init_params(1, instance)
    opt = L2ODM()
    tb = olog.TensorBoard(str(tmp_path / "tb"))
    evaluation.evaluate(opt, family, 12, instance, params, seed=0, grad_scale=1.0,
                        jit_compile=False, tb=tb)
    hist = [(step, tf.make_ndarray(v.tensor)) for tag, v, step in _events(str(tmp_path / "tb"))
            if tag == "test/effective_step"]
    assert sorted(step for step, _ in hist) == [1, 10, 12]
    # buckets (left, right, count): every one of the 8 coordinates counted, sizes >= 0
    for _, buckets in hist:
        assert buckets[:, 2].sum() == 8 and buckets[:, 0].min() >= 0
    # the first step's sizes are the rule's own: |x_1 - x_0| / |g_0|
    at, sizes = evaluation.effective_step_sizes(opt, family, instance, params, [1], seed=0,
                                                jit_compile=False)
    assert at == [1] and sizes.shape == (1, 8) and np.all(np.isfinite(sizes))
