"""Start-up of every command: ``--import``, the TensorFlow import, signals, one-line errors.

:func:`main_wrapper` runs a command's ``main`` as ``app.run`` would, except that a
:class:`~open_l2o_tf.errors.UserError` (and a flag validation error) is one ``error:``
line on stderr and exit status 2 instead of a stack trace; SIGINT and SIGTERM stop the run
with one line saying where it was (:mod:`open_l2o_tf.position`), exit 130 / 143; a failed
write is one line naming the file and the errno.  TensorFlow's C++ start-up log is kept out
of the terminal (``OPEN_L2O_TF_VERBOSE=1`` shows it; a failing import replays it).
``--import=my_pkg.my_module`` modules are imported before the flags are parsed, so the
names they register are valid values of the flags of :func:`shared_flags.define_method_flag`.
"""
import importlib
import os
import re
import sys
import tempfile

from absl import app, flags

from open_l2o_tf import logging as olog
from open_l2o_tf import position, registry, responsive
from open_l2o_tf.errors import UserError
from . import shared_flags, strategy_setup, workdir


# -- bring your own: --import=my_pkg.my_module on every command --------------------------
flags.DEFINE_multi_string(
    "import", [], "Import this Python module before anything else (repeatable).  A module "
    "of your own that registers an unrolled model or a learned optimizer with "
    "open_l2o_tf.registry makes its names valid values of --model / --optimizer (see "
    "docs/extending.md).")

USER_NAMES = {}                   # kind -> names registered by the --import modules


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
    (``USER_NAMES``) and extends the flags of :func:`shared_flags.define_method_flag`."""
    from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
    before = {kind: set(registry.names(kind)) for kind in registry.KINDS}
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        # ``python -m`` puts the current directory on sys.path, the ``open-l2o`` script
        # does not: the module (and the targets it registers) import from here either way
        sys.path.append(os.getcwd())
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
    shared_flags.extend_method_flags()
    return USER_NAMES


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
            strategy_setup.setup_strategy()
        registry.import_deferred()
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            if flags.FLAGS.is_parsed():
                strategy_setup.setup_strategy()
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
    registry.import_deferred()   # the family modules whose import waited for the flags
    return tf


PROGRAM_ENV = "OPEN_L2O_PROGRAM"   # set by the open-l2o entry point (run/cli.py)


def as_invoked(text):
    """``text`` with ``python -m run.X`` (and a bare ``run.X``) naming the command the way
    the user runs the commands: ``open-l2o x`` when they ran one through the ``open-l2o``
    entry point (which sets ``$OPEN_L2O_PROGRAM``, so the processes a command starts say
    the same), else unchanged (a checkout, ``python -m run.X``)."""
    program = os.environ.get(PROGRAM_ENV, "")
    if not program:
        return text
    from .cli import COMMANDS  # pylint: disable=import-outside-toplevel
    pattern = r"(?:python -m )?\brun\.(" + "|".join(COMMANDS) + r")\b"
    return re.sub(pattern, lambda m: f"{program} {m.group(1).replace('_', '-')}", text)


def error_line(err):
    """The ``error: ...`` line of a user mistake (commands named as the user runs them)."""
    return as_invoked(f"error: {err}")


HELP_ARGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def _wants_help(argv):
    """The help flag of ``argv`` (before a ``--``), else None."""
    for arg in argv[1:]:
        if arg == "--":
            return None
        if arg in HELP_ARGS:
            return arg
    return None


def command_flags():
    """The flags this command accepts: those defined by the command's module and by the
    shared modules of ``run/`` it used (not absl's or TensorFlow's own)."""
    out = []
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if shared_flags.is_run_module(str(module)):
            out += [flag for flag in module_flags if flag not in out]
    return out


def print_help(which="--help"):
    """The command's docstring and every flag it accepts, on stdout (``--helpfull``: also
    absl's own flags)."""
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or f"USAGE: {sys.argv[0]} [flags]").rstrip()
    if which == "--helpfull":
        body = flags.FLAGS.get_help()
    else:
        module = sys.argv[0]
        for flag in command_flags():
            flags.FLAGS.register_key_flag_for_module(module, flag)
        body = "\n".join(flags.FLAGS.module_help(module).splitlines()[2:])  # no heading
        body += "\n\n(--helpfull: also the flags of absl, the flag library)"
    print(as_invoked(doc) + "\n\nflags:\n" + as_invoked(body), flush=True)


def _parse(argv):
    try:
        import_user_modules(_scan_imports(argv))   # before --model/--optimizer are checked
        which = _wants_help(argv)
        if which is not None:
            print_help(which)
            sys.exit(0)
        shared_flags.guard_float_flags()           # --lr=inf, --lr=1e39: refused
        return flags.FLAGS(argv)
    except (flags.Error, UserError) as err:
        print(error_line(err), file=sys.stderr)
        sys.exit(2)


def _wrap(main, validate=None, needs_tf=True):
    def wrapped(argv):
        install_signal_handlers()
        try:
            strategy_setup.check_strategy_flags()
            strategy_setup.non_chief_workdir()
            if validate is not None:    # cheap checks first: a mistake costs no TF import
                validate(argv) if _takes_argv(validate) else validate()
            if needs_tf:
                tf = quiet_tensorflow_import()
                tf.get_logger().setLevel("ERROR")   # retracing chatter of tf.functions
                if "seed" in flags.FLAGS:
                    seed_everything(flags.FLAGS.seed)
            return main(argv)
        except UserError as err:
            print(error_line(err), file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as err:
            # checkpoints and results are written atomically: the last finished one is
            # intact, so stopping here is the safe point
            sys.stdout.flush()
            terminated = isinstance(err, Terminated)
            print(interrupt_line("SIGTERM" if terminated else "SIGINT"), file=sys.stderr,
                  flush=True)
            if responsive.abandoned():
                # a worker thread is still inside a compiled call: no interpreter
                # finalisation under it (locks are released by the OS with the process)
                sys.stdout.flush()
                os._exit(143 if terminated else 130)  # pylint: disable=protected-access
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


def interrupt_line(signal_name):
    """``interrupted at <where> (SIGINT); re-run the same command to resume``, where the
    trainers last said they were (:func:`open_l2o_tf.position.get`; no " at ..." when
    they said nothing)."""
    where = position.get().strip()
    at = f" at {where}" if where else ""
    return f"interrupted{at} ({signal_name}); re-run the same command to resume"


def install_signal_handlers():
    """SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt`` in the main
    thread, also when the process started with SIGINT ignored (a background job, nohup):
    Python then leaves SIGINT ignored, and Ctrl-C or ``kill -INT`` would do nothing."""
    import signal  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
    values = strategy_setup.strategy_flags()
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
        workdir.release_workdir_locks()
