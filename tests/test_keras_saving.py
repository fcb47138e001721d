"""Keras serialization: ALISTA's file keeps A and W as weights (every registered model's
fresh-process round trip is a contract, tests/test_contracts.py), and a model compiled with ``LearnedKerasOptimizer`` loads back and
continues training from the saved optimizer state exactly as the original would."""
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from model_based.factory import build_model
from model_free.keras_optimizer import LearnedKerasOptimizer
from model_free.rules.dm import L2ODM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _fresh_python(code, *args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_alista_file_stores_matrices_as_weights(tmp_path):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(64, 128)).astype(np.float32)
    model = build_model("alista", A, A.copy(), 4)
    model.save(str(tmp_path / "a.keras"))
    with zipfile.ZipFile(tmp_path / "a.keras") as archive:
        config_bytes = len(archive.read("config.json"))
        weights_bytes = len(archive.read("model.weights.h5"))
    assert config_bytes < 2000                       # no matrices in the JSON
    assert weights_bytes > 2 * 64 * 128 * 4          # A and W as float32 weights


def _regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype(np.float32)
    return x, (x @ rng.normal(size=(6, 1))).astype(np.float32)


CONTINUE = """
import sys, numpy as np, keras
import model_free.keras_optimizer
folder = sys.argv[1]
model = keras.saving.load_model(folder + '/m.keras')
x, y = np.load(folder + '/x.npy'), np.load(folder + '/y.npy')
assert type(model.optimizer).__name__ == 'LearnedKerasOptimizer'
model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
np.savez(folder + '/continued.npz', *model.get_weights())
"""


def test_learned_optimizer_model_saves_and_continues_in_a_fresh_process(tmp_path):
    x, y = _regression()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    learned = L2ODM(output_scale=0.05)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=LearnedKerasOptimizer(learned), loss="mse")
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    state = [v.numpy() for v in model.optimizer.variables]
    assert any(np.abs(s).sum() > 0 for s in state[-4:])      # a non-trivial recurrent state
    model.save(str(tmp_path / "m.keras"))
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    _fresh_python(CONTINUE, str(tmp_path))
    with np.load(tmp_path / "continued.npz") as data:
        continued = [data[f"arr_{i}"] for i in range(len(data.files))]
    for ours, theirs in zip(model.get_weights(), continued):
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_learned_optimizer_config_round_trip():
    opt = LearnedKerasOptimizer(L2ODM(hidden=8, output_scale=0.1), learning_rate=0.5)
    clone = LearnedKerasOptimizer.from_config(opt.get_config())
    assert clone.learned.hidden == 8 and clone.learned.output_scale == pytest.approx(0.1)
    assert float(clone.learning_rate) == pytest.approx(0.5)
