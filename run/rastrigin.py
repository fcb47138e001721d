"""The generalized Rastrigin family (Fig. 7): one optimizer, mean loss over 1,000 steps.

    python -m run.rastrigin --optimizer=nag_ls --n=2
    python -m run.rastrigin --optimizer=l2o_dm --n=10 --preset=quick --workdir=W

Protocol (paper): 128 test instances (A, b, c ~ N(0, 1)) x 10 random starts (x_0 ~ N(0, 1)),
1,000 iterations, the mean loss per iteration.  GD/NAG use backtracking line search from
step 0.1, Adam lr 0.1 and RMSProp lr 0.3 (the paper's); the oracle is Run-and-Inspect.
Learned optimizers are meta-trained on fresh batches of 128 instances (or ``--load``-ed).
``--preset=quick`` uses 16 test instances and a short meta-training.
"""
import os
import time

import numpy as np
from absl import flags

import model_free  # noqa: F401  registers the learned names (imports no TensorFlow)
import open_l2o_tf.classic  # noqa: F401  registers the classic names (no TensorFlow)
from open_l2o_tf.classic.named import line_search_names, transform_names
from open_l2o_tf import logging as olog
from open_l2o_tf import budgets, reference, registry
from open_l2o_tf.errors import UserError
from . import common

TRUNCATION = 20      # steps per truncation of meta-training (the original's unroll length)
UNROLL = 100         # quick preset's meta-training horizon (paper: open_l2o_tf.budgets)
# the paper's rates of the learning-rate baselines on Rastrigin (Fig. 7); another registered
# transform (classic.named) runs at --lr, else 1e-3
PAPER_LR = {"adam": 0.1, "rmsprop": 0.3}
# the registry's entries that serve run.rastrigin (info ``commands``)
OPTIMIZERS = common.define_method_flag("optimizer", "rastrigin", "nag_ls", "The optimizer.",
                                       kinds=("classic", "learned"))
flags.DEFINE_enum("swarm_attraction", "as_coded", ["as_coded", "toward_better"],
                  "L2O-Swarm attraction feature: the released code's (pull away from "
                  "particles that are not better) or toward better particles.")
flags.DEFINE_enum("swarm_start", "origin", ["origin", "test_start"],
                  "L2O-Swarm: particles start N(0, 0.01^2) around the origin (the original, "
                  "in training and testing: its curves start at E f(0)) or around each test "
                  "start (where the other optimizers start).")
flags.DEFINE_integer("n", 2, "Dimension (the paper: 2 and 10).", lower_bound=1)
flags.DEFINE_integer("steps", 1000, "Iterations.", lower_bound=1)
flags.DEFINE_integer("test_instances", None, "Test instances (paper 128, quick 16).",
                     lower_bound=1)
flags.DEFINE_integer("starts", 10, "Random starts per test instance.", lower_bound=1)
flags.DEFINE_float("lr", None, "Learning rate of adam (0.1) / rmsprop (0.3) / another "
                   "registered transform (1e-3).")
flags.DEFINE_integer("grad_batch", 128, "adam/rmsprop: each instance's gradient / N (the "
                     "original's reduce_mean over a batch of 128; 1: its own gradient).",
                     lower_bound=1)
flags.DEFINE_enum("line_search_scope", "instance", ["instance", "batch"],
                  "The line searches (gd_ls, nag_ls): Armijo per instance (instance: each "
                  "instance its own step on its own loss) or on the original problems.rastrigin objective, the mean "
                  "over a batch of the test instances (batch: one step per start, shared by "
                  "the instances, gradient x1/instances; the released code has no line search, "
                  "the paper says only 'line search from 1e-1').")
flags.DEFINE_float("rmsprop_accumulator", 1.0, "Initial RMSProp accumulator (1.0: TF1's, the "
                   "original's; 0: Keras 3).", lower_bound=0.0)
common.define_meta_flags(quick_episodes=60)
flags.DEFINE_integer("unroll", None, "Meta-training horizon in steps per episode, a multiple of "
                     f"the truncation ({TRUNCATION}): the learned optimizers without a "
                     "curriculum of their own (paper preset 1,000, the paper's '1,000 iterations per epoch'; quick 100; the "
                     "original L2O-Scale draws about 50 unrolls of 10 + Exp(20) steps per "
                     "problem).  Held-out model "
                     "selection runs at the same horizon.", lower_bound=1)
common.define_model_selection_flag()
common.define_common_flags("runs/rastrigin")
common.define_strategy_flags()
common.bound_flags(positive=["lr", "random_scale"])
common.define_safeguard_flags()
FLAGS = flags.FLAGS


def learned(name):
    """Whether ``--optimizer=name`` is a learned optimizer (else a classic one)."""
    return registry.kind_of(name, ("classic", "learned")) == "learned"


def validate():
    """Checks that need no TensorFlow: flags that do not apply, --load, the workdir and
    the run identity."""
    name = FLAGS.optimizer
    common.check_load_flag(FLAGS.load, name)
    searching = line_search_names("rastrigin")
    if FLAGS.line_search_scope != "instance" and name not in searching:
        raise UserError(f"--line_search_scope applies to {'/'.join(searching)} only, not "
                        f"--optimizer={name}")
    common.check_meta_training_flags(("lstm_init",), learned(name), FLAGS.load, name)
    rated = transform_names("rastrigin")
    if FLAGS.lr is not None and name not in rated:
        raise UserError(f"--lr applies to {'/'.join(rated)} only, not --optimizer={name}")
    for flag in ("meta_episodes", "meta_lr"):
        if getattr(FLAGS, flag) is not None and not learned(name):
            raise UserError(f"--{flag} applies to the learned optimizers only, not "
                            f"--optimizer={name}")
    if FLAGS.unroll is not None:
        own = registry.serving("rastrigin", ("learned",), curriculum=True)
        if not learned(name) or name in own:
            unrolled = [n for n in registry.serving("rastrigin", ("learned",)) if n not in own]
            raise UserError(f"--unroll applies to {', '.join(unrolled)} (a curriculum sets "
                            f"the horizons of {', '.join(own) or 'none'}), not "
                            f"--optimizer={name}")
        if FLAGS.unroll % TRUNCATION:
            raise UserError(f"--unroll must be a multiple of the truncation {TRUNCATION}, "
                            f"got {FLAGS.unroll}")
    if FLAGS.safeguard == "on":
        rules = registry.serving("rastrigin", ("learned",), interface="update")
        if name not in rules:
            raise UserError(f"--safeguard=on needs a learned update rule ({', '.join(rules)}), "
                            f"got --optimizer={name}")
        common.check_safeguard_flags(["gd", "adam", "rmsprop"], "adam")
    common.check_strategy_flags(
        learned(name) and FLAGS.load is None,
        "--load trains nothing" if FLAGS.load else f"--optimizer={name} trains nothing")
    common.prepare_workdir(FLAGS.workdir)


def build_problem(n, count, starts, seed=0):
    """``(family, test, x0)``: the Rastrigin family, ``count`` test instances each tiled
    ``starts`` times and the starting points."""
    from open_l2o_tf.optimizees.rastrigin import Rastrigin  # pylint: disable=import-outside-toplevel
    family = Rastrigin(n=n, batch_size=128)
    test = family.sample_instance(10 ** 7 + seed, count)
    test = family.tile_starts(test, starts)
    x0 = family.init_params(10 ** 7 + seed + 1, test)
    return family, test, x0


def run_classic(name, family, test, x0, steps, lr=None, seed=0, grad_batch=128,
                rmsprop_accumulator=1.0, line_search_scope="instance", starts=1):
    """The per-instance loss curve ``(steps + 1, B)`` of a classic method (a line search:
    gd_ls, nag_ls, any entry registered with ``line_search=True``; oracle; or a
    learning-rate transform: adam, rmsprop, any entry registered with ``transform=True``,
    at ``lr`` or its ``PAPER_LR``).

    Adam/RMSProp follow the original's evaluation: its ``problems.rastrigin`` takes
    ``reduce_mean`` over a batch of 128 instances, so each instance's gradient is divided by
    ``grad_batch`` (1: the instance's own gradient), and RMSProp is TF1's, accumulator
    initialised to ``rmsprop_accumulator`` (1.0; Keras 3: 0).

    A line search with ``line_search_scope="batch"``: one Armijo search per start on the
    mean loss of the test instances (the original's ``reduce_mean`` objective), so the
    curve is ``(steps + 1, starts)`` of batch means (its mean is the same figure)."""
    from open_l2o_tf import classic  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import transforms  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic.oracle import run_and_inspect  # pylint: disable=import-outside-toplevel

    def per_instance(params, batch=None):
        del batch
        return family.instance_losses(params if isinstance(params, list) else [params], test)

    if name in line_search_names("rastrigin"):
        fn = registry.get("classic", name)
        if line_search_scope == "instance":
            return fn(per_instance, x0, steps, initial_step=0.1)[1]
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        rows, n = x0[0].shape
        count = rows // starts        # rows are instance-major: row = instance * starts + start

        def batch_mean(params):
            p = params[0] if isinstance(params, list) else params      # (starts, count, n)
            x = tf.reshape(tf.transpose(p, [1, 0, 2]), [rows, n])
            losses = tf.reshape(per_instance([x]), [count, starts])
            return tf.reduce_mean(losses, axis=0)                       # (starts,)

        grouped = tf.transpose(tf.reshape(x0[0], [count, starts, n]), [1, 0, 2])
        return fn(batch_mean, [grouped], steps, initial_step=0.1)[1]
    if name == "oracle":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        def rows_losses(rows):
            data = {key: tf.gather(value, rows) for key, value in test.items()}
            return lambda params: family.instance_losses(params, data)

        return run_and_inspect(per_instance, x0, steps, method="gd", seed=seed,
                               progress=print, rows_loss_fn=rows_losses)[2]
    transform = classic.make_transform(name, lr or PAPER_LR.get(name, 1e-3),
                                       initial_accumulator=rmsprop_accumulator)
    transform = transforms.chain(transforms.scale(1.0 / grad_batch), transform)
    return transforms.run_optimizer(transform, per_instance, x0, steps, reduction="sum")[1]


def _given(**kwargs):
    """The keyword arguments that are not None (the callee's defaults for the others)."""
    return {key: value for key, value in kwargs.items() if value is not None}


def run_swarm(name, family, test, x0, steps, *, workdir, episodes, unroll, tb=None,
              load=None, seed=0, attraction="as_coded", start="origin", meta_lr=None,
              strategy=None, deterministic=None, starts=1, lstm_init="sonnet"):
    """A learned optimizer of the ``swarm`` interface (L2O-Swarm): loaded (``load``) or
    meta-trained (``episodes`` of ``unroll`` steps, checkpoints in ``workdir/ckpt``), then
    run for ``steps``; ``(curve, info, extra)``: ``curve`` per instance ``(steps + 1, B)``,
    each instance's best particle (ours), and ``extra`` the released evaluation's quantity
    (:func:`model_free.rules.swarm.original_curve`, the test rows taken as ``starts`` batches);
    ``lstm_init``: :func:`model_free.meta.training.lstm_init_options` (``--lstm_init``).
    The keyword arguments are the flags of the same names (``attraction``, ``start``:
    ``--swarm_attraction``, ``--swarm_start``; ``meta_lr=None``: the trainer's default)."""
    from model_free.meta.training import lstm_init_options  # pylint: disable=import-outside-toplevel
    from model_free.rules import swarm as swarm_lib  # pylint: disable=import-outside-toplevel
    info = {"train_seconds": 0.0, "train_steps": 0}
    if load:
        opt = swarm_lib.load_swarm(load, dim=family.n)
        print(f"[swarm] loaded {load}")
    else:
        cls = registry.get("learned", name)
        opt = cls(dim=family.n, attraction=attraction,
                  **lstm_init_options(name, cls, lstm_init))
        trainer = swarm_lib.SwarmTrainer(opt, family, seed=seed, tb=tb,
                                         ckpt_dir=os.path.join(workdir, "ckpt"),
                                         start=start, unroll=unroll, truncation=TRUNCATION,
                                         strategy=strategy, deterministic=deterministic,
                                         **_given(meta_lr=meta_lr))
        trainer.train(episodes)
        swarm_lib.save_swarm(opt, os.path.join(workdir, f"{name}.npz"))
        info = {"train_seconds": trainer.train_seconds,
                "train_steps": episodes * trainer.unroll}
    losses = swarm_lib.swarm_minimize(opt, family, test, x0[0], steps, seed=seed,
                                      start=start, deterministic=deterministic,
                                      per_particle=True)
    original = swarm_lib.original_curve(losses, groups=starts)
    extra = {"swarm_original_curve": [float(v) for v in original],
             "swarm_original_final": float(original[-1]),
             "swarm_original_quantity": "min over the 4 particles of the mean loss over a "
                                        "batch of the test instances (one batch per start), "
                                        "averaged over the starts: the released evaluation's "
                                        "(L2O-Swarm/src/evaluate.py:75-77); 'curve' is ours, "
                                        "the mean over instances of each instance's best "
                                        "particle"}
    return losses.min(axis=1), info, extra


def run_learned(name, family, test, x0, steps, *, workdir, episodes, unroll, selection,
                tb=None, load=None, seed=0, horizons=None, random_scale=None, meta_lr=None,
                budget=None, safeguard=None, strategy=None, deterministic=None,
                lstm_init="sonnet"):
    """A learned update rule: meta-trained (or ``load``-ed), then run for ``steps`` (and
    safeguarded when ``safeguard`` holds the options of :func:`common.safeguard_options`);
    ``(curve, info, extra)``.  The keyword arguments are the flags of the same names;
    ``horizons``: the curriculum's unroll horizons (None: the recipe's); ``budget``: the
    paper preset's (:mod:`open_l2o_tf.budgets`)."""
    from model_free.meta import meta_trainer, training  # pylint: disable=import-outside-toplevel
    opt, info = training.meta_train_or_load(
        name, family, synthetic=True, workdir=workdir, episodes=episodes, unroll=unroll,
        truncation=TRUNCATION, load=load, tb=tb, seed=seed, horizons=horizons,
        random_scale=random_scale, meta_lr=meta_lr, selection=selection,
        strategy=strategy, budget=budget, deterministic=deterministic, lstm_init=lstm_init)
    curve = meta_trainer.evaluate(opt, family, steps, test, x0, seed=seed,
                                  grad_scale=1.0 / 128, tb=tb)
    extra = {"meta_training": training.summary(info)}
    if safeguard is not None:
        extra["safeguard"] = common.rastrigin_safeguard(
            opt, family, test, x0, workdir, steps=steps, n=family.n, **safeguard)
    return curve, info, extra


def best_so_far(per_instance):
    """``(curve, final)`` of the best loss so far: each column's (instance's) running minimum
    over the steps, then the mean over columns, as L2O-Swarm's ``evaluate.py`` records a
    run (its best loss so far); ``per_instance`` is the ``(steps + 1, B)`` curve before
    averaging (a batch-scope line search: one column per start, of batch means)."""
    best = np.minimum.accumulate(np.asarray(per_instance, dtype=np.float64), axis=0)
    curve = best.mean(axis=1)
    return [float(v) for v in curve], float(curve[-1])


def report(name, n, curve, paper, lower):
    """The summary line on stdout."""
    early = min(10, len(curve) - 1)     # loss[10], or the last step when --steps < 10
    print(f"[rastrigin] n={n} {name}: loss[0]={curve[0]:.3f} loss[{early}]="
          f"{curve[early]:.3f} loss[{len(curve) - 1}]={curve[-1]:.4f}  "
          f"paper={paper}  mean lower bound alpha(n-|c|_1)={lower:.3f}", flush=True)


def main(argv):
    del argv
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    name = FLAGS.optimizer
    workdir = FLAGS.workdir
    tb = olog.TensorBoard(os.path.join(workdir, "tb"))
    count = FLAGS.test_instances or (16 if FLAGS.preset == "quick" else 128)
    family, test, x0 = build_problem(FLAGS.n, count, FLAGS.starts, FLAGS.seed)
    info, extra = {"train_seconds": 0.0, "train_steps": 0}, {}
    budget = budgets.paper_budget("rastrigin", name) if FLAGS.preset == "paper" else None
    episodes = common.preset_value(FLAGS.preset, budget and budget.episodes, 60,
                                   FLAGS.meta_episodes)
    from model_free.meta.training import default_selection  # pylint: disable=import-outside-toplevel
    selection = FLAGS.model_selection or default_selection(FLAGS.preset)
    unroll = FLAGS.unroll or (budget.unroll if budget else UNROLL)
    start = time.time()
    if not learned(name):
        curve = run_classic(name, family, test, x0, FLAGS.steps, FLAGS.lr, FLAGS.seed,
                            FLAGS.grad_batch, FLAGS.rmsprop_accumulator,
                            FLAGS.line_search_scope, FLAGS.starts)
    elif registry.interface("learned", name) == "swarm":
        curve, info, extra = run_swarm(
            name, family, test, x0, FLAGS.steps, workdir=workdir, episodes=episodes,
            unroll=unroll, tb=tb, load=FLAGS.load, seed=FLAGS.seed,
            attraction=FLAGS.swarm_attraction, start=FLAGS.swarm_start,
            meta_lr=common.meta_lr(budget), strategy=common.strategy(),
            deterministic=common.deterministic(), starts=FLAGS.starts,
            lstm_init=FLAGS.lstm_init)
    else:
        safeguard = (common.safeguard_options(["gd", "adam", "rmsprop"], "adam")
                     if FLAGS.safeguard == "on" else None)
        curve, info, extra = run_learned(
            name, family, test, x0, FLAGS.steps, workdir=workdir, episodes=episodes,
            unroll=unroll, selection=selection, tb=tb, load=FLAGS.load, seed=FLAGS.seed,
            horizons=(100, 200, 500) if FLAGS.preset == "quick" else None,
            random_scale=FLAGS.random_scale, meta_lr=common.meta_lr(budget), budget=budget,
            safeguard=safeguard, strategy=common.strategy(),
            deterministic=common.deterministic(), lstm_init=FLAGS.lstm_init)
    bsf_curve, bsf_final = best_so_far(curve)
    extra = dict(extra, best_so_far_curve=bsf_curve, best_so_far_final=bsf_final)
    curve = np.asarray(curve).mean(axis=1)
    lower = float(tf.reduce_mean(family.lower_bound(test)))
    for k in range(0, len(curve), max(1, len(curve) // 50)):
        tb.scalar(f"rastrigin/n{FLAGS.n}/{name}/loss", curve[k], k)
    tb.flush()
    paper = reference.lookup("rastrigin", FLAGS.n, name)
    record = olog.make_result("rastrigin", name, f"n{FLAGS.n}", FLAGS.preset, "loss", curve,
                              paper=paper, train_seconds=info.get("train_seconds", 0.0),
                              train_steps=info.get("train_steps", 0),
                              config=common.flag_values_dict(), lower_bound_mean=lower,
                              eval_seconds=time.time() - start,
                              setup={"n": FLAGS.n, "iterations": FLAGS.steps,
                                     "instances": int(count), "starts": FLAGS.starts},
                              **extra)
    common.write_results(workdir, record)
    report(name, FLAGS.n, curve, paper, lower)


if __name__ == "__main__":
    common.main_wrapper(main, validate)
