"""The Safe-L2O flags (``--safeguard`` and ``--safeguard_*``) and the comparison pieces the
commands run with them (:mod:`open_l2o_tf.safeguard`)."""
import os

from absl import flags

from open_l2o_tf.errors import UserError

SAFEGUARD_FALLBACKS = ["ista", "fista", "gd", "adam", "rmsprop"]


def define_safeguard_flags(with_switch=True):
    """``--safeguard`` (unless ``with_switch=False``) and its options (Safe-L2O,
    :mod:`open_l2o_tf.safeguard`)."""
    from open_l2o_tf import safeguard_options as safeguard  # pylint: disable=import-outside-toplevel
    if with_switch:
        _define_safeguard_switch()
    _define_safeguard_options(safeguard)


def _define_safeguard_switch():
    flags.DEFINE_enum("safeguard", "off", ["off", "on"], "Safe-L2O: also run the learned "
                      "method under the safeguard (take a learned step only where it lowers "
                      "the energy below (1 - delta) mu_k, else the classic step) and compare "
                      "plain, safeguarded and classic; writes results.json 'safeguard' and "
                      "WORKDIR/safeguard.png.")


def _define_safeguard_options(safeguard):
    flags.DEFINE_enum("safeguard_rule", "ema", list(safeguard.RULES),
                      "Reference sequence mu_k (Heaton et al. Table 1).")
    flags.DEFINE_float("safeguard_delta", 0.01, "Margin delta in [0, 1): accept iff "
                       "E(learned) <= (1 - delta) mu_k.")
    flags.DEFINE_float("safeguard_param", None, "EMA weight (0.3), geometric factor "
                       "(delta) or recent_max window (3).")
    flags.DEFINE_enum("safeguard_track", "all", list(safeguard.TRACKS),
                      "all: after a rejected step mu also drops to the classic step's energy "
                      "if lower (ours); accepted: mu_k changes only on accepted learned steps "
                      "(Heaton et al.'s Algorithm 1).")
    flags.DEFINE_enum("safeguard_energy", "residual", list(safeguard.ENERGIES),
                      "Energy on Lasso-type problems: ISTA's fixed-point residual "
                      "||x - T(x)|| or the objective (Rastrigin: always the objective minus "
                      "its lower bound).")
    flags.DEFINE_enum("safeguard_fallback", None, SAFEGUARD_FALLBACKS,
                      "Classic step where the learned one is rejected (default: fista on "
                      "sparse recovery / Lasso, adam on Rastrigin).")
    flags.DEFINE_enum("safeguard_shadow", "best", list(safeguard.SHADOWS),
                      "Also run the classic fallback alone (the shadow sequence z_k): a "
                      "rejected step goes to the better of the classic step and z_{k+1}; "
                      "best: the reported iterate is the lower-energy one of x_k and z_k; "
                      "strict: a learned step must also beat z_{k+1} by the margin.  Either "
                      "way the reported energy is never above the classic solver's at equal "
                      "iterations.  off: Heaton et al.'s rule alone.")
    flags.DEFINE_float("safeguard_lr", None, "Learning rate of a gd/adam/rmsprop fallback "
                       "(default: the command's classic rate).")
    flags.register_validator("safeguard_delta", lambda v: 0.0 <= v < 1.0,
                             message="--safeguard_delta must be in [0, 1)")
    flags.register_validator("safeguard_lr", lambda v: v is None or v > 0,
                             message="--safeguard_lr must be a positive number")


def check_safeguard_flags(fallbacks, default_fallback):
    """The ``--safeguard_*`` options checked without TensorFlow (for ``validate()``)."""
    from open_l2o_tf import safeguard_options  # pylint: disable=import-outside-toplevel
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    try:
        safeguard_options.check_rule_options(FLAGS.safeguard_rule, FLAGS.safeguard_delta,
                                             FLAGS.safeguard_param, FLAGS.safeguard_track)
    except UserError as err:
        raise UserError(f"--safeguard_param: {err}") from None
    safeguard_fallback_flag(fallbacks, default_fallback)


def safeguard_rule_from_flags():
    """The :class:`open_l2o_tf.safeguard.SafeguardRule` of the ``--safeguard_*`` flags."""
    from open_l2o_tf import safeguard  # pylint: disable=import-outside-toplevel
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    try:
        return safeguard.SafeguardRule(FLAGS.safeguard_rule, FLAGS.safeguard_delta,
                                       FLAGS.safeguard_param, FLAGS.safeguard_track)
    except UserError as err:
        raise UserError(f"--safeguard_param: {err}") from None


def safeguard_fallback_flag(allowed, default):
    """``--safeguard_fallback`` checked against the fallbacks this command supports."""
    value = flags.FLAGS.safeguard_fallback or default
    if value not in allowed:
        raise UserError(f"--safeguard_fallback must be one of {', '.join(allowed)} here, "
                        f"got {value}")
    return value


def define_sparse_safeguard_flags():
    """The iteration count and the Lasso weight of the safeguard on sparse recovery."""
    flags.DEFINE_integer("safeguard_iterations", 100, "Iterations of the safeguarded, "
                         "plain (last layer repeated past the trained depth) and classic "
                         "runs.", lower_bound=1)
    flags.DEFINE_float("safeguard_lam", 0.01, "Lasso weight lam of the fallback operator "
                       "and the energy on sparse recovery (FISTA at 0.01 reaches about "
                       "-36 dB on the noiseless 64x128 quick data).")
    flags.register_validator("safeguard_lam", lambda v: v >= 0,
                             message="--safeguard_lam must be >= 0")


def safeguard_options(fallbacks, default_fallback):
    """The ``--safeguard_*`` flags as the keyword arguments of the comparison pieces
    (:func:`sparse_safeguard`, :func:`rastrigin_safeguard`)."""
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    options = dict(rule=safeguard_rule_from_flags(), energy=FLAGS.safeguard_energy,
                   shadow=FLAGS.safeguard_shadow,
                   fallback=safeguard_fallback_flag(fallbacks, default_fallback),
                   lr=FLAGS.safeguard_lr)
    for name in ("safeguard_iterations", "safeguard_lam"):
        if name in FLAGS:
            options[name[len("safeguard_"):]] = FLAGS[name].value
    return options


def sparse_safeguard(model, y, x, workdir, *, rule, iterations, lam, energy, fallback,
                     shadow, A=None, title=None, **unused):
    """Runs the Safe-L2O comparison (``rule``, :func:`safeguard_options`) for an unrolled
    model on sparse-recovery data, prints a summary, writes ``workdir/safeguard.png`` and
    returns the ``safeguard`` entry of ``results.json``."""
    del unused
    from model_based import safeguard as msg  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import plotting  # pylint: disable=import-outside-toplevel
    result = msg.compare(model, y, iterations, rule, A=A, lam=lam, x_true=x, energy=energy,
                         fallback=fallback, shadow=shadow)
    n = result["instances"]
    plotting.plot_safeguard(result["curves"], os.path.join(workdir, "safeguard.png"),
                            metric=result["metric"],
                            rejected=[r / n for r in result["rejected"]],
                            trained_depth=model.num_layers, title=title)
    print_safeguard(result)
    return result


def print_safeguard(result, marks=None):
    """A few columns of a :func:`model_based.safeguard.compare` result."""
    K = result["iterations"]
    depth = result.get("trained_depth") or 0
    marks = marks or sorted({1, 2, 4, depth, 2 * depth, K // 4, K // 2, K} - {0})
    marks = sorted({k for k in marks if k <= K})
    fmt = "8.2f" if result["metric"] == "nmse_db" else "8.3g"
    lam = f" lam={result['lam']}" if "lam" in result else ""
    print(f"[safeguard] {result['rule']} delta={result['delta']} param={result['param']} "
          f"track={result.get('track')} shadow={result.get('shadow')} "
          f"energy={result.get('energy')} fallback={result['fallback']}{lam}; "
          f"{result['metric']} per iteration ({result['instances']} instances):")
    print(f"{'iteration':>16} " + " ".join(f"{k:>8}" for k in marks))
    for label, curve in result["curves"].items():
        print(f"{label:>16} " + " ".join(f"{curve[k]:{fmt}}" for k in marks))
    print(f"{'rejected':>16} " + " ".join(f"{result['rejected'][k]:8d}" for k in marks),
          flush=True)


def lasso_safeguard_record(result, f_star, workdir, title=None):
    """A safeguard comparison on Lasso with its curves turned into the modified relative
    loss (19), ``(E[f] - E[f*]) / E[f*]``; prints it, writes ``workdir/safeguard.png``."""
    from open_l2o_tf import plotting  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    star = float(np.mean(f_star))
    key = "objective" if "objective" in result else "curves"
    curves = {label: [(v - star) / star for v in curve] for label, curve in
              result[key].items()}
    result = dict(result, curves=curves, metric="relative_loss")
    result.setdefault("trained_depth", 0)
    n = result["instances"]
    plotting.plot_safeguard(curves, os.path.join(workdir, "safeguard.png"),
                            metric="relative_loss", rejected=[r / n for r in result["rejected"]],
                            trained_depth=result["trained_depth"] or None, title=title)
    print_safeguard(result, marks=[k for k in (1, 2, 4, 16, 100, 1000, result["iterations"])
                                   if k <= result["iterations"]])
    return result


def rastrigin_safeguard(opt, family, test, x0, workdir, *, steps, rule, fallback, shadow,
                        lr=None, n=None, **unused):
    """Safe-L2O on Rastrigin: energy = objective minus the lower bound ``alpha (n -
    ||c||_1)``, fallback = the ``fallback`` transform (``--safeguard_fallback``, default
    Adam at the paper's 0.1; RMSProp 0.3; GD 0.01; ``lr`` overrides).  Prints, plots,
    returns the record entry."""
    from model_free.rules import safeguard as fsg  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import plotting  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import first_order  # pylint: disable=import-outside-toplevel
    del unused
    lr = lr or {"gd": 0.01, "adam": 0.1, "rmsprop": 0.3}[fallback]
    transform = getattr(first_order, fallback)(lr)
    offset = family.lower_bound(test)

    def make_guard(mode):
        return fsg.objective_safeguard(family, test, rule, transform, energy_offset=offset,
                                       mode=mode, shadow=shadow)
    result = fsg.compare(opt, family, steps, test, x0, make_guard, classic_label=fallback,
                         grad_scale=1.0 / 128)
    result = dict(result, energy="objective - lower bound", lr=lr, trained_depth=0,
                  shadow=shadow)
    count = result["instances"]
    plotting.plot_safeguard(result["curves"], os.path.join(workdir, "safeguard.png"),
                            metric="loss", rejected=[r / count for r in result["rejected"]],
                            title=f"Rastrigin n={n}")
    print_safeguard(result, marks=[1, 10, 100, steps // 2, steps])
    return result
