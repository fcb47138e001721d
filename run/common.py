"""Shared pieces of the command lines: common flags, presets, error handling.

Only modules under ``run/`` define and parse flags.  ``main_wrapper`` turns a
:class:`~open_l2o_tf.errors.UserError` (and flag validation errors) into one line on
stderr and exit status 2, instead of a stack trace, and keeps TensorFlow's C++ start-up
log out of the terminal (``OPEN_L2O_TF_VERBOSE=1`` shows it; a failing import replays it).

Every command that writes a workdir calls :func:`prepare_workdir` before any work: the
workdir must be a writable directory, and ``WORKDIR/run.json`` records the run's identity
(the command and every flag that can change the numbers, plus e.g. the model class and
config).  Re-running in a workdir that holds a checkpoint or results of a run with another
identity is refused in one line naming the differing flags (``--workdir``, ``--out``,
``--mnist_dir`` and similar flags may differ).
"""
import importlib
import json
import os
import sys
import tempfile

from absl import app, flags

from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError


# -- bring your own: --import=my_pkg.my_module on every command --------------------------
flags.DEFINE_multi_string(
    "import", [], "Import this Python module before anything else (repeatable).  A module "
    "of your own that registers an unrolled model or a learned optimizer with "
    "open_l2o_tf.registry makes its names valid values of --model / --optimizer (see "
    "docs/extending.md).")

_ACCEPTING = []                   # (flag name, kind, list of the command, info filter)
USER_NAMES = {}                   # kind -> names registered by the --import modules


def accept_registered(flag_name, kind, into, **where):
    """Lets ``--flag_name`` take the names of ``kind`` that ``--import`` modules register
    (with info matching ``where``): they are appended to the flag's allowed values and to
    the command's list ``into`` (so ``name in into`` picks the command's branch for them)."""
    _ACCEPTING.append((flag_name, kind, into, where))


def _scan_imports(argv):
    """The values of ``--import=M`` / ``--import M`` in ``argv``, in order."""
    modules = []
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith("--import="):
            modules.append(arg.split("=", 1)[1])
        elif arg == "--import" and i + 1 < len(argv):
            modules.append(argv[i + 1])
    return modules


def import_user_modules(modules):
    """Imports ``modules`` (the ``--import`` values), records the registry names they add
    (``USER_NAMES``) and extends the flags of :func:`accept_registered` with them."""
    from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
    before = {kind: set(registry.names(kind)) for kind in registry.KINDS}
    for module in modules:
        if not module or not all(part.isidentifier() for part in module.split(".")):
            raise UserError(f"--import={module!r}: expected a dotted Python module name "
                            "such as my_pkg.my_module")
        try:
            importlib.import_module(module)
        except UserError:
            raise
        except Exception as err:  # pylint: disable=broad-except
            reason = (str(err).splitlines() or [""])[0][:200]
            raise UserError(f"--import={module}: cannot import it ({type(err).__name__}: "
                            f"{reason}); it must be importable from the current directory "
                            "or PYTHONPATH") from None
    for kind in registry.KINDS:
        new = [n for n in registry.names(kind) if n not in before[kind]]
        USER_NAMES.setdefault(kind, [])
        USER_NAMES[kind] += [n for n in new if n not in USER_NAMES[kind]]
    for flag_name, kind, into, where in _ACCEPTING:
        if flag_name not in flags.FLAGS:
            continue
        parser = flags.FLAGS[flag_name].parser
        for name in USER_NAMES.get(kind, []):
            if name in registry.names(kind, **where) and name not in into:
                into.append(name)
            if name in into and name not in parser.enum_values:
                parser.enum_values.append(name)
    return USER_NAMES


def define_common_flags(default_workdir):
    """``--workdir``, ``--preset``, ``--seed`` and ``--load`` for every command."""
    flags.DEFINE_string("workdir", default_workdir,
                        "Directory for results.json, tb/ and ckpt/.")
    flags.DEFINE_enum("preset", "paper", ["paper", "quick"],
                      "paper: the paper's settings; quick: small sizes, minutes on 2 CPUs.")
    flags.DEFINE_integer("seed", 0, "Random seed.", lower_bound=0)
    flags.DEFINE_string("load", None, "Load a trained model/optimizer from this path "
                        "instead of training it.")


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


_STRATEGY = {}


def _strategy_flags():
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    if "strategy" not in FLAGS or not FLAGS.is_parsed():
        return None
    return FLAGS.strategy, FLAGS.cpu_replicas


def check_strategy_flags(applies=True, why=""):
    """``--strategy`` / ``--cpu_replicas`` checked without TensorFlow; ``applies=False``
    refuses a strategy other than default (``why`` says for what)."""
    values = _strategy_flags()
    if values is None:
        return
    from open_l2o_tf import distribute  # pylint: disable=import-outside-toplevel
    distribute.check_strategy_options(values[0], values[1])
    if values[0] != "default" and not applies:
        raise UserError(f"--strategy={values[0]} does not apply here: {why}")


def _setup_strategy():
    """Creates the ``--strategy`` once, before TensorFlow initialises its devices."""
    values = _strategy_flags()
    if values is None or _STRATEGY.get("flags") == values:
        return
    from open_l2o_tf import distribute  # pylint: disable=import-outside-toplevel
    if values[0] == "default":
        strategy = None
    elif _STRATEGY.get("strategy") is not None:
        raise UserError(f"--strategy={values[0]}: this process already runs a "
                        f"{type(_STRATEGY['strategy']).__name__}; one strategy per process")
    else:
        strategy = distribute.make_strategy(*values)
    _STRATEGY.update(flags=values, strategy=strategy)
    if strategy is not None:
        print(f"[distribute] {distribute.describe(strategy)}", flush=True)


def strategy():
    """The ``--strategy`` object (None for default or without the flag)."""
    _setup_strategy()
    return _STRATEGY.get("strategy")


def deterministic():
    """``--deterministic`` (None: the device's default, :func:`open_l2o_tf.device.policy`);
    when set on a GPU (or TPU) it also turns on TensorFlow's deterministic kernels.  Call
    after :func:`strategy` (the device query initialises TensorFlow's devices)."""
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    if "deterministic" not in FLAGS or not FLAGS.is_parsed() or FLAGS.deterministic is None:
        return None
    if FLAGS.deterministic and not _STRATEGY.get("op_determinism"):
        from open_l2o_tf import device  # pylint: disable=import-outside-toplevel
        if device.step_device(strategy()) != "CPU":
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            tf.config.experimental.enable_op_determinism()
        _STRATEGY["op_determinism"] = True
    return bool(FLAGS.deterministic)


def _non_chief_workdir():
    """Under ``--strategy=multi_worker`` only the chief writes into ``--workdir``; any other
    worker writes into a temporary directory, removed at exit (TF's convention)."""
    values = _strategy_flags()
    if values is None or values[0] != "multi_worker" or "workdir" not in flags.FLAGS:
        return
    from open_l2o_tf import distribute  # pylint: disable=import-outside-toplevel
    if distribute.chief_from_tf_config():
        return
    import atexit  # pylint: disable=import-outside-toplevel
    import shutil  # pylint: disable=import-outside-toplevel
    private = tempfile.mkdtemp(prefix="open_l2o_tf-worker-")
    atexit.register(shutil.rmtree, private, True)
    print(f"[distribute] not the chief: --workdir {flags.FLAGS.workdir} is written by the "
          f"chief only; this worker writes into {private} (removed at exit)", flush=True)
    flags.FLAGS.workdir = private


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
    flags.DEFINE_enum("model_selection", None, ["last_truncation", "horizon_mean"],
                      "Learned optimizers: the meta-training model-selection score; "
                      "last_truncation (the original's: every 100 episodes, RNNprop 10, on "
                      "20 problems, the losses of the last truncation; default of the paper "
                      "preset) or horizon_mean (mean loss over the horizon on 2 problems "
                      "every <= 10 episodes; default of the quick preset).")


def define_meta_flags(quick_episodes, *, random_scale=True, meta_lr=True):
    """The meta-training flags of the commands that meta-train learned optimizers:
    ``--meta_episodes`` (paper: the figure's budget, :mod:`open_l2o_tf.budgets`; quick
    ``quick_episodes``),
    ``--random_scale`` and ``--meta_lr`` (:func:`define_meta_lr_flag`) where asked."""
    flags.DEFINE_integer("meta_episodes", None, "Learned optimizers: meta-training episodes "
                         "(paper: the figure's budget, 100 of 1,000 steps for Figs. 6-7, "
                         f"10,000 of 100 for Fig. 8; quick {quick_episodes}).",
                         lower_bound=1)
    if random_scale:
        flags.DEFINE_float("random_scale", None, "Meta-training with RNNprop's random "
                           "scaling exp(U(-r, r)) per coordinate (original r = 3; off by "
                           "default as Open-L2O).")
    if meta_lr:
        define_meta_lr_flag()


def define_meta_lr_flag():
    """``--meta_lr`` of the commands that meta-train learned optimizers (positive or unset)."""
    flags.DEFINE_float("meta_lr", None, "Meta learning rate (default: Adam 1e-3 for "
                       "DM/RNNprop/Swarm, RMSProp 1e-6 for L2O-Scale as the original).")
    flags.register_validator("meta_lr", lambda v: v is None or v > 0,
                             message="--meta_lr must be a positive number")


def flag_values_dict():
    """Values of the flags defined by this program's own modules (``run/``), for the
    ``config`` of ``results.json``; absl's and TensorFlow's internal flags are left out."""
    out = {}
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        module = str(module)
        if not (module == "__main__" or module.startswith(("run.", f"{__package__}."))
                or os.path.basename(os.path.dirname(module)) == "run"):
            continue
        for flag in module_flags:
            if isinstance(flag.value, (str, int, float, bool, type(None), list)):
                out[flag.name] = flag.value
    return out


# flags that cannot change a run's numbers (where it is written, where the same data lives)
IDENTITY_IGNORED = {"workdir", "out", "mnist_dir", "data_root", "only", "dry_run",
                    "report_only", "run_timeout", "import",
                    # results do not depend on the replica count: a run may resume under
                    # another strategy
                    "strategy", "cpu_replicas",
                    # a budget, not a setting: a meta-training run resumes from its checkpoint
                    # and is continued (or finished early) by changing it
                    "meta_episodes",
                    # Safe-L2O options only change the test-phase comparison, which a
                    # re-run redoes: a trained workdir can be re-tested with other ones
                    "safeguard", "safeguard_rule", "safeguard_delta", "safeguard_param",
                    "safeguard_track", "safeguard_energy", "safeguard_fallback",
                    "safeguard_lr", "safeguard_iterations", "safeguard_lam",
                    "safeguard_shadow"}
RUN_FILE = "run.json"


def _check_writable_dir(path, flag):
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, expected a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path} cannot be created ({err.strerror})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UserError(f"{flag} {path} is not writable ({err.strerror})") from None


LOCK_FILE = ".lock"
_LOCKS = {}                       # real path of a locked workdir -> the open lock file


def lock_workdir(workdir, flag="--workdir"):
    """One writer per workdir: takes an exclusive ``fcntl.flock`` on ``WORKDIR/.lock``
    (held until the process exits, however it exits) and records this PID in it.  A
    workdir locked by another process is one :class:`UserError` naming that PID; nothing
    in it is touched.  Under ``--strategy=multi_worker`` a non-chief writes into a private
    directory, so only the chief locks ``--workdir``."""
    import fcntl  # pylint: disable=import-outside-toplevel
    real = os.path.realpath(workdir)
    path = os.path.join(real, LOCK_FILE)
    held = _LOCKS.get(real)
    if held is not None:
        try:
            if os.fstat(held).st_ino == os.stat(path).st_ino:
                return
        except OSError:
            pass
        os.close(_LOCKS.pop(real))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"{flag} {workdir}: cannot create its lock file {path} "
                        f"({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{flag} {workdir} is in use by PID {pid} (another command is "
                        f"writing there); wait for it to finish, or use another {flag}") \
            from None
    mine = f"{os.getpid()}\n".encode()
    if os.pread(fd, 32, 0) != mine:
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine, 0)
    _LOCKS[real] = fd
    olog.guard_directory(real)
    if os.path.abspath(workdir) != real:
        olog.guard_directory(workdir)


def release_workdir_locks():
    """Releases the locks of :func:`lock_workdir` (the process's exit does it too)."""
    while _LOCKS:
        os.close(_LOCKS.popitem()[1])
    olog.GUARDED_DIRS.clear()


def check_workdir(workdir, flag="--workdir"):
    """``workdir`` (and its ``tb/`` and ``ckpt/`` when present) is a writable directory;
    creates it and locks it (:func:`lock_workdir`).  Called before any work, so a bad or
    busy workdir costs nothing."""
    _check_writable_dir(workdir, flag)
    lock_workdir(workdir, flag)
    for sub in ("tb", "ckpt"):
        path = os.path.join(workdir, sub)
        if os.path.exists(path):
            _check_writable_dir(path, f"{flag} subfolder")
    return workdir


def check_writable_file(path, flag):
    """``path`` can be written as a file: not a directory, its folder writable."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory, expected a file name")
    _check_writable_dir(os.path.dirname(os.path.abspath(path)), f"{flag} folder of")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable")
    return path


NPY_MAGIC = b"\x93NUMPY"


def check_load_flag(name, classic, learned):
    """Checks ``--load`` for ``--optimizer=name`` before any work: refused for a classic
    optimizer, the file must exist, and a learned optimizer's file must hold that kind.
    Returns None without ``--load``, ``"learned"`` for a checked learned-optimizer file,
    ``"model"`` for any other method (an unrolled model's file, checked by the caller)."""
    load = flags.FLAGS.load
    if load is None:
        return None
    if name in classic:
        raise UserError(f"--load does not apply to --optimizer={name} (a classic "
                        "optimizer has nothing to load)")
    if not os.path.isfile(load):
        raise UserError(f"--load file {load} "
                        f"{'is a directory' if os.path.isdir(load) else 'does not exist'}")
    if name in learned:
        from model_free import pretrained  # pylint: disable=import-outside-toplevel
        pretrained.check_kind(load, name)
        return "learned"
    return "model"


def check_data_dir(data_dir, flag="--data_dir", splits=("train", "val", "test")):
    """A data directory of run.make_data, checked without reading the arrays (and without
    TensorFlow): a directory, ``A.npy`` and the splits present and .npy files,
    ``meta.json`` JSON.  The full checks happen when the data is loaded."""
    hint = f"make one with python -m run.make_data --setting=SETTING --out={data_dir}"
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"{flag} {data_dir} is a file, expected a directory; {hint}")
    if not os.path.isdir(data_dir):
        raise UserError(f"{flag} {data_dir} does not exist; {hint}")
    for name in ["A.npy"] + [f"{split}_data.npy" for split in splits]:
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise UserError(f"{path} is missing; {hint}")
        with open(path, "rb") as handle:
            head = handle.read(6)
        if head != NPY_MAGIC:
            raise UserError(f"file {path} is not a .npy file (it starts with {head!r}, a .npy "
                            "file with b'\\x93NUMPY'); expected a 2-D float array as written "
                            "by python -m run.make_data")
    olog.read_json(os.path.join(data_dir, "meta.json"), default={},
                   expect={"setting": str, "m": int, "n": int,
                           "lam": (int, float, type(None))})
    return data_dir


def run_identity(extra=None):
    """The command and its flags that can change the numbers (+ ``extra``), JSON-clean."""
    command = os.path.splitext(os.path.basename(sys.argv[0]))[0] if sys.argv else "?"
    values = {k: v for k, v in flag_values_dict().items() if k not in IDENTITY_IGNORED}
    identity = {"command": command, "flags": values, "extra": dict(extra or {})}
    return json.loads(json.dumps(identity, default=str))


def _has_state(workdir):
    ckpt = os.path.join(workdir, "ckpt")
    return (os.path.exists(os.path.join(workdir, "results.json"))
            or (os.path.isdir(ckpt) and bool(os.listdir(ckpt))))


def _state_files(workdir):
    found = ["results.json"] if os.path.exists(os.path.join(workdir, "results.json")) else []
    ckpt = os.path.join(workdir, "ckpt")
    if os.path.isdir(ckpt):
        names = sorted(os.listdir(ckpt))
        found.append("a checkpoint ckpt/" + (", ".join(names[:4])
                                            + (", ..." if len(names) > 4 else "")))
    return found


def _differences(old, new):
    out = []
    if old.get("command") != new["command"]:
        out.append(f"command {old.get('command')} there, {new['command']} now")
    for section, prefix in (("flags", "--"), ("extra", "")):
        before, now = old.get(section) or {}, new[section]
        for key in sorted(set(before) | set(now)):
            if before.get(key) != now.get(key):
                out.append(f"{prefix}{key}={before.get(key)!r} there, {now.get(key)!r} now")
    return out


def check_run_identity(workdir, extra=None):
    """Refuses to reuse ``workdir`` when it holds a checkpoint or results of a run with
    another identity (:func:`run_identity`); otherwise records this run's identity."""
    lock_workdir(workdir)
    path = os.path.join(workdir, RUN_FILE)
    identity = run_identity(extra)
    if not os.path.exists(path) and _has_state(workdir):
        raise UserError(f"--workdir {workdir} holds {', '.join(_state_files(workdir))} but "
                        f"no {RUN_FILE} (the settings of the run that wrote them); refusing "
                        f"to resume a run of unknown settings: use another --workdir or "
                        f"delete {workdir}")
    if os.path.exists(path) and _has_state(workdir):
        try:
            old = olog.read_json(path)
        except UserError:
            old = None
        if not isinstance(old, dict):
            raise UserError(f"{path} is corrupt (expected the JSON identity of the run); "
                            f"delete {workdir} or use another --workdir")
        diff = _differences(old, identity)
        if diff:
            raise UserError(f"--workdir {workdir} holds a run with other settings ("
                            + "; ".join(diff) + "); use another --workdir or the same flags")
    olog.atomic_write_json(path, identity)
    return identity


def prepare_workdir(workdir, extra=None, flag="--workdir"):
    """:func:`check_workdir` + :func:`check_run_identity`: call before any work."""
    check_workdir(workdir, flag)
    check_run_identity(workdir, extra)
    return workdir


def preset_value(preset, paper, quick, override=None):
    """The flag ``override`` when given, else the preset's value."""
    if override is not None:
        return override
    return quick if preset == "quick" else paper


def write_results(workdir, record):
    """Atomically writes ``workdir/results.json`` with one record."""
    path = os.path.join(workdir, "results.json")
    olog.atomic_write_json(path, record)
    return path


def seed_everything(seed):
    """Seeds Python, NumPy and TF/Keras (the initial weights of every network), so a
    command with the same ``--seed`` trains the same model."""
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(int(seed))


VERBOSE_ENV = "OPEN_L2O_TF_VERBOSE"


def quiet_tensorflow_import():
    """Imports TensorFlow and touches the CPU device with file descriptor 2 redirected to
    a temporary file: TF 2.21 writes its C++ start-up log (oneDNN, "Could not find cuda
    drivers", "failed call to cuInit ...") there before ``TF_CPP_MIN_LOG_LEVEL`` applies.
    If the import fails, the captured lines are replayed to stderr before the error, so a
    real failure stays visible.  ``OPEN_L2O_TF_VERBOSE=1`` keeps them in the terminal.

    Before the flags are parsed (a command's module-level import) it only imports: the
    device is touched once the flags are known, right after the ``--strategy`` is created
    (logical CPU devices and multi-worker collectives must be configured before TensorFlow
    initialises its devices)."""
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if flags.FLAGS.is_parsed():
            _setup_strategy()
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            if flags.FLAGS.is_parsed():
                _setup_strategy()
                tf.constant(0.0) + 0.0  # pylint: disable=expression-not-assigned
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
                sys.stderr.flush()
    return tf


def _parse(argv):
    try:
        import_user_modules(_scan_imports(argv))   # before --model/--optimizer are checked
        return flags.FLAGS(argv)
    except (flags.Error, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _wrap(main, validate=None, needs_tf=True):
    def wrapped(argv):
        _install_sigterm()
        try:
            check_strategy_flags()
            _non_chief_workdir()
            if validate is not None:    # cheap checks first: a mistake costs no TF import
                validate(argv) if _takes_argv(validate) else validate()
            if needs_tf:
                tf = quiet_tensorflow_import()
                tf.get_logger().setLevel("ERROR")   # retracing chatter of tf.functions
                if "seed" in flags.FLAGS:
                    seed_everything(flags.FLAGS.seed)
            return main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as err:
            # checkpoints and results are written atomically: the last finished one is
            # intact, so stopping here is the safe point
            sys.stdout.flush()
            terminated = isinstance(err, Terminated)
            print(f"interrupted ({'SIGTERM' if terminated else 'SIGINT'}); "
                  "re-run the same command to resume", file=sys.stderr, flush=True)
            sys.exit(143 if terminated else 130)
        except OSError as err:
            print(f"error: {_describe_os_error(err)}", file=sys.stderr)
            sys.exit(2)
        except Exception as err:  # pylint: disable=broad-except
            if not _lost_peer(err):
                raise
            print(f"error: --strategy=multi_worker: a worker of the cluster stopped or cannot "
                  f"be reached ({type(err).__name__}); restart the same command on every "
                  f"worker: the run continues after the chief's last checkpoint",
                  file=sys.stderr)
            sys.exit(3)
    return wrapped


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


def _raise_terminated(signum, frame):
    del signum, frame
    raise Terminated()


def _install_sigterm():
    import signal  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _describe_os_error(err):
    """One line for an OSError: the file, the errno's name and its text."""
    import errno as errno_names  # pylint: disable=import-outside-toplevel
    name = errno_names.errorcode.get(err.errno, "") if err.errno else ""
    code = f"[Errno {err.errno} {name}] " if err.errno else ""
    reason = err.strerror or str(err)
    if not err.errno and isinstance(err, olog.WriteError):
        reason += " (a short write: the disk is full or a file size limit was reached)"
    if err.filename:
        verb = "cannot write" if isinstance(err, olog.WriteError) else "cannot use"
        return f"{verb} {err.filename}: {code}{reason}"
    return f"{code}{reason} ({type(err).__name__})"


def _lost_peer(err):
    """A collective of a multi-worker run failed because a peer is gone."""
    values = _strategy_flags()
    if values is None or values[0] != "multi_worker" or "tensorflow" not in sys.modules:
        return False
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return isinstance(err, (tf.errors.UnavailableError, tf.errors.CancelledError,
                            tf.errors.DeadlineExceededError, tf.errors.AbortedError))


def _takes_argv(fn):
    import inspect  # pylint: disable=import-outside-toplevel
    return bool(inspect.signature(fn).parameters)


def main_wrapper(main, validate=None, needs_tf=True):
    """``app.run(main)`` where a UserError prints ``error: ...`` and exits with status 2;
    ``validate()`` (checks of flags, files and the workdir that need no TensorFlow) runs
    before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(_wrap(main, validate, needs_tf), flags_parser=_parse)


def run_in_process(main, argv, validate=None, needs_tf=True):
    """Parses ``argv`` (re-parsing the flags from their defaults) and runs ``main`` as
    :func:`main_wrapper` would, returning the exit status instead of exiting (the tests
    run many bad command lines in one process)."""
    flags.FLAGS.unparse_flags()
    try:
        rest = _parse(list(argv))
        result = _wrap(main, validate, needs_tf)(rest)
        return result if isinstance(result, int) else 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        release_workdir_locks()


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


def sparse_safeguard(model, y, x, workdir, *, A=None, title=None):
    """Runs the Safe-L2O comparison of the ``--safeguard_*`` flags for an unrolled model on
    sparse-recovery data, prints a summary, writes ``workdir/safeguard.png`` and returns
    the ``safeguard`` entry of ``results.json``."""
    from model_based import safeguard as msg  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import plotting  # pylint: disable=import-outside-toplevel
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    rule = safeguard_rule_from_flags()
    fallback = safeguard_fallback_flag(["ista", "fista"], "fista")
    result = msg.compare(model, y, FLAGS.safeguard_iterations, rule, A=A,
                         lam=FLAGS.safeguard_lam, x_true=x,
                         energy=FLAGS.safeguard_energy, fallback=fallback,
                         shadow=FLAGS.safeguard_shadow)
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


def rastrigin_safeguard(opt, family, test, x0, workdir):
    """Safe-L2O on Rastrigin: energy = objective minus the lower bound ``alpha (n -
    ||c||_1)``, fallback = the ``--safeguard_fallback`` transform (default Adam at the
    paper's 0.1; RMSProp 0.3; GD 0.01).  Prints, plots, returns the record entry."""
    from model_free import safeguard as fsg  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import plotting  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.classic import first_order  # pylint: disable=import-outside-toplevel
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    rule = safeguard_rule_from_flags()
    name = safeguard_fallback_flag(["gd", "adam", "rmsprop"], "adam")
    lr = FLAGS.safeguard_lr or {"gd": 0.01, "adam": 0.1, "rmsprop": 0.3}[name]
    transform = getattr(first_order, name)(lr)
    offset = family.lower_bound(test)

    def make_guard(mode):
        return fsg.objective_safeguard(family, test, rule, transform, energy_offset=offset,
                                       mode=mode, shadow=FLAGS.safeguard_shadow)
    result = fsg.compare(opt, family, FLAGS.steps, test, x0, make_guard, classic_label=name,
                         grad_scale=1.0 / 128)
    result = dict(result, energy="objective - lower bound", lr=lr, trained_depth=0,
                  shadow=FLAGS.safeguard_shadow)
    n = result["instances"]
    plotting.plot_safeguard(result["curves"], os.path.join(workdir, "safeguard.png"),
                            metric="loss", rejected=[r / n for r in result["rejected"]],
                            title=f"Rastrigin n={FLAGS.n}")
    print_safeguard(result, marks=[1, 10, 100, FLAGS.steps // 2, FLAGS.steps])
    return result
