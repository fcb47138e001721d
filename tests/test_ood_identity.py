"""``ood``: its image folder is found as the other commands find data (the flag,
``$OPEN_L2O_DATA_DIR``, ``../shared/data``) and checked before any work, and its workdir
has a run identity: another ``--load`` there is refused."""
import json
import os
import subprocess
import sys

import pytest

from open_l2o_tf.errors import UserError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_find_image_dir_honours_the_flag_the_env_and_says_what_to_download(tmp_path,
                                                                          monkeypatch):
    from run.workdir import find_image_dir
    images = tmp_path / "data" / "bsds500" / "train"
    images.mkdir(parents=True)
    (images / "1.png").write_bytes(b"not read here")
    monkeypatch.chdir(tmp_path)                       # no ../shared/data from here
    monkeypatch.setenv("OPEN_L2O_DATA_DIR", str(tmp_path / "data"))
    assert find_image_dir(None) == str(tmp_path / "data" / "bsds500")
    assert find_image_dir(str(images)) == str(images)
    monkeypatch.delenv("OPEN_L2O_DATA_DIR")
    with pytest.raises(UserError, match=r"--image_dir not given and \.\./shared/data/bsds500 "
                       r"does not exist \(\$OPEN_L2O_DATA_DIR is not set\); download BSDS500"):
        find_image_dir(None)
    with pytest.raises(UserError, match="--image_dir nowhere is not a directory"):
        find_image_dir("nowhere")


def _batch(base, cases, env):
    cases_path, results_path = str(base / "cases.json"), str(base / "results.json")
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump([{"args": args} for args in cases], handle)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "cli_batch.py"),
                           "run.ood", cases_path, results_path], cwd=str(base),
                          env=dict(env, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
                                   PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(results_path, encoding="utf-8") as handle:
        return json.load(handle)


def _errors(result):
    return [line for line in result["stderr"].splitlines() if line.startswith("error:")]


def test_ood_checks_images_first_and_refuses_another_load(tmp_path):
    from model_based.factory import build_model
    from open_l2o_tf.data import sparse_recovery
    for name, seed in (("m1", 5), ("m2", 6)):
        A = sparse_recovery.gaussian_matrix(16, 32, [seed, 0])
        build_model("lista_cpss", A, None, 2).save(str(tmp_path / f"{name}.keras"))
    (tmp_path / "data" / "bsds500").mkdir(parents=True)        # no images in it
    env = dict(os.environ, OPEN_L2O_DATA_DIR=str(tmp_path / "data"))
    small = ["--iterations=3", "--num_test=8"]
    work = str(tmp_path / "w")
    m1, m2 = str(tmp_path / "m1.keras"), str(tmp_path / "m2.keras")
    results = _batch(tmp_path, [
        [f"--load={m1}", f"--workdir={work}", "--shifts=coherent"] + small,
        [f"--load={m1}", f"--workdir={work}", "--shifts=in_distribution"] + small,
        [f"--load={m2}", f"--workdir={work}", "--shifts=in_distribution"] + small,
        [f"--load={m1}", f"--workdir={work}", "--shifts=in_distribution,noisy"] + small,
    ], env)
    first, ok, other, more = results
    assert first["code"] == 2 and len(_errors(first)) == 1, first["stderr"][-2000:]
    assert f"image folder {tmp_path}/data/bsds500 has no images" in _errors(first)[0]
    assert "[ood]" not in first["stdout"]                       # before any work
    assert ok["code"] == 0, ok["stderr"][-2000:]
    assert other["code"] == 2 and len(_errors(other)) == 1, other["stderr"][-2000:]
    assert f"--load={m1!r} there, {m2!r} now" in _errors(other)[0]
    assert more["code"] == 0 and "in_distribution: already done" in more["stdout"], \
        more["stderr"][-2000:]
    with open(os.path.join(work, "results.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert set(record["shifts"]) == {"in_distribution", "noisy"}
    assert record["config"]["load"] == m1
