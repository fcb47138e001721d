"""A ``.keras`` file of any registered entry loads in a fresh process with plain
``keras.saving.load_model`` once the families and the user's own module are imported,
including a class a user registers with ``registry.register`` (a subclass of ``Lista``)
and a learned optimizer (``import model_free`` imports no TensorFlow: its classes become
known to Keras when Keras is imported, with ``LearnedKerasOptimizer`` for a compiled
model); and the core never imports a family."""
import ast
import importlib
import os
import subprocess
import sys

import numpy as np

from open_l2o_tf import registry

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

USER_MODULE = '''
from model_based.lista import Lista
from open_l2o_tf import registry


class MyLista(Lista):
    """LISTA under a user's class name, registered from the user's module (no decorator)."""


registry.register("model", "my_lista_user", MyLista)
'''

LOAD = """
import sys, numpy as np
import model_free                  # first: imports no TensorFlow, its classes known once Keras is
import model_based, my_lista_module  # the other family (imports TensorFlow) and the user's module
import keras
folder = sys.argv[1]
model = keras.saving.load_model(folder + '/user.keras')
assert type(model).__name__ == 'MyLista', type(model)
out = model(np.load(folder + '/y.npy'))[-1].numpy()
opt = keras.saving.load_model(folder + '/scale.keras')
assert type(opt).__name__ == 'L2OScale', type(opt)
compiled = keras.saving.load_model(folder + '/compiled.keras')
assert type(compiled.optimizer).__name__ == 'LearnedKerasOptimizer', type(compiled.optimizer)
assert type(compiled.optimizer.learned).__name__ == 'L2OScale'
np.savez(folder + '/loaded.npz', out=out, w=opt.weights[0].numpy())
"""


def test_user_registered_subclass_loads_with_plain_keras(tmp_path):
    import keras
    from model_based.factory import build_model
    from model_free.keras_optimizer import LearnedKerasOptimizer
    from model_free.rules.scale import L2OScale
    (tmp_path / "my_lista_module.py").write_text(USER_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.import_module("my_lista_module")
        rng = np.random.default_rng(0)
        A = (rng.normal(size=(6, 12)) / 2.5).astype(np.float32)
        model = build_model("my_lista_user", A, A.copy(), 2)
        assert type(model).__name__ == "MyLista"
        model.save(str(tmp_path / "user.keras"))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_lista_module", None)
        registry.unregister("model", "my_lista_user")
    y = rng.normal(size=(3, 6)).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    opt = L2OScale()
    opt.save(str(tmp_path / "scale.keras"))
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    net.compile(LearnedKerasOptimizer(L2OScale(), seed=[0, 1]), loss="mse")
    net.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), verbose=0)
    net.save(str(tmp_path / "compiled.keras"))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    proc = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "loaded.npz") as loaded:
        np.testing.assert_array_equal(loaded["out"], model(y)[-1].numpy())
        np.testing.assert_array_equal(loaded["w"], opt.weights[0].numpy())


def test_the_core_imports_no_family():
    """No module of open_l2o_tf/ imports model_based or model_free (families register with
    the core on import; the core looks them up)."""
    offenders = []
    core = os.path.join(ROOT, "open_l2o_tf")
    for folder, _, files in os.walk(core):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module or ""]
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == \
                        "import_module" and node.args and isinstance(node.args[0],
                                                                       ast.Constant):
                    modules = [str(node.args[0].value)]
                else:
                    continue
                for module in modules:
                    if module.split(".")[0] in ("model_based", "model_free"):
                        offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} "
                                         f"{module}")
    assert not offenders, offenders
