"""Data generation, the ALISTA weight, the coherent dictionary and make_data."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from open_l2o_tf.data import alista_weight, dictionary, sparse_recovery
from open_l2o_tf.errors import UserError
from tests.cli import error_lines, run_cli

SMALL = dict(m=64, n=128, num_train=2048, num_val=256, num_test=256)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("noiseless"))
    sparse_recovery.generate("noiseless", out, seed=3, progress=None, **SMALL)
    return out


def test_layout_shapes_norms_sparsity(small_dir):
    train = np.load(os.path.join(small_dir, "train_data.npy"))
    A = np.load(os.path.join(small_dir, "A.npy"))
    assert train.shape == (2048, 192) and train.dtype == np.float32
    assert np.allclose(np.linalg.norm(A, axis=0), 1.0, atol=1e-5)
    nonzero = np.mean(train[:, 64:] != 0)
    assert 0.08 < nonzero < 0.12
    assert np.allclose(train[:, :64], train[:, 64:] @ A.T, atol=1e-4)   # noiseless y = Ax
    meta = json.load(open(os.path.join(small_dir, "meta.json")))
    assert meta["setting"] == "noiseless" and meta["num_val"] == 256
    data = sparse_recovery.load(small_dir, "val")
    assert data.y.shape == (256, 64) and data.x.shape == (256, 128) and data.W.shape == A.shape


def test_reproducible_and_seed_dependent(small_dir, tmp_path):
    sparse_recovery.generate("noiseless", str(tmp_path / "a"), seed=3, progress=None,
                             compute_W=False, **SMALL)
    sparse_recovery.generate("noiseless", str(tmp_path / "b"), seed=4, progress=None,
                             compute_W=False, **SMALL)
    same = np.load(tmp_path / "a" / "test_data.npy")
    assert np.array_equal(same, np.load(os.path.join(small_dir, "test_data.npy")))
    assert not np.allclose(same, np.load(tmp_path / "b" / "test_data.npy"))


def test_several_sizes_in_one_process(small_dir, tmp_path):
    """Three sizes generated in one process (a Python user's loop): the compiled sampler
    retraces to an unknown width after the second size and must still work, and each
    data set equals the one its own process would make (the first size's, here)."""
    for index, (m, n) in enumerate(((20, 40), (30, 50), (64, 128))):
        out = str(tmp_path / f"d{index}")
        sizes = dict(SMALL, m=m, n=n) if (m, n) != (64, 128) else SMALL
        meta = sparse_recovery.generate("noiseless", out, seed=3, progress=None,
                                        compute_W=False, **sizes)
        test = np.load(os.path.join(out, "test_data.npy"))
        assert (meta["m"], meta["n"]) == (m, n) and test.shape == (256, m + n)
    assert np.array_equal(test, np.load(os.path.join(small_dir, "test_data.npy")))


def test_noise_at_20_db():
    A = sparse_recovery.gaussian_matrix(64, 128, 0)
    y, x = sparse_recovery.sample_measurements(A, 1, 4096, 0.1, 20.0)
    clean = x.numpy() @ A.T
    noise = y.numpy() - clean
    snr = 20 * np.log10(clean.std(axis=1) / noise.std(axis=1))
    assert abs(np.median(snr) - 20.0) < 1.5


def test_alista_weight_constraint_and_coherence():
    A = sparse_recovery.gaussian_matrix(64, 128, 5)
    W = alista_weight.analytic_weight(A)
    diag_err, off = alista_weight.check_weight(W, A)
    assert diag_err < 1e-4
    assert off < dictionary.mutual_coherence(A)


def test_mutual_coherence_known_matrix():
    D = np.array([[1.0, 0.0, np.sqrt(0.5)], [0.0, 1.0, np.sqrt(0.5)]])
    assert dictionary.mutual_coherence(D) == pytest.approx(np.sqrt(0.5))


def test_dictionary_learning_on_generated_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        base = np.cumsum(np.cumsum(rng.normal(size=(48, 48)), 0), 1)
        img = (255 * (base - base.min()) / np.ptp(base)).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    patches = dictionary.extract_patches(str(tmp_path), patch=4, num_patches=800)
    D, info = dictionary.learn_dictionary(patches, n_atoms=32, iterations=20)
    assert D.shape == (16, 32)
    assert np.allclose(np.linalg.norm(D, axis=0), 1.0, atol=1e-4)
    assert info["relative_residual"] < 1.0


def test_bsds_dictionary_is_coherent(shared_data_dir):
    folder = os.path.join(shared_data_dir, "bsds500")
    if not os.path.isdir(folder):
        pytest.skip("no bsds500")
    D, _ = dictionary.dictionary_from_images(folder, m=64, n=128, iterations=30,
                                             num_patches=3000)
    assert np.allclose(np.linalg.norm(D, axis=0), 1.0, atol=1e-4)
    assert dictionary.mutual_coherence(D) > 0.5


def test_user_errors(tmp_path, small_dir):
    with pytest.raises(UserError, match="unknown setting"):
        sparse_recovery.generate("nope", str(tmp_path), progress=None)
    with pytest.raises(UserError, match="--num_train must be a positive integer"):
        sparse_recovery.generate("noiseless", str(tmp_path), num_train=0, progress=None)
    with pytest.raises(UserError, match="does not exist"):
        dictionary.extract_patches(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "A.npy", np.eye(4, dtype=np.float32))
    (bad / "test_data.npy").write_bytes(b"garbage, not numpy")
    with pytest.raises(UserError, match="test_data.npy is not a .npy file"):
        sparse_recovery.load(str(bad), "test")
    with pytest.raises(UserError, match="run.make_data"):
        sparse_recovery.load(str(tmp_path / "nothing"), "test")


def test_make_data_cli(tmp_path):
    out = tmp_path / "d"
    proc = run_cli("run.make_data", "--setting=lasso_5x10", f"--out={out}", "--num_train=256",
                   "--num_val=64", "--num_test=64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(out / "train_data.npy").shape == (256, 15)
    for args, expect in ((["--setting=nope"], "--setting"),
                         (["--setting=noiseless", "--num_train=-5"], "--num_train"),
                         (["--setting=coherent", "--image_dir=/no/such/dir"], "/no/such/dir")):
        proc = run_cli("run.make_data", *args, f"--out={tmp_path / 'x'}")
        lines = error_lines(proc)
        assert proc.returncode == 2 and len(lines) == 1 and expect in lines[0], proc.stderr


def test_test_seed_draws_only_the_test_split(tmp_path):
    """--test_seed=K: the same A, W and train/val splits as --seed, a test split drawn from K;
    K equal to --seed (or not given) makes the same files to the byte."""
    sizes = dict(num_train=64, num_val=32, num_test=48)
    base, same, other = (str(tmp_path / name) for name in ("base", "same", "other"))
    sparse_recovery.generate("lasso_5x10", base, seed=2, progress=None, **sizes)
    sparse_recovery.generate("lasso_5x10", same, seed=2, test_seed=2, progress=None, **sizes)
    sparse_recovery.generate("lasso_5x10", other, seed=2, test_seed=5, progress=None, **sizes)
    for name in ("A.npy", "W.npy", "train_data.npy", "val_data.npy", "test_data.npy",
                 "meta.json"):
        assert open(os.path.join(base, name), "rb").read() != b""
        if name != "meta.json":
            assert (open(os.path.join(base, name), "rb").read()
                    == open(os.path.join(same, name), "rb").read()), name
    base_meta = json.load(open(os.path.join(base, "meta.json")))
    same_meta = json.load(open(os.path.join(same, "meta.json")))
    assert {k: v for k, v in base_meta.items() if not k.endswith("seconds")} == \
        {k: v for k, v in same_meta.items() if not k.endswith("seconds")}
    assert "test_seed" not in base_meta
    for name in ("A.npy", "W.npy", "train_data.npy", "val_data.npy"):
        assert np.array_equal(np.load(os.path.join(base, name)),
                              np.load(os.path.join(other, name))), name
    test_base = np.load(os.path.join(base, "test_data.npy"))
    test_other = np.load(os.path.join(other, "test_data.npy"))
    assert test_other.shape == test_base.shape and not np.allclose(test_other, test_base)
    A = np.load(os.path.join(base, "A.npy"))
    assert np.allclose(test_other[:, :5], test_other[:, 5:] @ A.T, atol=1e-5)  # y = A x
    assert json.load(open(os.path.join(other, "meta.json")))["test_seed"] == 5


def test_make_data_test_seed_cli(tmp_path):
    common = ["--setting=lasso_5x10", "--num_train=32", "--num_val=16", "--num_test=16",
              "--noW"]
    out = tmp_path / "t3"
    proc = run_cli("run.make_data", *common, "--seed=1", "--test_seed=3", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.load(open(out / "meta.json"))["request"]["test_seed"] == 3
    proc = run_cli("run.make_data", *common, "--seed=1", "--test_seed=4", f"--out={out}")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "test_seed" in lines[0], proc.stderr
    proc = run_cli("run.make_data", *common, "--seed=1", "--test_seed=-1",
                   f"--out={tmp_path / 'neg'}")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "--test_seed" in lines[0], proc.stderr
