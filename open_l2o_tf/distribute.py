"""Scale-out on TensorFlow's own distribution engine (``tf.distribute``).

Three strategies, by name:

* ``"default"``: no strategy, one device (the trainers' single-device code paths);
* ``"mirrored"``: :class:`tf.distribute.MirroredStrategy` over the visible GPUs, or, without
  GPUs, over ``cpu_replicas`` logical CPU devices (:func:`configure_cpu_replicas`, which must
  run before TensorFlow initialises its devices);
* ``"multi_worker"``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, one process per
  worker, the cluster read from the standard ``TF_CONFIG`` environment variable (collective
  all-reduce over gRPC; it too must be created before TensorFlow initialises its devices).

How the trainers use a strategy (data parallel, synchronous; no distributed variables: the
trainers' variables stay ordinary variables, one copy per process, updated identically
everywhere from all-reduced gradients):

* every process holds the whole data set and draws the same global batch (the batch order
  is a function of the seed); replica ``r`` of ``R`` takes rows ``r*b/R .. (r+1)*b/R - 1``
  of it (:func:`replica_rows`) inside ``strategy.run``, computes the gradient of its part of
  the loss (losses are sums over the batch, or means whose 1/b factor is kept, so the parts
  add up to the single-device loss), and the parts are summed by the replica context's
  ``all_reduce`` (``tf.distribute`` collectives: NCCL/ring on GPUs, gRPC between workers);
* the update then runs once per process on the reduced gradient, so every process keeps the
  same weights; validation, tests and model selection run on the full sets;
* only the chief (:func:`is_chief`) writes checkpoints and results; on resume the chief reads
  the checkpoint and broadcasts it (:func:`broadcast_arrays`, :func:`broadcast_json`), so a
  worker on another host needs no copy of it.

The ``TF_CONFIG`` helpers (:func:`read_tf_config`, :func:`chief_from_tf_config`) need no
TensorFlow, so the command lines can check them before importing it.
"""
import json
import os

from open_l2o_tf.errors import UserError

STRATEGIES = ("default", "mirrored", "multi_worker")


# -- TF_CONFIG (no TensorFlow) -------------------------------------------------------------
def read_tf_config(environ=None):
    """The parsed ``TF_CONFIG`` (``None`` when unset); a UserError when it is not the
    standard ``{"cluster": {"worker": ["host:port", ...], ...}, "task": {"type": ...,
    "index": ...}}``."""
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        config = json.loads(raw)
    except ValueError:
        raise UserError("TF_CONFIG is not JSON; expected {\"cluster\": {\"worker\": "
                        "[\"host:port\", ...]}, \"task\": {\"type\": \"worker\", "
                        "\"index\": i}}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError("TF_CONFIG needs a \"cluster\" and a \"task\" object, got "
                        f"{raw[:120]!r}")
    workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    if not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise UserError("TF_CONFIG cluster needs a \"worker\" (and optionally \"chief\") list "
                        f"of \"host:port\" addresses, got {cluster!r}")
    kind, index = task.get("type"), task.get("index")
    if kind not in ("worker", "chief") or not isinstance(index, int) or not (
            0 <= index < len(cluster.get(kind, []))):
        raise UserError(f"TF_CONFIG task {task!r} is not one of the cluster's tasks "
                        "(type \"worker\" or \"chief\", index within its list)")
    return config


def chief_from_tf_config(environ=None):
    """True for the process that writes (TF's rule: the ``chief`` task, else worker 0;
    also True without ``TF_CONFIG``)."""
    config = read_tf_config(environ)
    if config is None:
        return True
    kind, index = config["task"]["type"], config["task"]["index"]
    if "chief" in config["cluster"] and config["cluster"]["chief"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def check_strategy_options(name, cpu_replicas=None, environ=None, flag="--strategy"):
    """Checks a strategy name and its options without TensorFlow."""
    if name not in STRATEGIES:
        raise UserError(f"{flag} must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if cpu_replicas is not None and name != "mirrored":
        raise UserError(f"--cpu_replicas applies to {flag}=mirrored only, not {name}")
    if name == "multi_worker" and read_tf_config(environ) is None:
        raise UserError(f"{flag}=multi_worker reads the cluster from TF_CONFIG, which is "
                        "not set (see docs/scaling_out.md)")


# -- devices and strategies ------------------------------------------------------------------
def configure_cpu_replicas(count):
    """Splits the physical CPU into ``count`` logical devices (before TF initialises them)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(count))])
    except RuntimeError:
        raise UserError(f"cannot create {count} logical CPU devices: TensorFlow has already "
                        "initialised its devices in this process (configure them first)") \
            from None


def make_strategy(name, cpu_replicas=None):
    """The ``tf.distribute.Strategy`` of ``name`` (None for ``"default"``)."""
    check_strategy_options(name, cpu_replicas)
    if name == "default":
        return None
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if cpu_replicas is not None and not gpus:
            configure_cpu_replicas(cpu_replicas)
        if gpus:
            devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        else:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise UserError(f"--strategy=multi_worker cannot start ({str(err).splitlines()[0]}); "
                        "it must be created before TensorFlow initialises its devices") \
            from None


def num_replicas(strategy):
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_chief(strategy):
    """True in the process that writes checkpoints and results."""
    if strategy is None:
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    kind, index = resolver.task_type, resolver.task_id
    if "chief" in resolver.cluster_spec().as_dict():
        return kind == "chief"
    return kind in (None, "worker") and (index or 0) == 0


def describe(strategy):
    """One line for the logs."""
    if strategy is None:
        return "default strategy (one device)"
    kind = type(strategy).__name__
    devices = getattr(strategy.extended, "worker_devices", ())
    return (f"{kind}: {num_replicas(strategy)} replicas in sync "
            f"({', '.join(devices)} here){'' if is_chief(strategy) else ', not the chief'}")


def per_replica_size(total, strategy, what="batch size"):
    """``total / replicas``; a UserError when it does not divide."""
    count = num_replicas(strategy)
    if total % count:
        raise UserError(f"the {what} {total} does not split evenly over {count} replicas; "
                        f"use a multiple of {count}")
    return total // count


def replica_rows(tensor, per_replica, axis=0):
    """Inside ``strategy.run``: this replica's rows ``r*per .. (r+1)*per - 1`` of
    ``tensor`` along ``axis`` (0: batch-first)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rid = tf.distribute.get_replica_context().replica_id_in_sync_group
    rid = tf.cast(rid, tf.int32)
    rank = tensor.shape.rank
    begin = tf.one_hot(axis, rank, dtype=tf.int32) * rid * per_replica
    size = [per_replica if d == axis else -1 for d in range(rank)]
    return tf.slice(tensor, begin, size)


def replica_sum(value):
    """Inside a replica function: the nest ``value`` summed over all replicas of all
    workers (the replica context's ``all_reduce``); ``value`` itself outside a strategy."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.distribute.has_strategy():
        return value
    return tf.distribute.get_replica_context().all_reduce("sum", value)


def replica_count():
    """Inside a replica function: the number of replicas in sync (1 outside a strategy)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.distribute.has_strategy():
        return 1
    return int(tf.distribute.get_replica_context().num_replicas_in_sync)


def splitter(strategy, fn):
    """A compiled ``(*args) -> strategy.run(fn, args)``: per-replica values made inside the
    replicas, ``fn`` taking each replica's share (:func:`replica_rows`, :func:`shard_state`)
    of the whole values every process holds."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.function(lambda *args: strategy.run(fn, args=args))


def synchronous_step(strategy, part, apply, variables, jit_compile=False):
    """The one synchronous data-parallel update step of the meta-trainers (truncations of
    :class:`model_free.meta.meta_trainer.MetaTrainer`, its imitation episodes, L2O-Swarm's and
    Twin-L2O's truncations; the progressive trainer's is ``_all_reduced``)::

        carry, values, grads = part(*args)   # on every replica, on its shard (strategy.run)
        grads = sum over replicas of grads   # the replica context's all_reduce
        finite = apply(values, grads)        # once per process

    ``grads`` is a nest of the structure of ``variables`` (a None entry is a zero under a
    strategy); ``part`` makes its ``values`` the whole batch's itself (:func:`replica_sum`)
    and ``apply`` gets the first local replica's.  ``carry`` (the replicas' shards of the
    optimizee state) stays per replica.  Without a strategy ``part`` and ``apply`` run in
    one ``tf.function`` (``jit_compile``); under one the step is not XLA-compiled.
    Returns ``step(*args) -> (carry, values, finite)``."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if strategy is None:
        def step(*args):
            carry, values, grads = part(*args)
            return carry, values, apply(values, grads)
        return tf.function(step, jit_compile=jit_compile, reduce_retracing=True)

    def replica(*args):
        carry, values, grads = part(*args)
        grads = tf.nest.map_structure(lambda g, v: tf.zeros_like(v) if g is None else g,
                                      grads, variables, check_types=False)
        return carry, values, replica_sum(grads)

    def step(*args):
        carry, values, grads = strategy.run(replica, args=args)
        values, grads = first_local(strategy, (values, grads))
        return carry, values, apply(values, grads)

    return tf.function(step, reduce_retracing=True)


def shard_state(state, shapes, per_replica):
    """Inside ``strategy.run``: this replica's part of a learned optimizer's state built on
    the whole list of batch-first parameters of ``shapes`` (``B`` instances each), when the
    replica holds instances ``r*per .. (r+1)*per - 1``.  A state tensor is classified by
    its leading size: one row per coordinate (the parameters flattened in order), one row
    per row of a parameter (L2O-Scale's tensor groups with ``batched_instances``), one per
    instance, or a scalar (kept).  Where two of these sizes coincide the selections are the
    same.  Anything else is a UserError (such a state cannot be split by instance)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    count = int(shapes[0][0])
    replicas = count // per_replica
    widths = [int(np.prod(shape[1:], dtype=np.int64)) for shape in shapes]

    def table(unit):
        rows = []
        for r in range(replicas):
            parts, offset = [], 0
            for width in widths:
                w = width if unit == "coordinate" else 1
                parts.append(offset + np.arange(r * per_replica * w, (r + 1) * per_replica * w))
                offset += count * w
            rows.append(np.concatenate(parts))
        return tf.constant(np.stack(rows).astype(np.int32))

    coordinates, groups = table("coordinate"), table("row")
    num_coords, num_groups = count * sum(widths), count * len(widths)
    rid = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)

    def take(leaf):
        if leaf.shape.rank == 0:
            # a copy: returned as is, strategy.run would hand back a plain tensor, not a
            # per-replica value as after a truncation (a second trace of the truncation)
            return tf.identity(leaf)
        size = int(leaf.shape[0])
        if size == num_coords:
            return tf.gather(leaf, coordinates[rid])
        if size == num_groups:
            return tf.gather(leaf, groups[rid])
        if size == count:
            return replica_rows(leaf, per_replica)
        raise UserError(f"a learned-optimizer state tensor of shape {tuple(leaf.shape)} has "
                        f"neither one row per coordinate ({num_coords}), per parameter row "
                        f"({num_groups}) nor per instance ({count}): it cannot be split over "
                        "replicas by instance")
    return tf.nest.map_structure(take, state)


def first_local(strategy, value):
    """The first local replica's value of a (replicated) ``strategy.run`` result."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], value)


# -- broadcasting the chief's values ---------------------------------------------------------
def multi_process(strategy):
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    return bool(resolver is not None and resolver.cluster_spec().as_dict())


def broadcast_arrays(strategy, arrays):
    """The chief's ``arrays`` (a list of numpy arrays of the same shapes and dtypes in every
    process; the other processes' values are ignored) in every process: an all-reduce sum
    in which only the chief's first replica contributes (adding zeros is exact)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not multi_process(strategy) or not arrays:
        return arrays
    chief = is_chief(strategy)

    def replica(groups):
        ctx = tf.distribute.get_replica_context()
        # replicas are numbered worker by worker, the chief first: its first replica is 0
        own = tf.logical_and(tf.constant(chief),
                             tf.equal(tf.cast(ctx.replica_id_in_sync_group, tf.int32), 0))
        # one all-reduce per dtype (the collective packs a list into one tensor)
        return [ctx.all_reduce("sum", [tf.where(own, v, tf.zeros_like(v)) for v in group])
                for group in groups]

    values = [tf.constant(np.asarray(a)) for a in arrays]
    dtypes = sorted({v.dtype.name for v in values})
    groups = [[v for v in values if v.dtype.name == d] for d in dtypes]
    reduced = first_local(strategy, strategy.run(tf.function(replica), args=(groups,)))
    by_dtype = {d: iter(group) for d, group in zip(dtypes, reduced)}
    return [next(by_dtype[v.dtype.name]).numpy().astype(np.asarray(a).dtype)
            for v, a in zip(values, arrays)]


def broadcast_json(strategy, obj):
    """The chief's JSON-serialisable ``obj`` in every process (``None`` allowed)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    if not multi_process(strategy):
        return obj
    data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8).astype(np.int32) \
        if is_chief(strategy) else np.zeros([0], np.int32)
    (length,) = broadcast_arrays(strategy, [np.array([len(data)], np.int32)])
    padded = np.zeros([int(length[0])], np.int32)
    padded[:len(data)] = data[:len(padded)]
    (data,) = broadcast_arrays(strategy, [padded])
    return json.loads(bytes(data.astype(np.uint8).tolist()).decode("utf-8"))


def chief_value(strategy, value):
    """The chief's float ``value`` in every process (model selection: the chief's score
    decides); ``value`` itself in one process."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    if not multi_process(strategy):
        return float(value)
    return float(broadcast_arrays(strategy, [np.array(value, np.float64)])[0])


def restore_trainer(strategy, trainer):
    """The meta-trainers' resume, through their public checkpoint interface
    (:class:`model_free.meta.checkpoint.Resumable`).  In one process ``trainer.read_checkpoint()``.
    Under a multi-process strategy the chief reads the file and broadcasts
    ``trainer.progress_state()`` (counters, best score, history, ...: JSON),
    ``trainer.checkpoint_variables()`` (weights and optimizer slots) and
    ``trainer.best_weights`` (``trainer.current_weights()`` stand in where a process has
    none); every process assigns them and calls ``trainer.load_progress_state``.
    Returns True when there was a checkpoint."""
    if not multi_process(strategy):
        return trainer.read_checkpoint()
    info = restore_on_chief(strategy, trainer.read_checkpoint,
                            lambda: dict(trainer.progress_state(),
                                         has_best=trainer.best_weights is not None))
    if info is None:
        return False
    variables = list(trainer.checkpoint_variables())
    best = trainer.best_weights if trainer.best_weights is not None \
        else trainer.current_weights()
    values = broadcast_arrays(strategy, [v.numpy() for v in variables] + list(best))
    for v, value in zip(variables, values):
        v.assign(value)
    trainer.best_weights = values[len(variables):] if info["has_best"] else None
    trainer.load_progress_state(info)
    return True


def restore_on_chief(strategy, read_file, payload):
    """Resume under a multi-process strategy: the chief runs ``read_file()`` (True when it
    found a checkpoint) and broadcasts ``payload()`` (JSON); every process gets the chief's
    payload, or None when there was no checkpoint.  A UserError of the chief's reading is
    raised in every process (the others name it as the chief's)."""
    chief = is_chief(strategy)
    found, error = False, None
    if chief:
        try:
            found = read_file()
        except UserError as err:
            error = str(err)
    info = broadcast_json(strategy, {"error": error,
                                     "payload": payload() if found and not error else None})
    if info["error"]:
        raise UserError(info["error"] if chief else
                        f"the chief could not resume: {info['error']}")
    return info["payload"]
