"""Loading and saving learned optimizers, including the original Open-L2O pretrained ones.

The original release ships L2O-DM (``*.cw.l2l-0``) and L2O-RNNprop (``*.rp.l2l-0``) weights
as dill pickles of ``{module: {var: float32 ndarray}}`` (spec model_free §12.3), read by
:func:`model_free.weights.safe_pickle.safe_load_pickle`, which never unpickles (a hostile file can
neither run code nor make numpy dereference forged pointers).  A flat ``{"module/var": array}``
dict is read as the nested one.  ``python -m run.convert_original [--problem=P] IN
OUT.npz`` converts an original file once into our ``.npz`` format, with the original's
configuration of the problem it was trained for (:func:`load_original`).

Our own optimizers are saved as ``.npz`` weights + a JSON config (:func:`save_optimizer`),
written atomically and read back with ``allow_pickle=False``.
"""
import json
import os

import numpy as np

from open_l2o_tf import catalogue
from open_l2o_tf import logging as olog
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError
from model_free.weights.safe_pickle import safe_load_pickle  # noqa: F401  (the loader's API)


def _flat(weights, prefix=""):
    """``{"module/var": array}`` from the original's nested ``{module: {var: array}}``
    (``networks.save``) or from a flat ``{"module/var": array}`` dict (the same arrays
    re-saved under their full names; both are read alike)."""
    out = {}
    for key, value in weights.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _assign(variable, value, path, key):
    if tuple(variable.shape) != tuple(value.shape):
        raise UserError(f"{path}: {key} has shape {value.shape}, our optimizer expects "
                        f"{tuple(variable.shape)}")
    variable.assign(value.astype(np.float32))


# The network configuration the original gives an L2O-DM for each problem of
# ``util.get_config`` (Model_Free_L2O/L2O-DM and L2O-RNNProp/util.py): the networks use
# ``get_default_net_config`` (util.py:99-109: LogAndSign, k = 5, scale 0.01); the synthetic
# problems pass only ``layers`` (util.py:136-143, 215-246), so they get StandardDeepLSTM's
# defaults, raw gradients and scale 1.0 (networks.py:157-158).  RNNprop is scaled by 0.01
# on every problem (util.py:251-263).
_IDENTITY_PROBLEMS = ("rastrigin", "lasso", "quadratic", "square_cos", "confocal_microscopy_3d")
_NETWORK_PROBLEMS = ("mnist", "mnist_relu", "mnist_deeper", "mnist_conv", "cifar_conv", "lenet",
                     "nas", "vgg16", "cifar-multi")
ORIGINAL_DM_CONFIGS = {**{p: ("identity", 1.0) for p in _IDENTITY_PROBLEMS},
                       **{p: ("log_and_sign", 0.01) for p in _NETWORK_PROBLEMS}}
ORIGINAL_PROBLEMS = tuple(ORIGINAL_DM_CONFIGS)
LEGACY_OUTPUT_SCALE = 0.01      # what every original file got before --problem existed


def load_original(path, output_scale=None, problem=None, strict=True):
    """``(name, optimizer)`` from an original Open-L2O file (DM or RNNprop).

    The output scale: ``output_scale`` if given; else the original's for ``problem`` (a
    name of ``util.get_config``, :data:`ORIGINAL_DM_CONFIGS`: L2O-DM 1.0 on ``rastrigin``,
    ``lasso``, ... and 0.01 on ``mnist``, ...; RNNprop 0.01); else 0.01 for every file
    (:data:`LEGACY_OUTPUT_SCALE`, the behaviour before ``problem``).  An L2O-DM's
    preprocessing is read from the file (input width 2: LogAndSign, 1: raw gradients); a
    file whose preprocessing is not the one the original uses on ``problem`` is a
    :class:`UserError` (``strict``) or gets the legacy scale (``strict=False``: a command's
    ``--load`` of a file trained for another kind of problem)."""
    from model_free.rules.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from model_free.rules.rnnprop import L2ORNNprop  # pylint: disable=import-outside-toplevel
    if problem is not None and problem not in ORIGINAL_DM_CONFIGS:
        raise UserError(f"unknown original problem {problem!r}; expected one of "
                        f"{', '.join(ORIGINAL_PROBLEMS)}")
    flat = _flat(safe_load_pickle(path))
    if "input_projection/w" in flat:
        scale = LEGACY_OUTPUT_SCALE if output_scale is None else output_scale
        opt = L2ORNNprop(output_scale=scale)
        pairs = [(opt.input_projection.kernel, "input_projection/w"),
                 (opt.input_projection.bias, "input_projection/b")]
        name = "l2o_rnnprop"
    elif "lstm_1/w_gates" in flat:
        gates = flat["lstm_1/w_gates"]
        if getattr(gates, "ndim", 0) != 2:
            raise UserError(f"{path}: lstm_1/w_gates has shape {getattr(gates, 'shape', None)}"
                            ", expected a matrix")
        in_dim = gates.shape[0] - gates.shape[1] // 4
        preprocess = "log_and_sign" if in_dim == 2 else "identity"
        scale = output_scale
        if scale is None and problem is not None:
            wanted, scale = ORIGINAL_DM_CONFIGS[problem]
            if wanted != preprocess:
                if strict:
                    fits = [p for p, c in ORIGINAL_DM_CONFIGS.items() if c[0] == preprocess]
                    raise UserError(
                        f"{path}: an L2O-DM with {_PREPROCESS_TEXT[preprocess]}, but the "
                        f"original's {problem!r} uses {_PREPROCESS_TEXT[wanted]}; pass the "
                        f"problem the file was trained for: --problem={fits[0]} (or "
                        f"{', '.join(fits[1:])})")
                scale = LEGACY_OUTPUT_SCALE
        opt = L2ODM(preprocess=preprocess,
                    output_scale=LEGACY_OUTPUT_SCALE if scale is None else scale)
        pairs = []
        name = "l2o_dm"
    else:
        raise UserError(f"{path}: neither an L2O-DM nor an L2O-RNNprop weights file "
                        f"(keys {sorted(flat)[:4]}...)")
    pairs += [(opt.lstm_1.w_gates, "lstm_1/w_gates"), (opt.lstm_1.b_gates, "lstm_1/b_gates"),
              (opt.lstm_2.w_gates, "lstm_2/w_gates"), (opt.lstm_2.b_gates, "lstm_2/b_gates"),
              (opt.linear.kernel, "linear/w"), (opt.linear.bias, "linear/b")]
    for variable, key in pairs:
        if key not in flat:
            raise UserError(f"{path}: missing variable {key}")
        _assign(variable, flat[key], path, key)
    return name, opt


_PREPROCESS_TEXT = {"identity": "raw-gradient input (input width 1)",
                    "log_and_sign": "LogAndSign input (input width 2)"}


def original_note(name, opt, problem):
    """The note ``convert-original`` prints when a file was converted with the legacy
    scale although the original gives it another (an L2O-DM on raw gradients: 1.0), else
    None."""
    if problem is None and name == "l2o_dm" and opt.preprocess == "identity":
        return ("note: this L2O-DM takes raw gradients (input width 1), which the original "
                "uses only with output scale 1.0 (util.get_config: " + ", ".join(
                    _IDENTITY_PROBLEMS) + f"); converted with {LEGACY_OUTPUT_SCALE} as "
                "without --problem; pass --problem=rastrigin (or the problem it was trained "
                "for) for the original's configuration")
    return None


def save_optimizer(opt, path):
    """Writes ``path`` (``.npz`` of weights with the class and config inside), atomically."""
    arrays = {f"w{i}": v.numpy() for i, v in enumerate(opt.weights)}
    meta = json.dumps({"class": type(opt).__name__, "config": opt.get_config()})
    olog._atomic_write(path, lambda h: np.savez(h, __meta__=np.array(meta), **arrays), "wb")  # pylint: disable=protected-access


def _class_kinds():
    """``{class name: kind}`` from the registry (no import): the kind of a class is the
    first learned-optimizer name registered for it (``l2o_enhanced`` is an L2O-DM trained
    differently, so an L2O-DM file is of kind ``l2o_dm``)."""
    kinds = {}
    for name, spec in registry.TABLES["learned"].items():
        kinds.setdefault(spec.split(":")[1].rsplit(".", 1)[-1], name)
    return kinds


def kind_of(name):
    """The kind of file the ``--optimizer`` name ``name`` can use (``l2o_enhanced``:
    ``l2o_dm``); a name not registered is its own kind."""
    spec = registry.TABLES["learned"].get(name)
    if spec is None:
        return name
    return _class_kinds().get(spec.split(":")[1].rsplit(".", 1)[-1], name)


def load_optimizer(path, output_scale=None, expected=None, problem=None, synthetic=None):
    """``(name, optimizer)`` from our ``.npz`` checkpoint, an original Open-L2O file or an
    original L2O-Scale TensorFlow 1 checkpoint (prefix or directory,
    :mod:`model_free.weights.scale_original`).

    ``expected``: the ``--optimizer`` name the file must hold (``l2o_enhanced`` accepts an
    L2O-DM file); a file of another kind is a :class:`UserError` naming both.
    ``problem``: for an original file, the ``util.get_config`` problem it is run on, whose
    output scale it gets where its preprocessing is the one the original uses there
    (:func:`load_original` with ``strict=False``); None: the legacy 0.01.
    ``synthetic``: the problem family (L2O-Scale's ``batched_instances`` follows it; None:
    the file's own setting, False for a TF1 checkpoint).
    ``path`` may be the name of a catalogue entry (``open-l2o pretrained``), e.g.
    ``load_optimizer("fig7_n2_l2o_dm")``.
    """
    path = catalogue.resolve_load(path, flag="path")
    if expected is not None:
        check_kind(path, expected)
    if _scale_checkpoint(path):
        from model_free.weights import scale_original  # pylint: disable=import-outside-toplevel
        return scale_original.load_checkpoint(path, bool(synthetic), flag="--load")
    name, opt = _load_any(path, output_scale, problem)
    if synthetic is not None and hasattr(opt, "batched_instances"):
        opt.batched_instances = bool(synthetic)
    return name, opt


def _scale_checkpoint(path):
    """Whether ``path`` is a TensorFlow checkpoint (an original L2O-Scale one) rather than
    a file of ours or an original pickle."""
    from model_free.weights import scale_original  # pylint: disable=import-outside-toplevel
    return scale_original.is_checkpoint(path)


def peek_kind(path, flag="--load"):
    """The kind of optimizer a file holds (``l2o_dm``, ``l2o_rnnprop``, ``l2o_scale``,
    ``l2o_swarm``, ``twin_l2o``) read without TensorFlow and without building anything, so
    the command lines check ``--load`` before any work.  A missing, garbage or hostile file
    is a :class:`UserError` naming it.  A TensorFlow checkpoint (prefix or directory) is an
    original L2O-Scale one (``l2o_scale``; its variables are checked when it is loaded)."""
    if _scale_checkpoint(path):
        return "l2o_scale"
    magic = _magic(path, flag)
    if magic == _ZIP:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["__meta__"]))
            kind = _class_kinds().get(meta.get("class"))
        except Exception as err:  # pylint: disable=broad-except
            raise UserError(f"{flag} file {path} is a zip/.npz but not an open-l2o-tf "
                            f"optimizer file (expected __meta__ and w0.. arrays; "
                            f"{type(err).__name__})") from None
        if kind is None:
            raise UserError(f"{flag} file {path}: unknown optimizer class "
                            f"{meta.get('class')!r}")
        return kind
    flat = _flat(safe_load_pickle(path))
    if "input_projection/w" in flat:
        return "l2o_rnnprop"
    if "lstm_1/w_gates" in flat:
        return "l2o_dm"
    raise UserError(f"{path}: neither an L2O-DM nor an L2O-RNNprop weights file "
                    f"(keys {sorted(flat)[:4]}...)")


def check_kind(path, expected, flag="--load"):
    """:func:`peek_kind` and a :class:`UserError` when it is not what ``expected`` (an
    ``--optimizer`` name) can use."""
    kind = peek_kind(path, flag)
    if kind_of(expected) != kind:
        raise UserError(f"{flag} file {path} holds {kind} weights, but "
                        f"--optimizer={expected}; pass --optimizer={kind} or another file")
    return kind


_ZIP = b"PK\x03\x04"


def _magic(path, flag):
    """The first bytes of an optimizer file: ours (a zip) or an original pickle; any other
    file, a missing one or a directory is a :class:`UserError` naming ``flag``."""
    if not os.path.exists(path):
        raise UserError(f"{flag} file {path} does not exist")
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory, expected an optimizer file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != _ZIP and magic[:1] != b"\x80":
        raise UserError(f"{flag} file {path} is neither an open-l2o-tf optimizer (.npz) "
                        f"nor an original Open-L2O pickle (starts with {magic!r})")
    return magic


def _load_any(path, output_scale, problem=None):
    if _magic(path, "--load") != _ZIP:
        return load_original(path, output_scale, problem=problem, strict=False)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = [data[f"w{i}"] for i in range(len(data.files) - 1)]
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise ValueError("no config")
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"--load file {path} is a zip/.npz but not an open-l2o-tf optimizer "
                        f"file (expected __meta__ and w0.. arrays; {type(err).__name__})") \
            from None
    name = _class_kinds().get(meta.get("class"))
    if name is None:
        raise UserError(f"{path}: unknown optimizer class {meta.get('class')!r}")
    cls = registry.get("learned", name)
    config = {k: v for k, v in meta["config"].items() if k not in ("name", "trainable", "dtype")}
    if output_scale is not None and "output_scale" in config:
        config["output_scale"] = output_scale
    try:
        opt = cls(**config)
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: its {meta['class']} config cannot be used ({err})") from None
    if len(arrays) != len(opt.weights):
        raise UserError(f"{path} holds {len(arrays)} arrays, expected {len(opt.weights)}")
    for i, (variable, value) in enumerate(zip(opt.weights, arrays)):
        _assign(variable, value, path, f"w{i}")
    return name, opt
