"""Names -> code: the mechanism only.  Each family declares its own entries.

Four tables, one per kind of thing a command line or ``results.json`` names:

* ``"model"``: unrolled networks (model-based L2O, :class:`model_based.base.UnrolledModel`)
* ``"learned"``: learned update rules (model-free L2O)
* ``"classic"``: classic baselines
* ``"optimizee"``: problem families

A family registers its names when it is imported (``model_based/__init__.py``,
``model_free/__init__.py``, ``open_l2o_tf/classic/__init__.py``,
``open_l2o_tf/optimizees/__init__.py``); a researcher's own module does the same and is
loaded on the command lines with ``--import=my_pkg.my_module``::

    from open_l2o_tf import registry
    registry.register("model", "my_lista", "my_pkg.my_module:MyLista")   # or the class

A target is ``"module:attribute"`` (imported lazily on first :func:`get`, so registering
is free of import cost and of import cycles) or the object itself.  Keyword arguments of
:func:`register` are the entry's ``info`` (e.g. ``interface="update"`` and
``coordinatewise=True`` for a learned optimizer); the contract tests
(``tests/test_contracts.py``) read them to know what to check.

This module knows no family: it never names a model or optimizer module.
"""
import importlib

from open_l2o_tf.errors import UserError

KINDS = ("model", "learned", "classic", "optimizee")

# kind -> {name: "module:attribute"}; live tables (read-only for callers: use register)
TABLES = {kind: {} for kind in KINDS}
MODELS, LEARNED, CLASSIC, OPTIMIZEES = (TABLES[k] for k in KINDS)
_INFO = {kind: {} for kind in KINDS}
_OBJECTS = {kind: {} for kind in KINDS}   # objects registered directly (no import needed)


def _check_kind(kind):
    if kind not in TABLES:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")


def register(kind, name, target, **info):
    """Registers ``target`` (``"module:attribute"`` or the object) as ``name`` in ``kind``.

    Re-registering a name with the same target is a no-op (modules may be imported twice
    under pytest); another target for a taken name raises ``ValueError``.  Returns
    ``target`` so it can be used as a class decorator's last step.
    """
    _check_kind(kind)
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(f"registry names are identifiers (letters, digits, _), got {name!r}")
    if isinstance(target, str):
        if target.count(":") != 1:
            raise ValueError(f"target must be 'module:attribute', got {target!r}")
        spec, obj = target, None
    else:
        spec, obj = f"{target.__module__}:{target.__qualname__}", target
    old = TABLES[kind].get(name)
    if old is not None and old != spec:
        raise ValueError(f"{kind} {name!r} is already registered as {old}, not {spec}")
    TABLES[kind][name] = spec
    _INFO[kind][name] = dict(info)
    if obj is not None:
        _OBJECTS[kind][name] = obj
    return target


def unregister(kind, name):
    """Removes an entry (tests)."""
    _check_kind(kind)
    for table in (TABLES[kind], _INFO[kind], _OBJECTS[kind]):
        table.pop(name, None)


def get(kind, name):
    """Returns the object registered as ``name`` in table ``kind``.

    Raises :class:`UserError` naming the allowed values when the name is unknown.
    """
    _check_kind(kind)
    table = TABLES[kind]
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}; expected one of {sorted(table)}")
    if name in _OBJECTS[kind]:
        return _OBJECTS[kind][name]
    module_name, attribute = table[name].split(":")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def info(kind, name):
    """The keyword arguments the entry was registered with (a copy)."""
    _check_kind(kind)
    if name not in TABLES[kind]:
        raise UserError(f"unknown {kind} {name!r}; expected one of {sorted(TABLES[kind])}")
    return dict(_INFO[kind][name])


def names(kind, **where):
    """Sorted names of ``kind``; ``where``: only entries whose info has these values."""
    _check_kind(kind)
    return sorted(name for name in TABLES[kind]
                  if all(_INFO[kind][name].get(k) == v for k, v in where.items()))


def kind_of(name, kinds=KINDS):
    """The first of ``kinds`` in which ``name`` is registered, else None."""
    for kind in kinds:
        _check_kind(kind)
        if name in TABLES[kind]:
            return kind
    return None
