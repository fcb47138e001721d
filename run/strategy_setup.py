"""``--strategy``: checked before TensorFlow is imported, created once, right before the
first device use (:mod:`open_l2o_tf.distribute`)."""
import tempfile

from absl import flags

from open_l2o_tf.errors import UserError

_STRATEGY = {}


def strategy_flags():
    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    if "strategy" not in FLAGS or not FLAGS.is_parsed():
        return None
    return FLAGS.strategy, FLAGS.cpu_replicas


def check_strategy_flags(applies=True, why=""):
    """``--strategy`` / ``--cpu_replicas`` checked without TensorFlow; ``applies=False``
    refuses a strategy other than default (``why`` says for what)."""
    values = strategy_flags()
    if values is None:
        return
    from open_l2o_tf import distribute  # pylint: disable=import-outside-toplevel
    distribute.check_strategy_options(values[0], values[1])
    if values[0] != "default" and not applies:
        raise UserError(f"--strategy={values[0]} does not apply here: {why}")


def setup_strategy():
    """Creates the ``--strategy`` once, before TensorFlow initialises its devices."""
    values = strategy_flags()
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
    setup_strategy()
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


def non_chief_workdir():
    """Under ``--strategy=multi_worker`` only the chief writes into ``--workdir``; any other
    worker writes into a temporary directory, removed at exit (TF's convention)."""
    values = strategy_flags()
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
