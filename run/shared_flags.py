"""Flag definitions shared by the commands, and the flag values a run records.

Only modules under ``run/`` define flags.  :func:`define_method_flag` defines a command's
``--model`` / ``--optimizer`` with the names the registry says the command serves
(:func:`open_l2o_tf.registry.serving`), extended with those of ``--import`` modules.
"""
import math
import os

from absl import flags

from open_l2o_tf import registry
from open_l2o_tf.errors import UserError

_METHOD_FLAGS = []                # (flag name, command, kinds, the command's list of names)


def define_method_flag(flag_name, command, default, help_text,
                       kinds=("classic", "model", "learned")):
    """``--flag_name``: one of the names of ``kinds`` that ``command`` serves (registry
    info ``commands``), in registry order; returns the live list of allowed names (names
    of ``--import`` modules are appended when they are imported)."""
    choices = registry.serving(command, kinds)
    flags.DEFINE_enum(flag_name, default, choices, help_text)
    _METHOD_FLAGS.append((flag_name, command, kinds, choices))
    return choices


def extend_method_flags():
    """Appends the names registered since :func:`define_method_flag` to the allowed values
    of its flags (``--import`` modules)."""
    for flag_name, command, kinds, choices in _METHOD_FLAGS:
        if flag_name not in flags.FLAGS:
            continue
        flag = flags.FLAGS[flag_name]
        parser = flag.parser
        for name in registry.serving(command, kinds):
            if name not in choices:
                choices.append(name)
            if name not in parser.enum_values:
                parser.enum_values.append(name)
        # absl wrote the values into the help text when it defined the flag (--help)
        prefix, sep, rest = flag.help.partition(">: ")
        if sep and prefix.startswith("<"):
            flag.help = f"<{'|'.join(parser.enum_values)}>: {rest}"


def define_common_flags(default_workdir):
    """``--workdir``, ``--preset``, ``--seed`` and ``--load`` for every command."""
    flags.DEFINE_string("workdir", default_workdir,
                        "Directory for results.json, tb/ and ckpt/.")
    flags.DEFINE_enum("preset", "paper", ["paper", "quick"],
                      "paper: the paper's settings; quick: small sizes, minutes on 2 CPUs.")
    flags.DEFINE_integer("seed", 0, "Random seed.", lower_bound=0)
    define_load_flag("Load a trained model/optimizer from this path, or a catalogue name "
                     "(open-l2o pretrained lists them), instead of training it.")


def define_load_flag(help_text):
    """``--load``: a path or a catalogue name (its installed file), for the commands that
    define it themselves (``run.perf``) as for those of :func:`define_common_flags`."""
    flags.DEFINE(_LoadParser(), "load", None, help_text)


class _LoadParser(flags.ArgumentParser):
    """``--load``: a path, or the name of a catalogue entry (its installed file); a bare
    name the catalogue lacks is a flag error listing close names
    (:func:`open_l2o_tf.catalogue.resolve_load`)."""

    syntactic_help = "a path or a catalogue name"

    def parse(self, argument):
        from open_l2o_tf import catalogue  # pylint: disable=import-outside-toplevel
        return catalogue.resolve_load(argument, flag=None)

    def flag_type(self):
        return "string"


def define_strategy_flags():
    """``--strategy`` and ``--cpu_replicas`` for the commands that train (see docs/scaling_out.md
    and :mod:`open_l2o_tf.distribute`)."""
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "tf.distribute strategy of training: default (one device), mirrored "
                      "(the visible GPUs, else --cpu_replicas logical CPU devices) or "
                      "multi_worker (one process per worker, the cluster in TF_CONFIG).  "
                      "The global batch is kept and split over the replicas: the training "
                      "batch of the unrolled models, the optimizee instances (games) of a "
                      "meta-training episode, or one network's minibatch (run.nn_training); "
                      "the gradients are all-reduced.  See docs/scaling_out.md.")
    flags.DEFINE_integer("cpu_replicas", None, "With --strategy=mirrored and no GPU: split "
                         "the CPU into this many logical devices (replicas).", lower_bound=1)
    flags.DEFINE_bool("deterministic", None, "Bit-repeatable meta-training: the compiled "
                      "steps run with TensorFlow's graph optimizer (Grappler) off, and on a "
                      "GPU with TensorFlow's deterministic kernels.  Default: yes on a CPU, "
                      "no on a GPU (docs/gpu.md).")


def bound_flags(positive=(), nonnegative=(), at_least_one=()):
    """absl validators: ``--name`` must be > 0 (``positive``), >= 0 (``nonnegative``) or
    >= 1 (``at_least_one``, integers), or unset (None)."""
    for name in positive:
        flags.register_validator(name, lambda v: v is None or v > 0,
                                 message=f"--{name} must be a positive number")
    for name in nonnegative:
        flags.register_validator(name, lambda v: v is None or v >= 0,
                                 message=f"--{name} must be >= 0")
    for name in at_least_one:
        flags.register_validator(name, lambda v: v is None or v >= 1,
                                 message=f"--{name} must be a positive integer")


def define_model_selection_flag():
    """``--model_selection`` for the commands that meta-train learned optimizers."""
    flags.DEFINE_enum("model_selection", None, ["original", "last_truncation", "horizon_mean"],
                      "Learned optimizers: the meta-training model-selection score; "
                      "original (the original's: every 100 episodes, RNNprop 10, 20 problems "
                      "drawn afresh at each evaluation, the loss at the end of the horizon "
                      "f(x_H); default of the paper preset), last_truncation (the same period "
                      "and count on 20 fixed problems, the sum of the last truncation's "
                      "losses; the paper preset's default before original) or horizon_mean "
                      "(mean loss over the horizon on 2 fixed problems every <= 10 episodes; "
                      "default of the quick preset).")


def define_meta_flags(quick_episodes, *, random_scale=True, meta_lr=True):
    """The meta-training flags of the commands that meta-train learned optimizers:
    ``--meta_episodes`` (paper: the figure's budget, :mod:`open_l2o_tf.budgets`; quick
    ``quick_episodes``),
    ``--random_scale`` and ``--meta_lr`` (:func:`define_meta_lr_flag`) where asked."""
    flags.DEFINE_integer("meta_episodes", None, "Learned optimizers: meta-training episodes "
                         "(paper: the figure's budget, 100 of 1,000 steps for Figs. 6-7, "
                         f"10,000 of 100 for Fig. 8; quick {quick_episodes}).",
                         lower_bound=1)
    flags.DEFINE_enum("lstm_init", "sonnet", ["sonnet", "tied"],
                      "Learned optimizers (L2O-DM, L2O-RNNprop, L2O-enhanced, L2O-Scale, "
                      "L2O-Swarm), meta-training: the initial weights drawn independently as "
                      "the original's (sonnet: Sonnet 1's snt.LSTM, w_gates and b_gates "
                      "apart; L2O-Scale's three initial level states and three readouts, "
                      "L2O-Swarm's attention_w and attention_b, each its own draw), or as "
                      "this toolbox drew them before the fixes (tied: one initializer for "
                      "several weights: b_gates a copy of w_gates' first row, init_level1 "
                      "= init_level2, init_level0 their start, w_update = w_scl_decay = "
                      "w_inp_decay, attention_b the start of "
                      "attention_w; the record's trainings made before the fixes).")
    if random_scale:
        flags.DEFINE_float("random_scale", None, "Meta-training with RNNprop's random "
                           "scaling exp(U(-r, r)) per coordinate (original r = 3; off by "
                           "default as Open-L2O).")
    if meta_lr:
        define_meta_lr_flag()


def check_meta_training_flags(names, learned, load, optimizer):
    """Each flag of ``names`` left at its default unless a learned optimizer is meta-trained
    here (``learned`` and no ``load``); else one :class:`UserError` naming the flag and
    what makes this run train nothing (``--load`` or ``--optimizer=optimizer``)."""
    if learned and not load:
        return
    for name in names:
        flag = flags.FLAGS[name]
        if flag.value != flag.default:
            raise UserError(f"--{name} applies to meta-training a learned optimizer, not "
                            + ("--load (it trains nothing)" if load
                               else f"--optimizer={optimizer}"))

def define_meta_lr_flag():
    """``--meta_lr`` of the commands that meta-train learned optimizers (positive or unset)."""
    flags.DEFINE_float("meta_lr", None, "Meta learning rate (default: Adam 1e-3 for "
                       "DM/RNNprop/Swarm, RMSProp 1e-6 for L2O-Scale as the original).")
    flags.register_validator("meta_lr", lambda v: v is None or v > 0,
                             message="--meta_lr must be a positive number")


def meta_lr(budget=None):
    """The meta learning rate: ``--meta_lr`` when given, else the paper budget's (``budget``,
    :mod:`open_l2o_tf.budgets`), else None: the trainer's or recipe's own default (the one
    place it lives).  Checked once, by the flag's validator."""
    value = flags.FLAGS.meta_lr
    if value is None and budget is not None:
        value = budget.meta_lr
    return value


# float32's largest finite number and its smallest normal one (TF flushes smaller ones to
# zero on the CPU): a flag value outside is what the computation cannot hold
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
_GUARDED = set()                  # float flags given the finite-float32 validator


def float_problem(value):
    """Why ``value`` cannot be a float flag's value (None when it can): NaN, +-inf, beyond
    float32's range (the float32 computation would see inf) or non-zero below float32's
    smallest normal number (it would see 0)."""
    if value is None:
        return None
    if math.isnan(value):
        return "is not a number; expected a finite number"
    if math.isinf(value):
        return "is infinite; expected a finite number"
    if abs(value) > FLOAT32_MAX:
        return (f"is beyond float32's range (|x| <= {FLOAT32_MAX:.4g}): the computation "
                "would see inf; expected a finite number")
    if value != 0 and abs(value) < FLOAT32_TINY:
        return (f"is below float32's smallest normal number {FLOAT32_TINY:.4g}: the "
                "computation would see 0; give 0 or a larger number")
    return None


def _check_float(value):
    for item in value if isinstance(value, (list, tuple)) else [value]:
        problem = float_problem(item)
        if problem:
            raise flags.ValidationError(problem)
    return True


def own_flags(flag_values=None):
    """``{name: flag}`` of the flags defined by this program's own modules (``run/``), not
    absl's or TensorFlow's."""
    flag_values = flags.FLAGS if flag_values is None else flag_values
    out = {}
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if not is_run_module(str(module)):
            continue
        for flag in module_flags:
            out[flag.name] = flag
    return out


def is_run_module(module):
    """Whether the flags of ``module`` (a name of absl's flags_by_module_dict: a module
    name, or the main module's file) are this program's own (defined under ``run/``)."""
    return (module == "__main__" or module.startswith(("run.", f"{__package__}."))
            or os.path.basename(os.path.dirname(module)) == "run")


def float_flags(flag_values=None):
    """The names of the float flags (single or multi) of this program's modules."""
    return sorted(name for name, flag in own_flags(flag_values).items()
                  if isinstance(flag.parser, flags.FloatParser))


def guard_float_flags():
    """Every float flag of the command (:func:`float_flags`) must be finite and a float32
    number (:func:`float_problem`): an absl validator on each, registered once before the
    flags are parsed, so ``--lr=inf`` or ``--lr=1e39`` is one ``error:`` line naming the
    flag.  Also covers the float flags of ``--import`` modules defined under ``run/``."""
    for name in float_flags():
        if name not in _GUARDED:
            flags.register_validator(name, _check_float)
            _GUARDED.add(name)


def flag_values_dict():
    """Values of the flags defined by this program's own modules (``run/``), for the
    ``config`` of ``results.json``; absl's and TensorFlow's internal flags are left out."""
    return {name: flag.value for name, flag in own_flags().items()
            if isinstance(flag.value, (str, int, float, bool, type(None), list))}


def preset_value(preset, paper, quick, override=None):
    """The flag ``override`` when given, else the preset's value."""
    if override is not None:
        return override
    return quick if preset == "quick" else paper
