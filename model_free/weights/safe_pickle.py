"""A pickle reader that never unpickles: the original Open-L2O weights files (dill pickles of
``{module: {var: float32 ndarray}}``) read by walking their opcodes.

``pickletools.genops`` decodes the opcodes without executing anything; a small interpreter
understands only the shapes those files use -- nested dicts with ``str`` keys (plain,
``defaultdict`` of dill's ``_load_type('dict')``), and numpy arrays pickled the usual way
(``_reconstruct(ndarray, (0,), b'b')`` followed by ``__setstate__((1, shape, dtype, fortran,
raw bytes))``, or the two in one call of a current dill's ``_create_array``) whose dtype is
one of a short list of numeric dtypes with default flags.  Everything is kept as inert
records; sizes, nesting depth and cycles are checked, and only then are arrays built with
``np.frombuffer``.  No Python or numpy object is constructed from the file's instructions.
"""
import os
import pickletools

import numpy as np

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
