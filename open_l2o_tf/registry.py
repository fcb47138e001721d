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
:func:`register` are the entry's ``info``; the commands and the contract tests
(``tests/test_contracts.py``) read nothing else to know what to do with a name:

* ``interface``: how the commands drive it (:func:`interface`): ``"unrolled"`` (an
  unrolled model, the default of kind ``"model"``), ``"update"`` (a learned update rule,
  the default of kind ``"learned"``), ``"swarm"`` or ``"twin"`` (learned, their own step
  functions), ``"classic"`` (the default of kind ``"classic"``);
* ``commands``: the commands that serve it (:func:`commands`; default by interface,
  ``DEFAULT_COMMANDS``): the name is then a valid ``--model`` / ``--optimizer`` value of
  each of them (:func:`serving`);
* ``paper`` / ``quick``: the commands whose benchmark suite (``run.benchmark``) runs it, in
  the paper and in the quick suite (:func:`in_suite`; default: every command it serves,
  so a new entry is in the benchmark at once; ``paper=()``: in no suite);
* family-specific keys (``coordinatewise``, ``curriculum``, ``meta_training``, ``style``,
  ``transform``: a classic learning-rate transform, :mod:`open_l2o_tf.classic.named`),
  documented where they are read.

Keras serialization: a registered class is made known to Keras's serialization
(``keras.saving.register_keras_serializable(package=<its module>)`` unless it is registered
already), when it is registered as an object, when a ``"module:attribute"`` target is
imported (:func:`get`), and for a whole kind with :func:`keras_serializable` (a family calls
it on import: its classes become known as soon as Keras is imported), so a ``.keras`` file
of any registered entry loads with plain ``keras.saving.load_model`` once the family (and
the user's module) is imported.

This module knows no family: it never names a model or optimizer module.
"""
import contextlib
import importlib
import importlib.abc
import importlib.util
import sys

from open_l2o_tf.errors import UserError

KINDS = ("model", "learned", "classic", "optimizee")
DEFAULT_INTERFACE = {"model": "unrolled", "learned": "update", "classic": "classic",
                     "optimizee": "optimizee"}
INTERFACES = {"model": ("unrolled",), "learned": ("update", "swarm", "twin"),
              "classic": ("classic",), "optimizee": ("optimizee",)}
# the commands that serve an entry unless its info says ``commands``
DEFAULT_COMMANDS = {"unrolled": ("sparse_recovery",),
                    "update": ("lasso", "rastrigin", "nn_training"),
                    "swarm": ("rastrigin",), "twin": ("minimax",), "classic": (),
                    "optimizee": ()}
COMMANDS = ("sparse_recovery", "lasso", "rastrigin", "nn_training", "minimax")
SUITES = ("paper", "quick")

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

    Re-registering a name with the same target is a no-op when no info is given (modules
    may be imported twice under pytest), else it replaces the info; another target for a
    taken name raises ``ValueError``.  Returns
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
    _check_info(kind, name, info)
    old = TABLES[kind].get(name)
    if old is not None and old != spec:
        raise ValueError(f"{kind} {name!r} is already registered as {old}, not {spec}")
    if old is not None and not info:
        return target            # the same target again, no info: a no-op (keeps the info)
    TABLES[kind][name] = spec
    _INFO[kind][name] = dict(info)
    if obj is None:       # a module registering its own class by name: already defined?
        module_name, attribute = spec.split(":")
        obj = getattr(sys.modules.get(module_name), attribute, None) \
            if "." not in attribute else None
    else:
        _OBJECTS[kind][name] = obj
    if obj is not None:
        _keras_register(obj)
    return target


def _keras_register(obj):
    """Makes a Keras class known to Keras's serialization under ``<its module>>Name``
    unless it is registered already (a subclass of a registered class is not: Keras keys
    registrations by class).  Needs no import: a Keras class means Keras is loaded."""
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(obj, type) or not hasattr(obj, "get_config"):
        return
    if ">" not in keras.saving.get_registered_name(obj):
        keras.saving.register_keras_serializable(package=obj.__module__)(obj)


_KERAS_KINDS = set()
_KERAS_MODULES = []


def keras_serializable(kind, modules=()):
    """Every entry of ``kind`` (present and future) is imported and made known to Keras's
    serialization as soon as Keras is imported: now if it is, else right after the first
    ``import keras`` (a post-import hook; the family itself stays free of TensorFlow).
    ``modules``: also import these (Keras classes that are no entry of a table, e.g. a
    family's Keras optimizer)."""
    _check_kind(kind)
    _KERAS_KINDS.add(kind)
    _KERAS_MODULES.extend(m for m in modules if m not in _KERAS_MODULES)
    if "keras" in sys.modules:
        _import_keras_kinds()
    elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())


def _import_keras_kinds():
    for kind in sorted(_KERAS_KINDS):
        import_all(kind)
    for module in _KERAS_MODULES:
        importlib.import_module(module)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs :func:`_import_keras_kinds` once ``keras`` and ``tensorflow`` have both
    executed (they import each other: the outer one's end, so that neither is half
    initialised when the classes' modules import them)."""

    NAMES = ("keras", "tensorflow")

    def find_spec(self, fullname, path, target=None):
        del path, target
        if fullname not in self.NAMES:
            return None
        position = sys.meta_path.index(self)
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(position, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_import(module):
            exec_module(module)
            others = [sys.modules.get(n) for n in self.NAMES if n != fullname]
            if "keras" not in sys.modules or any(
                    getattr(getattr(m, "__spec__", None), "_initializing", False)
                    for m in others if m is not None):
                return             # the other one is still executing: at its end
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            try:
                _import_keras_kinds()
            except Exception as err:  # pylint: disable=broad-except
                import warnings  # pylint: disable=import-outside-toplevel
                warnings.warn(f"open_l2o_tf.registry: importing the registered Keras "
                              f"classes failed ({type(err).__name__}: {err}); their .keras "
                              "files load after importing their modules")

        spec.loader.exec_module = exec_then_import
        return spec


def _check_info(kind, name, info):
    value = info.get("interface", DEFAULT_INTERFACE[kind])
    if value not in INTERFACES[kind]:
        raise ValueError(f"{kind} {name!r}: interface {value!r} is not one of "
                         f"{INTERFACES[kind]}")
    for key in ("commands", "paper", "quick"):
        if key in info:
            unknown = [c for c in info[key] if c not in COMMANDS]
            if isinstance(info[key], str) or unknown:
                raise ValueError(f"{kind} {name!r}: {key} must be a tuple of commands "
                                 f"out of {COMMANDS}, got {info[key]!r}")


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
    _keras_register(obj)
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
                  if all(dict(_INFO[kind][name], interface=interface(kind, name)).get(k) == v
                         for k, v in where.items()))


def kind_of(name, kinds=KINDS):
    """The first of ``kinds`` in which ``name`` is registered, else None."""
    for kind in kinds:
        _check_kind(kind)
        if name in TABLES[kind]:
            return kind
    return None


def interface(kind, name):
    """How the commands drive entry ``name`` (its info's ``interface``, else the kind's
    default, ``DEFAULT_INTERFACE``)."""
    return info(kind, name).get("interface", DEFAULT_INTERFACE[kind])


def commands(kind, name):
    """The commands that serve entry ``name`` (its ``commands``, else the interface's)."""
    entry = info(kind, name)
    return tuple(entry.get("commands", DEFAULT_COMMANDS[interface(kind, name)]))


def serving(command, kinds=("classic", "model", "learned"), **where):
    """The names of ``kinds`` (in this order, each in registration order) that ``command``
    serves and whose info has the values ``where`` (``interface`` compares with
    :func:`interface`, so its default counts)."""
    out = []
    for kind in kinds:
        _check_kind(kind)
        for name in TABLES[kind]:
            if command not in commands(kind, name):
                continue
            entry = dict(_INFO[kind][name], interface=interface(kind, name))
            if all(entry.get(k) == v for k, v in where.items()):
                out.append(name)
    return out


def in_suite(kind, name, command, suite):
    """Whether the benchmark's ``suite`` (``"paper"`` or ``"quick"``) runs entry ``name``
    with ``command`` (its ``paper`` / ``quick`` info, else every command it serves)."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    served = commands(kind, name)
    return command in served and command in info(kind, name).get(suite, served)


def import_all(kind):
    """Imports the target of every entry of ``kind`` (e.g. so that every registered Keras
    class is known to ``keras.saving.load_model``); returns the objects by name.  Inside
    :func:`deferred_imports` it only notes ``kind`` (and returns ``{}``)."""
    if _DEFERRED["on"]:
        if kind not in _DEFERRED["kinds"]:
            _DEFERRED["kinds"].append(kind)
        return {}
    return {name: get(kind, name) for name in list(TABLES[kind])}


_DEFERRED = {"on": False, "kinds": []}   # deferred_imports: the kinds import_all waits on


@contextlib.contextmanager
def deferred_imports(active=True):
    """Inside (when ``active``), :func:`import_all` only notes the kind: a family imported
    here registers its names without importing its modules (and TensorFlow), so a command
    line can check its flags first; :func:`import_deferred` imports them later."""
    before = _DEFERRED["on"]
    _DEFERRED["on"] = bool(active) or before
    try:
        yield
    finally:
        _DEFERRED["on"] = before


def import_deferred():
    """Runs the :func:`import_all` calls :func:`deferred_imports` held back."""
    kinds, _DEFERRED["kinds"] = _DEFERRED["kinds"], []
    for kind in kinds:
        import_all(kind)
