"""The original-weights loader reads pickles without unpickling: hostile files are refused
with one line, none crashes the interpreter and none runs code.  Each hostile case runs in a
subprocess, so a crash (SIGSEGV) fails the test instead of killing pytest."""
import glob
import hashlib
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from model_free.weights import pretrained
from open_l2o_tf.errors import UserError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PWNED = "/tmp/open_l2o_tf_pwned_safety"


# -- a tiny pickle assembler (protocol 3 opcodes) -------------------------------------------
def _s(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _b(raw):
    return b"B" + struct.pack("<I", len(raw)) + raw


def _i(value):
    return b"J" + struct.pack("<i", value)


def _g(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"


def _array(dtype="f4", shape=(2,), data=None, dtype_state=None, flags=0):
    """Ops pushing one numpy array pickled the way numpy does (reconstruct + setstate)."""
    if data is None:
        data = np.arange(int(np.prod(shape)), dtype=dtype).tobytes()
    if dtype_state is None:
        dtype_state = _tuple(_i(3), _s("<"), b"N", b"N", b"N", _i(-1), _i(-1), _i(flags))
    dtype_ops = _g("numpy", "dtype") + _tuple(_s(dtype), _i(0), _i(1)) + b"R" + dtype_state + b"b"
    return (_g("numpy.core.multiarray", "_reconstruct")
            + _tuple(_g("numpy", "ndarray"), _tuple(_i(0)), b"C\x01b") + b"R"
            + _tuple(_i(1), _tuple(*[_i(d) for d in shape]), dtype_ops, b"\x89", _b(data))
            + b"b")


def _weights(array_ops):
    """``{'lstm_1': {'w_gates': <array>}}``."""
    return (b"\x80\x03}(" + _s("lstm_1") + b"}(" + _s("w_gates") + array_ops + b"uu.")


def _run_loader(path):
    """Loads ``path`` in a fresh interpreter; returns (returncode, stdout + stderr)."""
    code = ("import sys\nfrom model_free.weights import pretrained\nfrom open_l2o_tf.errors import "
            "UserError\ntry:\n    d = pretrained.safe_load_pickle(sys.argv[1])\n"
            "    print('LOADED', {k: sorted(v) for k, v in d.items()})\n"
            "except UserError as e:\n    print('REFUSED', e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, timeout=60,
                          capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_assembler_builds_a_loadable_file(tmp_path):
    """Control: the assembled shape is the one the loader accepts, with the right values."""
    path = tmp_path / "ok.cw.l2l-0"
    path.write_bytes(_weights(_array("f4", (2, 3))))
    weights = pretrained.safe_load_pickle(str(path))
    np.testing.assert_array_equal(weights["lstm_1"]["w_gates"],
                                  np.arange(6, dtype=np.float32).reshape(2, 3))
    assert pickle.loads(path.read_bytes())["lstm_1"]["w_gates"].shape == (2, 3)


HOSTILE = {
    # a structured dtype with an object field: numpy would read the bytes as pointers
    "forged_dtype_object_field": _weights(_array(
        "V8", (1,), b"\x41" * 8,
        dtype_state=_tuple(_i(3), _s("|"), b"N", _tuple(_s("a")),
                           b"}(" + _s("a") + _tuple(_g("numpy", "dtype") + _tuple(
                               _s("O8"), _i(0), _i(1)) + b"R", _i(0)) + b"u",
                           _i(8), _i(1), _i(63)))),
    # a float dtype with forged flags (NEEDS_PYAPI | ITEM_REFCOUNT ...)
    "forged_dtype_flags": _weights(_array("f8", (1,), b"\x41" * 8, flags=63)),
    "object_dtype": _weights(_array("O8", (1,), b"\x41" * 8)),
    "reduce_os_system": (b"\x80\x03" + _g("posix", "system")
                         + _tuple(_s(f"touch {PWNED}")) + b"R."),
    "reduce_builtins_eval": (b"\x80\x03" + _g("builtins", "eval")
                             + _tuple(_s(f"open('{PWNED}', 'w')")) + b"R."),
    "self_referential_dict": b"\x80\x03}q\x00(" + _s("a") + b"h\x00u.",
    "deep_nesting": b"\x80\x03" + b"}(" .join([b""] + [_s("k")] * 200)
                    + b"}" + b"u" * 200 + b".",
    "array_2_pow_40_elements": _weights(_array("f4", (1 << 20, 1 << 20), b"\0" * 16)),
    "array_bytes_short": _weights(_array("f4", (10,), b"\0" * 8)),
    "negative_shape": _weights(_array("f4", (-1,), b"\0" * 4)),
    "non_str_key": b"\x80\x03}(" + _i(1) + _array("f4", (1,)) + b"u.",
    "not_a_dict": b"\x80\x03" + _array("f4", (2,)) + b".",
    "garbage": b"\x80\x03this is not a pickle at all" * 5,
    # 200,000 nested tuples as the argument of an allowed call (a deep == or repr would
    # overflow the C stack / recursion limit)
    "deeply_nested_tuple": (b"\x80\x03" + _g("dill._dill", "_load_type") + b"N"
                            + b"\x85" * 200000 + b"\x85R."),
    "huge_int_shape": _weights(_array("f4", (1,), b"\0" * 4).replace(
        b"(J\x01\x00\x00\x00t", b"(\x8a\x20" + b"\xff" * 32 + b"t")),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_pickle_refused_in_subprocess(tmp_path, case):
    if os.path.exists(PWNED):
        os.remove(PWNED)
    path = tmp_path / f"{case}.cw.l2l-0"
    path.write_bytes(HOSTILE[case])
    code, out = _run_loader(path)
    assert code == 0, f"the loader crashed (exit {code}): {out[-1000:]}"
    assert out.startswith("REFUSED "), out
    assert str(path) in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    assert not os.path.exists(PWNED), "the pickle ran code"


def test_truncated_files_refused(tmp_path, shared_data_dir):
    original = os.path.join(shared_data_dir, "original_optimizers", "dm.cw.l2l-0")
    data = open(original, "rb").read()
    for cut in (1, 100, 5000, len(data) - 1):
        path = tmp_path / f"cut{cut}.cw.l2l-0"
        path.write_bytes(data[:cut])
        code, out = _run_loader(path)
        assert code == 0 and out.startswith("REFUSED ") and str(path) in out, out


def test_truncated_assembled_file_refused(tmp_path):
    data = _weights(_array("f4", (4, 4)))
    for cut in (3, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        with pytest.raises(UserError, match=str(path)):
            pretrained.safe_load_pickle(str(path))


class _Reference(pickle.Unpickler):
    """A restricted unpickler for the *trusted* shared files only: the reference the
    opcode interpreter must agree with."""

    def find_class(self, module, name):
        import collections  # pylint: disable=import-outside-toplevel
        if module == "dill._dill":
            return {"_load_type": lambda n: {"dict": dict}[n],
                    "_import_module": lambda n, safe=False: np,
                    "_get_attr": lambda m, n: np.core.multiarray._reconstruct}[name]
        return {("collections", "defaultdict"): collections.defaultdict,
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}[(module, name)]


def _digest(weights):
    h = hashlib.sha256()
    for module in sorted(weights):
        for var in sorted(weights[module]):
            a = weights[module][var]
            h.update(f"{module}/{var}{a.shape}{a.dtype.str}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_all_original_files_load_as_before(shared_data_dir):
    import io  # pylint: disable=import-outside-toplevel
    files = sorted(glob.glob(os.path.join(shared_data_dir, "original_optimizers", "*l2l-0")))
    assert len(files) == 7
    for path in files:
        ours = pretrained.safe_load_pickle(path)
        with open(path, "rb") as handle:
            reference = _Reference(io.BytesIO(handle.read())).load()
        assert _digest(ours) == _digest(reference), path
        assert all(a.dtype == np.float32 and a.flags.writeable
                   for v in ours.values() for a in v.values())


def test_convert_original_round_trip(tmp_path, shared_data_dir):
    original = os.path.join(shared_data_dir, "original_optimizers", "rnnprop.rp.l2l-0")
    out = tmp_path / "rnnprop.npz"
    proc = subprocess.run([sys.executable, "-m", "run.convert_original", original, str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name_a, a = pretrained.load_optimizer(original)
    name_b, b = pretrained.load_optimizer(str(out))
    assert name_a == name_b == "l2o_rnnprop"
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(UserError, match="holds l2o_rnnprop weights, but "
                                        "--optimizer=l2o_scale"):
        pretrained.load_optimizer(str(out), expected="l2o_scale")


def _original_dm(preprocess, flat=False, seed=0):
    """An L2O-DM weights dict laid out as the original's ``networks.save`` writes it
    (``{module: {var: float32}}``), or flat ``{"module/var": float32}`` (``flat``)."""
    rng = np.random.default_rng(seed)
    width = 2 if preprocess == "log_and_sign" else 1
    shapes = {"lstm_1": {"w_gates": (width + 20, 80), "b_gates": (80,)},
              "lstm_2": {"w_gates": (40, 80), "b_gates": (80,)},
              "linear": {"w": (20, 1), "b": (1,)}}
    nested = {m: {v: rng.normal(size=s).astype(np.float32) for v, s in d.items()}
              for m, d in shapes.items()}
    if flat:
        return {f"{m}/{v}": a for m, d in nested.items() for v, a in d.items()}
    return nested


def test_original_dm_gets_the_original_configuration_of_its_problem(tmp_path):
    """util.get_config: an L2O-DM on raw gradients (rastrigin, lasso, ...) has output scale
    1.0, on LogAndSign (mnist, ...) 0.01; without a problem every file keeps 0.01."""
    raw = tmp_path / "ras.cw.l2l-0"
    raw.write_bytes(pickle.dumps(_original_dm("identity"), protocol=3))
    las = tmp_path / "mnist.cw.l2l-0"
    las.write_bytes(pickle.dumps(_original_dm("log_and_sign"), protocol=3))
    for problem in ("rastrigin", "lasso"):
        name, opt = pretrained.load_original(str(raw), problem=problem)
        assert (name, opt.preprocess, opt.output_scale) == ("l2o_dm", "identity", 1.0)
    _, opt = pretrained.load_original(str(las), problem="mnist")
    assert (opt.preprocess, opt.output_scale) == ("log_and_sign", 0.01)
    assert pretrained.load_original(str(raw))[1].output_scale == 0.01        # legacy default
    with pytest.raises(UserError, match="rastrigin"):
        pretrained.load_original(str(raw), problem="mnist")
    # a command's --load: the problem's scale where the file fits it, else the legacy one
    assert pretrained.load_optimizer(str(raw), problem="rastrigin")[1].output_scale == 1.0
    assert pretrained.load_optimizer(str(las), problem="rastrigin")[1].output_scale == 0.01


def test_convert_original_problem_flag(tmp_path):
    raw = tmp_path / "ras.cw.l2l-0"
    raw.write_bytes(pickle.dumps(_original_dm("identity"), protocol=3))
    out = tmp_path / "ras.npz"
    proc = subprocess.run([sys.executable, "-m", "run.convert_original", "--problem=rastrigin",
                           str(raw), str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "output scale 1, problem rastrigin" in proc.stdout and "note:" not in proc.stdout
    opt = pretrained.load_optimizer(str(out))[1]
    assert (opt.preprocess, opt.output_scale) == ("identity", 1.0)
    # without --problem: 0.01 as before, with a note naming the flag
    name, legacy = pretrained.load_original(str(raw))
    assert "--problem=rastrigin" in pretrained.original_note(name, legacy, None)
    assert pretrained.original_note(name, opt, "rastrigin") is None


def test_flat_name_to_array_pickle_loads(tmp_path):
    """A flat ``{"lstm_1/w_gates": array, ...}`` pickle (the layout the data README
    describes) loads as the nested one does (it was an AttributeError)."""
    nested, flat = tmp_path / "nested.cw.l2l-0", tmp_path / "flat.cw.l2l-0"
    nested.write_bytes(pickle.dumps(_original_dm("log_and_sign"), protocol=3))
    flat.write_bytes(pickle.dumps(_original_dm("log_and_sign", flat=True), protocol=3))
    assert pretrained.peek_kind(str(flat)) == "l2o_dm"
    _, a = pretrained.load_original(str(nested))
    _, b = pretrained.load_original(str(flat))
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    odd = tmp_path / "odd.cw.l2l-0"
    odd.write_bytes(pickle.dumps({"w": np.zeros(3, np.float32)}, protocol=3))
    with pytest.raises(UserError, match="neither an L2O-DM nor an L2O-RNNprop"):
        pretrained.load_original(str(odd))


# ``dill.dumps(defaultdict(dict, linear={"w": np.arange(3, dtype=np.float32)}))`` by dill
# 0.4.1 / numpy 2.4 (what the original's networks.save writes today): each array is ONE
# call of dill._dill._create_array(_reconstruct, (ndarray, (0,), b"b"), state, None)
DILL_041_FILE = bytes.fromhex(
    "80049506010000000000008c0b636f6c6c656374696f6e73948c0b64656661756c74646963749493"
    "948c0a64696c6c2e5f64696c6c948c0a5f6c6f61645f747970659493948c04646963749485945294"
    "859452948c066c696e656172947d948c01779468038c0d5f6372656174655f617272617994939428"
    "8c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e73747275637494"
    "93948c056e756d7079948c076e6461727261799493944b008594430162948794284b014b03859468"
    "138c0564747970659493948c02663494898887945294284b038c013c944e4e4e4affffffff4affff"
    "ffff4b0074946289430c000000000000803f000000409474944e7494529473732e")


def _create_array_ops(reconstruct, state_ops, npdict=b"N"):
    """A hand-made ``_create_array`` call (protocol 3 opcodes) as a current dill writes it."""
    return (_g("dill._dill", "_create_array")
            + _tuple(reconstruct, _tuple(_g("numpy", "ndarray"), _tuple(_i(0)), b"C\x01b"),
                     state_ops, npdict) + b"R")


def _array_state(dtype="f4", shape=(2,), data=None):
    if data is None:
        data = np.arange(int(np.prod(shape)), dtype=dtype).tobytes()
    dtype_ops = (_g("numpy", "dtype") + _tuple(_s(dtype), _i(0), _i(1)) + b"R"
                 + _tuple(_i(3), _s("<"), b"N", b"N", b"N", _i(-1), _i(-1), _i(0)) + b"b")
    return _tuple(_i(1), _tuple(*[_i(d) for d in shape]), dtype_ops, b"\x89", _b(data))


def test_a_file_written_by_current_dill_loads(tmp_path):
    """The original code run today (dill 0.4) pickles arrays through
    dill._dill._create_array; that one reconstructor is read, for plain numeric arrays."""
    path = tmp_path / "dill.cw.l2l-0"
    path.write_bytes(DILL_041_FILE)
    weights = pretrained.safe_load_pickle(str(path))
    np.testing.assert_array_equal(weights["linear"]["w"], np.arange(3, dtype=np.float32))
    reconstruct = _g("numpy._core.multiarray", "_reconstruct")
    path.write_bytes(_weights(_create_array_ops(reconstruct, _array_state("f8", (2, 2)))))
    assert pretrained.safe_load_pickle(str(path))["lstm_1"]["w_gates"].shape == (2, 2)
    try:
        import dill  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    path.write_bytes(dill.dumps({"lstm_1": {"w_gates": np.ones((3, 4), np.float32)}}))
    np.testing.assert_array_equal(pretrained.safe_load_pickle(str(path))["lstm_1"]["w_gates"],
                                  np.ones((3, 4), np.float32))


@pytest.mark.parametrize("case", ["object_dtype", "npdict", "other_callable", "bad_state",
                                  "extra_argument"])
def test_create_array_refuses_anything_but_a_plain_numeric_array(tmp_path, case):
    reconstruct = _g("numpy._core.multiarray", "_reconstruct")
    ops = {
        "object_dtype": _create_array_ops(reconstruct, _array_state("O8", (1,), b"A" * 8)),
        "npdict": _create_array_ops(reconstruct, _array_state(),
                                    b"}(" + _s("__class__") + _s("x") + b"u"),
        "other_callable": _create_array_ops(_g("posix", "system"), _array_state()),
        "bad_state": _create_array_ops(reconstruct, _tuple(_i(1), _tuple(_i(4)))),
        "extra_argument": (_g("dill._dill", "_create_array") + _tuple(
            reconstruct, _tuple(_g("numpy", "ndarray"), _tuple(_i(0)), b"C\x01b"),
            _array_state(), b"N", b"N") + b"R"),
    }[case]
    path = tmp_path / f"{case}.cw.l2l-0"
    path.write_bytes(_weights(ops))
    with pytest.raises(UserError, match="refus"):
        pretrained.safe_load_pickle(str(path))
