"""The catalogue of trained artefacts shipped with the package (``open-l2o pretrained``).

Each entry of ``index.json`` (in this folder) names one trained file: a learned optimizer
or an unrolled model, the command that made it, its budget, meta seed, data seed, setting,
training seconds, sha256 and size, and the record cell it belongs to (figure, setting,
method, the value the record holds).  An entry whose file is too large for the package
(> 1 MB) has ``file: null`` and says ``produce``: the command that makes it.

Names are accepted wherever a path to a trained file is: ``--load=fig7_n2_l2o_dm`` in the
command lines, and :func:`path` / :func:`resolve_load` from Python::

    from open_l2o_tf import catalogue
    catalogue.path("fig7_n2_l2o_dm")        # the installed .npz file

An entry tied to a data set (the Fig. 6 Lasso entries: an unrolled model is built on its
matrix A, a learned optimizer's cell is measured on its test split) has ``data``: the
``make_data`` command that regenerates it exactly, its ``data_seed``, ``data_digest`` (of
A: :func:`array_digest`) and ``test_digest`` (of the record's test split);
:func:`check_data` refuses a folder holding other data.

The environment variable ``OPEN_L2O_CATALOGUE`` points at another ``index.json`` (its files
relative to that index's folder), e.g. a user's own catalogue.  This module is data only:
it imports no family and no TensorFlow.
"""
import difflib
import hashlib
import json
import os

from open_l2o_tf.errors import UserError

ENV = "OPEN_L2O_CATALOGUE"
_HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BYTES = 1 << 20      # an entry's file in the package: at most 1 MB


def index_file():
    """The index in use: ``$OPEN_L2O_CATALOGUE`` if set, else the package's own."""
    return os.environ.get(ENV) or os.path.join(_HERE, "index.json")


def load_index(index=None):
    """The index (a dict with ``entries``, a list of dicts), checked for its keys."""
    index = index or index_file()
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise UserError(f"catalogue index {index}: cannot read it ({err.strerror})") from None
    except ValueError as err:
        raise UserError(f"catalogue index {index}: not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise UserError(f"catalogue index {index}: expected an object with a list 'entries'")
    for e in data["entries"]:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise UserError(f"catalogue index {index}: an entry without a 'name'")
    return data


def entries(index=None):
    """The entries of the index, in its order."""
    return load_index(index)["entries"]


def names(index=None):
    """The entries' names."""
    return [e["name"] for e in entries(index)]


def close_names(name, index=None, n=4):
    """Names of the catalogue close to ``name`` (for an error message)."""
    all_names = names(index)
    close = difflib.get_close_matches(name, all_names, n=n, cutoff=0.5)
    return close or [m for m in all_names if name.lower() in m.lower()][:n]


def entry(name, index=None):
    """The entry called ``name``; an unknown name is a :class:`UserError` listing close
    names."""
    for e in entries(index):
        if e["name"] == name:
            return e
    close = close_names(name, index)
    hint = (f"close names: {', '.join(close)}" if close else
            "see open-l2o pretrained for the list")
    raise UserError(f"no catalogue entry named {name!r} ({hint})")


def path(name, index=None, verify=True):
    """The local file of entry ``name`` (checked against its sha256 when ``verify``).  An
    entry without a file (too large to ship) is a :class:`UserError` giving its command."""
    index = index or index_file()
    e = entry(name, index)
    if not e.get("file"):
        raise UserError(f"catalogue entry {name!r} ships no file (too large); produce it "
                        f"with: {e.get('produce') or e.get('command')}")
    file = os.path.join(os.path.dirname(os.path.abspath(index)), e["file"])
    if not os.path.isfile(file):
        raise UserError(f"catalogue entry {name!r}: its file {file} is missing")
    if verify and e.get("sha256") and sha256(file) != e["sha256"]:
        raise UserError(f"catalogue entry {name!r}: {file} does not match its sha256 "
                        f"{e['sha256'][:12]}... (a changed or truncated file)")
    return file


def looks_like_name(value):
    """Whether ``value`` can only be a catalogue name (no folder, no file extension)."""
    return (os.sep not in value and "/" not in value and "." not in value
            and not os.path.exists(value))


def resolve_load(value, index=None, flag="--load"):
    """``--load`` / ``load=``: an existing path is returned unchanged, a catalogue name
    becomes its file; anything else is returned for the caller's file check, except a bare
    name (no folder, no extension) the catalogue lacks: a :class:`UserError` listing close
    names."""
    if value is None or os.path.exists(value):
        return value
    if value in names(index):
        return path(value, index)
    if looks_like_name(value):
        close = close_names(value, index)
        hint = (f"close catalogue names: {', '.join(close)}" if close else
                "see open-l2o pretrained for the catalogue names")
        named = f"{flag}={value}: " if flag else ""
        raise UserError(f"{named}neither a file nor a catalogue entry ({hint})")
    return value


def sha256(file):
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_value(cell, reproduction_json):
    """The record's value of ``cell`` (figure, setting, method) in ``reproduction_json``
    (docs/reproduction.json of a checkout), or None when the file or the row is absent."""
    if not reproduction_json or not os.path.isfile(reproduction_json):
        return None
    try:
        with open(reproduction_json, encoding="utf-8") as f:
            rows = json.load(f).get("rows", [])
    except (OSError, ValueError):
        return None
    for row in rows:
        if (str(row.get("figure")) == str(cell["figure"]) and row.get("setting") == cell["setting"]
                and row.get("method") == cell["method"]):
            return row.get("ours")
    return None


def array_digest(array):
    """``sha256:...`` of a matrix as float32 (its shape, then its little-endian bytes): the
    same on every machine and for every ``.npy`` header."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    values = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    digest = hashlib.sha256(repr(tuple(values.shape)).encode() + b"\0" + values.tobytes())
    return "sha256:" + digest.hexdigest()


def _read_matrix(file, flag, hint):
    import numpy as np  # pylint: disable=import-outside-toplevel
    if not os.path.isfile(file):
        raise UserError(f"{flag}: {file} is missing; {hint}")
    try:
        array = np.load(file, allow_pickle=False)
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{flag}: {file} is not a readable .npy file "
                        f"({type(err).__name__}); {hint}") from None
    return array


def check_data(e, data_dir, flag="--data_dir"):
    """Checks that ``data_dir`` holds the data entry ``e`` is tied to (``e["data"]``): its
    A (``data_digest``) and the record's test split (``test_digest``); else one
    :class:`UserError` naming the flag, what differs and the command that makes the data.
    An entry without ``data`` accepts nothing here."""
    data = e.get("data")
    if not data:
        raise UserError(f"{flag} applies to an entry tied to a data set (Fig. 6), not "
                        f"{e['name']!r}")
    hint = f"make its data with: {data['make_data']}"
    if not os.path.isdir(data_dir):
        raise UserError(f"{flag} {data_dir} is not a directory; {hint}")
    A = _read_matrix(os.path.join(data_dir, "A.npy"), flag, hint)
    if array_digest(A) != data["data_digest"]:
        raise UserError(f"{flag} {data_dir}: its A.npy is not the matrix {e['name']!r} was "
                        f"trained on (digest {array_digest(A)[7:19]}..., expected "
                        f"{data['data_digest'][7:19]}...); {hint}")
    if data.get("test_digest"):
        test = _read_matrix(os.path.join(data_dir, "test_data.npy"), flag, hint)
        if array_digest(test) != data["test_digest"]:
            raise UserError(f"{flag} {data_dir}: the same A but another test split (a "
                            f"--test_seed draw?) than the record cell's; {hint}")
