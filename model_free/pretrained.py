"""Loading and saving learned optimizers, including the original Open-L2O pretrained ones.

The original release ships L2O-DM (``*.cw.l2l-0``) and L2O-RNNprop (``*.rp.l2l-0``) weights
as dill pickles of ``{module: {var: float32 ndarray}}`` (spec model_free §12.3).  They are
read with :func:`safe_load_pickle`, a restricted unpickler that resolves only the handful of
globals such a file needs (``collections.defaultdict``, ``numpy.ndarray``, ``numpy.dtype``,
numpy's ``_reconstruct`` and dill's ``_load_type('dict')``, ``_import_module``/``_get_attr``
limited to that numpy module) and refuses anything else, so a malicious file cannot run
code.  Our own optimizers are saved as ``.npz`` weights + a JSON config
(:func:`save_optimizer`), written atomically.
"""
import collections
import io
import json
import os
import pickle

import numpy as np

from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError

_NUMPY_MODULES = ("numpy.core._multiarray_umath", "numpy._core._multiarray_umath",
                  "numpy.core.multiarray", "numpy._core.multiarray")


class _SafeModule:
    """Stands for the one numpy module dill references; only exposes ``_reconstruct``."""

    def __init__(self, name):
        self.name = name


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # pylint: disable=import-outside-toplevel
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn  # pylint: disable=import-outside-toplevel
    return fn


def _load_type(name):
    types = {"dict": dict, "list": list, "tuple": tuple}
    if name not in types:
        raise pickle.UnpicklingError(f"refused type {name!r}")
    return types[name]


def _import_module(name, safe=False):
    del safe
    if name not in _NUMPY_MODULES:
        raise pickle.UnpicklingError(f"refused module {name!r}")
    return _SafeModule(name)


def _get_attr(module, name):
    if not isinstance(module, _SafeModule) or name != "_reconstruct":
        raise pickle.UnpicklingError(f"refused attribute {name!r}")
    return _reconstruct()


class _Unpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "defaultdict"): collections.defaultdict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("dill._dill", "_load_type"): _load_type,
        ("dill._dill", "_import_module"): _import_module,
        ("dill._dill", "_get_attr"): _get_attr,
        ("builtins", "dict"): dict,
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return _reconstruct()
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def safe_load_pickle(path):
    """Reads a pickle of nested dicts of numpy arrays; refuses anything else."""
    if not os.path.exists(path):
        raise UserError(f"optimizer file {path} does not exist")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        obj = _Unpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise UserError(f"{path}: not a plain weights pickle ({err}); refusing to load it") \
            from None
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{path} cannot be read as a weights pickle "
                        f"({type(err).__name__})") from None
    return _check_arrays(obj, path)


def _check_arrays(obj, path, prefix=""):
    if isinstance(obj, dict):
        return {str(k): _check_arrays(v, path, f"{prefix}{k}/") for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return obj
    raise UserError(f"{path}: entry {prefix.rstrip('/')} is {type(obj).__name__}, expected "
                    f"float arrays only")


def _flat(weights):
    out = {}
    for module, variables in weights.items():
        for name, value in variables.items():
            out[f"{module}/{name}"] = value
    return out


def _assign(variable, value, path, key):
    if tuple(variable.shape) != tuple(value.shape):
        raise UserError(f"{path}: {key} has shape {value.shape}, our optimizer expects "
                        f"{tuple(variable.shape)}")
    variable.assign(value.astype(np.float32))


def load_original(path, output_scale=None):
    """``(name, optimizer)`` from an original Open-L2O file (DM or RNNprop)."""
    from model_free.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from model_free.rnnprop import L2ORNNprop  # pylint: disable=import-outside-toplevel
    flat = _flat(safe_load_pickle(path))
    if "input_projection/w" in flat:
        opt = L2ORNNprop(output_scale=0.01 if output_scale is None else output_scale)
        pairs = [(opt.input_projection.kernel, "input_projection/w"),
                 (opt.input_projection.bias, "input_projection/b")]
        name = "l2o_rnnprop"
    elif "lstm_1/w_gates" in flat:
        in_dim = flat["lstm_1/w_gates"].shape[0] - flat["lstm_1/w_gates"].shape[1] // 4
        opt = L2ODM(preprocess="log_and_sign" if in_dim == 2 else "identity",
                    output_scale=0.01 if output_scale is None else output_scale)
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


def save_optimizer(opt, path):
    """Writes ``path`` (``.npz`` of weights with the class and config inside), atomically."""
    arrays = {f"w{i}": v.numpy() for i, v in enumerate(opt.weights)}
    meta = json.dumps({"class": type(opt).__name__, "config": opt.get_config()})
    olog._atomic_write(path, lambda h: np.savez(h, __meta__=np.array(meta), **arrays), "wb")  # pylint: disable=protected-access


def load_optimizer(path, output_scale=None):
    """``(name, optimizer)`` from our ``.npz`` checkpoint or an original Open-L2O file."""
    from model_free.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from model_free.rnnprop import L2ORNNprop  # pylint: disable=import-outside-toplevel
    if not os.path.exists(path):
        raise UserError(f"--load file {path} does not exist")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        return load_original(path, output_scale)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = [data[f"w{i}"] for i in range(len(data.files) - 1)]
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{path} is not an open-l2o-tf optimizer file "
                        f"({type(err).__name__})") from None
    from model_free.scale import L2OScale  # pylint: disable=import-outside-toplevel
    from model_free.swarm import L2OSwarm  # pylint: disable=import-outside-toplevel
    from model_free.twin import TwinL2O  # pylint: disable=import-outside-toplevel
    classes = {"L2ODM": (L2ODM, "l2o_dm"), "L2ORNNprop": (L2ORNNprop, "l2o_rnnprop"),
               "L2OScale": (L2OScale, "l2o_scale"), "L2OSwarm": (L2OSwarm, "l2o_swarm"),
               "TwinL2O": (TwinL2O, "twin_l2o")}
    if meta.get("class") not in classes:
        raise UserError(f"{path}: unknown optimizer class {meta.get('class')!r}")
    cls, name = classes[meta["class"]]
    config = {k: v for k, v in meta["config"].items() if k not in ("name", "trainable", "dtype")}
    if output_scale is not None and "output_scale" in config:
        config["output_scale"] = output_scale
    opt = cls(**config)
    if len(arrays) != len(opt.weights):
        raise UserError(f"{path} holds {len(arrays)} arrays, expected {len(opt.weights)}")
    for i, (variable, value) in enumerate(zip(opt.weights, arrays)):
        _assign(variable, value, path, f"w{i}")
    return name, opt
