"""Loading and saving learned optimizers, including the original Open-L2O pretrained ones.

The original release ships L2O-DM (``*.cw.l2l-0``) and L2O-RNNprop (``*.rp.l2l-0``) weights
as dill pickles of ``{module: {var: float32 ndarray}}`` (spec model_free §12.3).  They are
read by :func:`safe_load_pickle`, which never unpickles: a small interpreter walks the
opcodes (``pickletools.genops`` decodes them without executing anything) and understands
only the shapes those files use -- nested dicts with ``str`` keys (plain, ``defaultdict``
of dill's ``_load_type('dict')``), and numpy arrays pickled the usual way
(``_reconstruct(ndarray, (0,), b'b')`` followed by ``__setstate__((1, shape, dtype,
fortran, raw bytes))``, or the two in one call of a current dill's ``_create_array``,
which the original code writes today) whose dtype is one of a short list of numeric dtypes
with default flags.  Everything is kept as inert records (shape, dtype name, the raw
bytes); sizes (elements x itemsize == bytes present, a total cap) and nesting depth are
checked, cycles refused, and only then are arrays built with ``np.frombuffer``.  No Python
or numpy object is constructed from the file's instructions, so a hostile file can neither
run code nor make numpy dereference forged pointers.  A flat ``{"module/var": array}``
dict is read as the nested one.  ``python -m run.convert_original [--problem=P] IN
OUT.npz`` converts an original file once into our ``.npz`` format, with the original's
configuration of the problem it was trained for (:func:`load_original`).

Our own optimizers are saved as ``.npz`` weights + a JSON config (:func:`save_optimizer`),
written atomically and read back with ``allow_pickle=False``.
"""
import json
import os
import pickletools

import numpy as np

from open_l2o_tf import catalogue
from open_l2o_tf import logging as olog
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError

_NUMPY_MODULES = ("numpy.core._multiarray_umath", "numpy._core._multiarray_umath",
                  "numpy.core.multiarray", "numpy._core.multiarray")
# numeric dtypes only (no object, void, string or structured dtypes)
_DTYPES = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")
MAX_TOTAL_BYTES = 1 << 30      # 1 GiB of array data per file
MAX_DEPTH = 8                  # dict nesting
_ALLOWED_GLOBALS = {("collections", "defaultdict"), ("collections", "OrderedDict"),
                    ("builtins", "dict"), ("numpy", "ndarray"), ("numpy", "dtype"),
                    ("dill._dill", "_load_type"), ("dill._dill", "_import_module"),
                    ("dill._dill", "_get_attr"), ("dill._dill", "_create_array")}
_ALLOWED_GLOBALS |= {(module, "_reconstruct") for module in _NUMPY_MODULES}


class _Refused(Exception):
    """The file is not one of the shapes we read (message: what was found)."""


class _Mark:
    pass


_MARK = _Mark()


class _Global:
    def __init__(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _Refused(f"refused global {module[:60]}.{name[:60]}")
        self.key = (module, name)


class _Token:
    """An inert stand-in for a harmless callable result (dict type, numpy module, ...)."""

    def __init__(self, kind, value=None):
        self.kind, self.value = kind, value


class _Dict:
    def __init__(self):
        self.items = {}


class _DType:
    def __init__(self, name):
        if name not in _DTYPES:
            raise _Refused(f"refused dtype {_short(name)} (only {', '.join(_DTYPES)})")
        self.name, self.order, self.state_set = name, None, False


class _Array:
    def __init__(self):
        self.shape = self.dtype = self.fortran = self.data = None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value):
    """A short description of a value from the file (no deep repr of hostile nesting)."""
    if isinstance(value, (str, bytes)):
        return repr(value[:40])
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    if _is_int(value):
        return str(value) if abs(value) < 10 ** 12 else "a huge int"
    return type(value).__name__.lstrip("_")


def _is_reconstruct(func):
    """Whether ``func`` (a record of the file) is numpy's ``_reconstruct`` (a global of a
    numpy module, or dill's ``_get_attr`` of one)."""
    return ((isinstance(func, _Global) and func.key[1] == "_reconstruct"
             and func.key[0] in _NUMPY_MODULES)
            or (isinstance(func, _Token) and func.kind == "reconstruct"))


def _reduce(func, args):
    if not isinstance(args, tuple):
        raise _Refused("REDUCE without an argument tuple")
    key = func.key if isinstance(func, _Global) else (func.kind if isinstance(func, _Token)
                                                       else None)
    if key == ("dill._dill", "_load_type"):
        if len(args) != 1 or not isinstance(args[0], str) or args[0] != "dict":
            raise _Refused(f"refused dill type {_short(args)}")
        return _Token("dict_type")
    if key in (("collections", "defaultdict"), ("collections", "OrderedDict"),
               ("builtins", "dict")) or (isinstance(func, _Token) and func.kind == "dict_type"):
        if not all(isinstance(a, (_Token, type(None))) for a in args) or len(args) > 1:
            raise _Refused(f"refused arguments to {key}")
        return _Dict()
    if key == ("dill._dill", "_import_module"):
        if len(args) not in (1, 2) or not isinstance(args[0], str) \
                or args[0] not in _NUMPY_MODULES:
            raise _Refused(f"refused module {_short(args)}")
        return _Token("numpy_module")
    if key == ("dill._dill", "_get_attr"):
        if (len(args) != 2 or not isinstance(args[0], _Token)
                or args[0].kind != "numpy_module" or not isinstance(args[1], str)
                or args[1] != "_reconstruct"):
            raise _Refused("refused attribute lookup")
        return _Token("reconstruct")
    if key == "reconstruct" or (isinstance(key, tuple) and key[1] == "_reconstruct"):
        if (len(args) != 3 or not isinstance(args[0], _Global)
                or args[0].key != ("numpy", "ndarray") or not isinstance(args[1], tuple)
                or len(args[1]) != 1 or args[1][0] != 0 or not _is_int(args[1][0])
                or not isinstance(args[2], (bytes, str)) or args[2] not in (b"b", "b")):
            raise _Refused("refused array reconstruction arguments")
        return _Array()
    if key == ("dill._dill", "_create_array"):
        # a current dill's plain ndarray: _create_array(_reconstruct, (ndarray, (0,), b'b'),
        # state, None), i.e. _reconstruct(*args).__setstate__(state): the same checks as
        # the two steps pickled apart; no __dict__ (npdict) and no other callable
        if (len(args) not in (3, 4) or (len(args) == 4 and args[3] is not None)
                or not isinstance(args[1], tuple) or not _is_reconstruct(args[0])):
            raise _Refused("refused dill array arguments (only _reconstruct of a plain "
                           "ndarray, no __dict__)")
        return _build(_reduce(args[0], args[1]), args[2])
    if key == ("numpy", "dtype"):
        if (len(args) != 3 or not isinstance(args[0], str)
                or not all(isinstance(a, (int, bool)) for a in args[1:])
                or args[1:] not in ((0, 1), (False, True))):
            raise _Refused(f"refused dtype arguments {_short(args)}")
        return _DType(args[0])
    raise _Refused(f"refused call of {key}")


def _build(obj, state):
    if isinstance(obj, _DType):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags)
        if (not isinstance(state, tuple) or len(state) != 8
                or not all(_is_int(state[i]) for i in (0, 5, 6, 7))
                or state[0] != 3 or not isinstance(state[1], str)
                or state[1] not in ("<", ">", "|", "=") or state[2:5] != (None, None, None)
                or state[5:7] != (-1, -1) or state[7] != 0 or obj.state_set):
            raise _Refused("refused dtype state (only plain numeric dtypes, default flags)")
        obj.order, obj.state_set = state[1], True
        return obj
    if isinstance(obj, _Array):
        if (not isinstance(state, tuple) or len(state) != 5 or state[0] != 1
                or not isinstance(state[1], tuple) or not isinstance(state[2], _DType)
                or not isinstance(state[3], bool) or not isinstance(state[4], bytes)
                or obj.data is not None):
            raise _Refused("refused array state")
        shape, dtype, data = state[1], state[2], state[4]
        if len(shape) > 32 or not all(_is_int(d) and d >= 0 for d in shape):
            raise _Refused(f"refused array shape {_short(shape)}")
        count = 1
        for d in shape:
            count *= d
        itemsize = int(dtype.name[1:])
        if count * itemsize != len(data):
            raise _Refused(f"array of shape {shape} and dtype {dtype.name} needs "
                           f"{count * itemsize} bytes, the file has {len(data)}")
        obj.shape, obj.dtype, obj.fortran, obj.data = shape, dtype, state[3], data
        return obj
    raise _Refused("refused BUILD on a non-array")


_SIMPLE = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_PUSH_ARG = ("BININT", "BININT1", "BININT2", "LONG1", "BINUNICODE", "SHORT_BINUNICODE",
             "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BINFLOAT")
_PUT = ("BINPUT", "LONG_BINPUT", "PUT")
_GET = ("BINGET", "LONG_BINGET", "GET")


def _interpret(data):
    """Runs the opcodes of ``data`` over inert records; returns the top-level record."""
    stack, memo, total = [], {}, 0

    def pop_mark():
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise _Refused("MARK missing")

    def pop():
        if not stack or stack[-1] is _MARK:
            raise _Refused("stack underflow")
        return stack.pop()

    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise _Refused("malformed stack at STOP")
            return stack[0]
        if name in _SIMPLE:
            stack.append(_SIMPLE[name])
        elif name in _PUSH_ARG:
            if isinstance(arg, bytes):
                total += len(arg)
                if total > MAX_TOTAL_BYTES:
                    raise _Refused(f"more than {MAX_TOTAL_BYTES} bytes of data")
            stack.append(arg)
        elif name == "MARK":
            stack.append(_MARK)
        elif name in _PUT:
            if not stack:
                raise _Refused("PUT on an empty stack")
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            if not stack:
                raise _Refused("MEMOIZE on an empty stack")
            memo[len(memo)] = stack[-1]
        elif name in _GET:
            if arg not in memo:
                raise _Refused(f"memo key {arg} missing")
            stack.append(memo[arg])
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(_Global(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = pop(), pop()
            if not isinstance(module, str) or not isinstance(attr, str):
                raise _Refused("STACK_GLOBAL without strings")
            stack.append(_Global(module, attr))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif name == "EMPTY_DICT":
            stack.append(_Dict())
        elif name in ("SETITEM", "SETITEMS"):
            items = [pop(), pop()][::-1] if name == "SETITEM" else pop_mark()
            if len(items) % 2:
                raise _Refused("odd SETITEMS")
            target = pop()
            if not isinstance(target, _Dict):
                raise _Refused("SETITEMS on a non-dict")
            for key, value in zip(items[::2], items[1::2]):
                if not isinstance(key, str):
                    raise _Refused(f"dict key of type {type(key).__name__}, expected str")
                target.items[key] = value
            stack.append(target)
        elif name == "REDUCE":
            args = pop()
            stack.append(_reduce(pop(), args))
        elif name == "BUILD":
            state = pop()
            stack.append(_build(pop(), state))
        else:
            raise _Refused(f"refused opcode {name}")
    raise _Refused("no STOP opcode")


def _materialise(record, where, depth, seen):
    if isinstance(record, _Dict):
        if depth > MAX_DEPTH:
            raise _Refused(f"dicts nested deeper than {MAX_DEPTH} at {where or 'top'}")
        if id(record) in seen:
            raise _Refused(f"a dict that contains itself at {where or 'top'}")
        seen = seen | {id(record)}
        return {k: _materialise(v, f"{where}{k}/", depth + 1, seen)
                for k, v in record.items.items()}
    if isinstance(record, _Array):
        if record.data is None:
            raise _Refused(f"array without data at {where.rstrip('/')}")
        dtype = np.dtype(record.dtype.order.replace("=", "<") + record.dtype.name
                         if record.dtype.order else record.dtype.name)
        flat = np.frombuffer(record.data, dtype=dtype)
        return flat.reshape(record.shape, order="F" if record.fortran else "C").copy()
    raise _Refused(f"entry {where.rstrip('/') or 'top'} is {type(record).__name__.lstrip('_')}"
                   f", expected a dict of arrays")


def safe_load_pickle(path):
    """Reads an original Open-L2O weights pickle into nested dicts of float arrays without
    unpickling anything (see the module docstring); refuses every other shape."""
    if not os.path.exists(path):
        raise UserError(f"optimizer file {path} does not exist")
    if os.path.isdir(path):
        raise UserError(f"optimizer file {path} is a directory, expected a file")
    if os.path.getsize(path) > MAX_TOTAL_BYTES + (1 << 20):
        raise UserError(f"{path} is larger than {MAX_TOTAL_BYTES} bytes; refusing to read it")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        obj = _materialise(_interpret(data), "", 0, frozenset())
    except _Refused as err:
        raise UserError(f"{path}: not an Open-L2O weights pickle ({err}); refusing to load "
                        "it") from None
    except RecursionError:
        raise UserError(f"{path}: not an Open-L2O weights pickle (nested too deeply); refusing "
                        "to load it") from None
    except (ValueError, KeyError, IndexError) as err:   # genops: truncated / bad opcode
        raise UserError(f"{path}: not a readable pickle (found: {err}); expected an original "
                        "Open-L2O weights file (*.cw.l2l-0 / *.rp.l2l-0) or our .npz") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: top level is not a dict of weights")
    return _check_arrays(obj, path)


def _check_arrays(obj, path, prefix=""):
    if isinstance(obj, dict):
        return {str(k): _check_arrays(v, path, f"{prefix}{k}/") for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return obj
    raise UserError(f"{path}: entry {prefix.rstrip('/')} is "
                    f"{getattr(obj, 'dtype', type(obj).__name__)}, expected float arrays only")


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
    from model_free.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from model_free.rnnprop import L2ORNNprop  # pylint: disable=import-outside-toplevel
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
    :mod:`model_free.scale_original`).

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
        from model_free import scale_original  # pylint: disable=import-outside-toplevel
        return scale_original.load_checkpoint(path, bool(synthetic), flag="--load")
    name, opt = _load_any(path, output_scale, problem)
    if synthetic is not None and hasattr(opt, "batched_instances"):
        opt.batched_instances = bool(synthetic)
    return name, opt


def _scale_checkpoint(path):
    """Whether ``path`` is a TensorFlow checkpoint (an original L2O-Scale one) rather than
    a file of ours or an original pickle."""
    from model_free import scale_original  # pylint: disable=import-outside-toplevel
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
