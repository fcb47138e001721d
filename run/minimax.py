"""Minimax problems (Twin-L2O, paper Section 4.4): a learned pair of optimizers or
alternating gradient descent-ascent on min_u max_v f(u, v).

    python -m run.minimax --optimizer=twin_l2o --problem=saddle --workdir=W
    python -m run.minimax --optimizer=gda --problem=seesaw --ab_range=3 --preset=quick

Reports the per-instance saddle distance (||u||_1^2 + ||v||_1^2; seesaw: distance to the
nearest saddle u = k/a) after every half-step, averaged over test instances x restarts;
``final`` is the last value, ``second_half_mean`` the original's selection metric.  The
paper shows no Twin-L2O numbers in Figures 5-8, so there is no reference column.
"""
import os
import time

import numpy as np
from absl import flags

import model_free  # noqa: F401  registers the learned names (imports no TensorFlow)
import open_l2o_tf.classic  # noqa: F401  registers the classic names (no TensorFlow)
from open_l2o_tf import logging as olog
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError
from . import common

# the registry's entries that serve run.minimax (info ``commands``)
OPTIMIZERS = common.define_method_flag("optimizer", "minimax", "twin_l2o", "The optimizer.",
                                       kinds=("learned", "classic"))
flags.DEFINE_enum("problem", "saddle", ["saddle", "rotated_saddle", "seesaw", "matrix_game"],
                  "The minimax problem.")
flags.DEFINE_integer("ab_range", 1, "Range of (a, b) for the toy problems: 1..7 as the "
                     "original's data files (1: a, b in [0.9, 1]).", lower_bound=1,
                     upper_bound=7)
flags.DEFINE_float("keep_probability", 1.0, "matrix_game: probability an entry of A is kept "
                   "(the original: 1.0 or 0.5).")
flags.DEFINE_integer("dim", None, "Dimension of u and v (default 1; matrix_game 5).",
                     lower_bound=1)
flags.DEFINE_integer("half_steps", None, "Test half-steps, even (paper 2000, quick 400).",
                     lower_bound=1)
flags.DEFINE_integer("test_instances", None, "Test instances (paper 100, quick 20).",
                     lower_bound=1)
flags.DEFINE_integer("restarts", None, "Random starts per test instance (paper 5, quick 2).",
                     lower_bound=1)
flags.DEFINE_float("lr", 0.01, "Learning rate of gda / adam_gda.")
flags.DEFINE_integer("epochs", None, "Twin-L2O meta-training epochs (paper 200, matrix game "
                     "300; quick 20).", lower_bound=1)
flags.DEFINE_integer("hidden", None, "Twin-L2O LSTM width (50; matrix game 80).",
                     lower_bound=1)
flags.DEFINE_float("rescale", 1e-4, "Twin-L2O: recurrent states are multiplied by this "
                   "before every call (the original's 1e-4; 1 keeps the LSTM memory).")
flags.DEFINE_bool("joint_loss", False, "Twin-L2O: back-propagate the sum of both players' "
                  "losses into both networks, as the original code.")
common.define_common_flags("runs/minimax")
common.define_strategy_flags()
common.bound_flags(positive=["lr", "rescale"])
flags.register_validator("keep_probability", lambda v: 0.0 < v <= 1.0,
                         message="--keep_probability must be in (0, 1]")
FLAGS = flags.FLAGS


def learned(name):
    """Whether ``--optimizer=name`` is a learned (two-player) optimizer."""
    return registry.kind_of(name, ("learned", "classic")) == "learned"


def validate():
    """Checks that need no TensorFlow: flags that do not apply, --load, the workdir and
    the run identity."""
    if FLAGS.load is not None:
        if not learned(FLAGS.optimizer):
            raise UserError(f"--load does not apply to --optimizer={FLAGS.optimizer} (only "
                            "twin_l2o has weights to load)")
        if not os.path.isfile(FLAGS.load):
            raise UserError(f"--load file {FLAGS.load} "
                            f"{'is a directory' if os.path.isdir(FLAGS.load) else 'does not exist'}")
        from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
        pretrained.check_kind(FLAGS.load, FLAGS.optimizer)
    settings()
    common.check_strategy_flags(learned(FLAGS.optimizer) and FLAGS.load is None,
                                "--load trains nothing" if FLAGS.load else
                                f"--optimizer={FLAGS.optimizer} trains nothing")
    common.prepare_workdir(FLAGS.workdir)


def settings():
    """The run's sizes from the flags and the preset (checked): half_steps, count,
    restarts, epochs, hidden, dim."""
    matrix = FLAGS.problem == "matrix_game"
    out = dict(half_steps=common.preset_value(FLAGS.preset, 2000, 400, FLAGS.half_steps),
               count=common.preset_value(FLAGS.preset, 100, 20, FLAGS.test_instances),
               restarts=common.preset_value(FLAGS.preset, 5, 2, FLAGS.restarts),
               epochs=common.preset_value(FLAGS.preset, 300 if matrix else 200, 20,
                                          FLAGS.epochs),
               hidden=FLAGS.hidden or (80 if matrix else 50),
               dim=FLAGS.dim or (5 if matrix else 1))
    if out["half_steps"] % 2:
        raise UserError(f"--half_steps must be even (pairs of min and max moves), got "
                        f"{out['half_steps']}")
    if not 0.0 < FLAGS.keep_probability <= 1.0:
        raise UserError(f"--keep_probability must be in (0, 1], got {FLAGS.keep_probability}")
    if not FLAGS.lr > 0 or not FLAGS.rescale > 0:
        raise UserError("--lr and --rescale must be positive numbers")
    return out


def build_problem(problem, dim, keep_probability=1.0, ab_range=1):
    """The minimax problem ``problem`` (``--problem``) of dimension ``dim``: matrix games
    take ``keep_probability``, the others ``ab_range`` (the flags of the same names)."""
    from open_l2o_tf.optimizees import make_optimizee  # pylint: disable=import-outside-toplevel
    shape_flags = ({"keep_probability": keep_probability} if problem == "matrix_game"
                   else {"ab_range": ab_range})
    return make_optimizee(problem, dim=dim, **shape_flags)


def train_or_load_twin(name, problem, workdir, tb, hidden, epochs, *, load=None, rescale=1e-4,
                       eval_half_steps=1000, joint_loss=False, seed=0, strategy=None,
                       deterministic=None):
    """The two-player learned optimizer ``name`` (its registry class) from ``load`` or
    meta-trained (resumable) and saved; ``(twin, info)``.  The keyword arguments are the
    flags of the same names (``eval_half_steps``: 200 with the quick preset)."""
    from model_free.rules import twin as twin_lib  # pylint: disable=import-outside-toplevel
    if load:
        twin = twin_lib.load_twin(load)
        print(f"[twin] loaded {load}")
        return twin, {"train_seconds": 0.0, "train_steps": 0}
    twin = registry.get("learned", name)(hidden=hidden, rescale=rescale)
    trainer = twin_lib.TwinTrainer(
        twin, problem, eval_half_steps=eval_half_steps, joint_loss=joint_loss, seed=seed,
        tb=tb, ckpt_dir=os.path.join(workdir, "ckpt"), strategy=strategy,
        deterministic=deterministic)
    trainer.train(epochs)
    twin_lib.save_twin(twin, os.path.join(workdir, f"{name}.npz"))
    return twin, {"train_seconds": trainer.train_seconds,
                  "train_steps": epochs * trainer.iterations}


def play_all(problem, twin, count, restarts, half_steps, *, method="gda", lr=0.01, seed=0,
             deterministic=None, label="minimax"):
    """The mean distance-to-saddle curve over ``count`` test instances x ``restarts``
    starts, for a two-player learned optimizer (``twin``) or, with ``twin=None``, the GDA
    baseline ``method`` at ``lr`` (``--optimizer``, ``--lr``)."""
    from model_free.rules import twin as twin_lib  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic.gda import alternating_gda  # pylint: disable=import-outside-toplevel
    test = problem.sample_instance(10 ** 7 + seed, count)
    curves, runner = [], None
    if twin is not None:    # one compiled play for all restarts
        runner = twin_lib.twin_runner(twin, problem, half_steps, deterministic)
    progress = olog.Progress(label, restarts)
    for r in range(restarts):
        params = problem.init_params(10 ** 7 + 1000 * seed + r, test)
        if twin is not None:
            curve = twin_lib.play(twin, problem, test, params, half_steps, seed=r,
                                  runner=runner)
        else:
            curve = alternating_gda(problem, test, params, half_steps, lr=lr, method=method)
        curves.append(curve)
        progress.update(r + 1, force=True, distance=f"{float(curve[-1].mean()):.4g}")
    return np.concatenate(curves, axis=1).mean(axis=1)


def report(curve, sizes, workdir, tb, info, start):
    """TensorBoard, ``results.json`` and the summary line."""
    half_steps = sizes["half_steps"]
    for k in range(0, len(curve), max(1, len(curve) // 100)):
        tb.scalar(f"minimax/{FLAGS.problem}/{FLAGS.optimizer}/distance", curve[k], k)
    tb.flush()
    second_half = float(np.mean(curve[half_steps // 2 + 1:]))
    record = olog.make_result("minimax", FLAGS.optimizer, FLAGS.problem, FLAGS.preset,
                              "saddle_distance", curve, paper=None,
                              train_seconds=info["train_seconds"],
                              train_steps=info["train_steps"],
                              config=common.flag_values_dict(), second_half_mean=second_half,
                              setup={"half_steps": int(half_steps),
                                     "instances": int(sizes["count"]),
                                     "restarts": int(sizes["restarts"])},
                              eval_seconds=time.time() - start)
    common.write_results(workdir, record)
    print(f"[minimax] {FLAGS.problem} {FLAGS.optimizer}: distance[0]={curve[0]:.4g} "
          f"distance[{half_steps}]={curve[-1]:.4g} second-half mean={second_half:.4g} "
          f"({sizes['count']} instances x {sizes['restarts']} starts); wrote "
          f"{os.path.join(workdir, 'results.json')}")


def main(argv):
    del argv
    sizes = settings()
    workdir = FLAGS.workdir
    tb = olog.TensorBoard(os.path.join(workdir, "tb"))
    problem = build_problem(FLAGS.problem, sizes["dim"], FLAGS.keep_probability,
                            FLAGS.ab_range)
    twin, info = None, {"train_seconds": 0.0, "train_steps": 0}
    strategy = common.strategy()
    deterministic = common.deterministic()
    if learned(FLAGS.optimizer):
        twin, info = train_or_load_twin(
            FLAGS.optimizer, problem, workdir, tb, sizes["hidden"], sizes["epochs"],
            load=FLAGS.load, rescale=FLAGS.rescale,
            eval_half_steps=200 if FLAGS.preset == "quick" else 1000,
            joint_loss=FLAGS.joint_loss, seed=FLAGS.seed, strategy=strategy,
            deterministic=deterministic)
    start = time.time()
    curve = play_all(problem, twin, sizes["count"], sizes["restarts"], sizes["half_steps"],
                     method=FLAGS.optimizer, lr=FLAGS.lr, seed=FLAGS.seed,
                     deterministic=deterministic,
                     label=f"minimax {FLAGS.optimizer} {FLAGS.problem}")
    report(curve, sizes, workdir, tb, info, start)
    return 0


if __name__ == "__main__":
    common.main_wrapper(main, validate)
