"""The scripts of examples/ run at their --small size (one process, one TensorFlow import)
and print what they promise; the README links each."""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXAMPLES = ("train_unrolled.py", "learned_optimizer_in_fit.py",
            "bring_your_own_optimizer.py")
RUNNER = """
import runpy, sys
for script, workdir in zip(sys.argv[2::2], sys.argv[3::2]):
    sys.argv = [script, "--small", ("--out=" if "bring" in script else "--workdir=") + workdir]
    print(f"=== {script}", flush=True)
    runpy.run_path(script, run_name="__main__")
"""


def test_examples_run_small(tmp_path):
    args = []
    for name in EXAMPLES:
        args += [os.path.join(ROOT, "examples", name), str(tmp_path / name.split(".")[0])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OPEN_L2O_DATA_DIR", None)          # the examples need no shared data
    proc = subprocess.run([sys.executable, "-c", RUNNER, "x", *args], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.split("=== ")
    unrolled, learned, byo = out[1], out[2], out[3]
    layers = [float(v) for v in re.findall(r"layer +\d+: +(-?[\d.]+) dB", unrolled)]
    assert len(layers) == 3 and layers[-1] < layers[0] < 0     # deeper is better
    assert (tmp_path / "train_unrolled" / "tb").is_dir()
    assert "meta-trained l2o_rnnprop: 40 steps" in learned
    for name in ("learned", "adam"):
        losses = re.search(rf"model.fit with {name} *: loss per epoch (.*)", learned)
        assert losses and all(float(v) > 0 for v in losses.group(1).split())
    for name in ("decayed_sign_gd", "adam", "rmsprop", "gd_ls", "nag_ls"):
        row = re.search(rf"^ *{name} +([\d.]+) +([\d.]+) +([\d.]+)$", byo, re.M)
        assert row and float(row.group(3)) < float(row.group(1)), byo
    assert (tmp_path / "bring_your_own_optimizer" / "rastrigin_n2.png").stat().st_size > 1000


def test_readme_links_every_example():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for name in EXAMPLES:
        assert f"examples/{name}" in readme, name
