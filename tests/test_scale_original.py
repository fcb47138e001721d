"""The original L2O-Scale's TF1 checkpoints (LOL/... variables) loaded into L2OScale: a fake
checkpoint written with the original's variable names (tf.raw_ops.SaveV2, as TF1's Saver
writes them), its weights where the original uses them, and one step computed by hand."""
import os

import numpy as np
import pytest
import tensorflow as tf

from model_free.weights import pretrained
from tests.cli import run_cli

H0, H1, H2, F = 2, 3, 3, 12      # small level sizes; 12 input features as the original


def _original_variables(rng):
    """The original HierarchicalRNN's variables (hierarchical_rnn.py, rnn_cells.py,
    utils.affine: Matrix [in, out], Bias [out]) with random values, and its slots."""
    shapes = {"Level0_RNN/init_vector": (1, H0), "Level1_RNN/init_vector": (1, H1),
              "Level2_RNN/init_vector": (1, H2),
              "PerTensor/Layer0_RNN/Param/Affine/Matrix": (H1, 3 * H0),
              "PerTensor/Layer0_RNN/Param/Affine/Bias": (3 * H0,),
              "PerTensor/Layer0_RNN/Global/Affine/Matrix": (H2, 3 * H0),
              "PerTensor/Layer0_RNN/Global/Affine/Bias": (3 * H0,),
              "PerTensor/Layer1_RNN/Affine/Matrix": (H2, 3 * H1),
              "PerTensor/Layer1_RNN/Affine/Bias": (3 * H1,),
              "update_weights": (H0, 1), "PerTensor/GradsToDelta/Matrix": (4, 1),
              "scl_decay_weights": (H0, 1), "scl_decay_bias": (1,),
              "inp_decay_weights": (H0, 1), "inp_decay_bias": (1,),
              "learning_rate_weights": (H0, 1), "learning_rate_bias": (1,),
              "PerTensor/learning_rate_momentum_logit": (),
              "PerTensor/param_stepsize_offset": ()}
    for scope, units, inputs in (("PerTensor/Layer0_RNN", H0, F),
                                 ("PerTensor/Layer1_RNN", H1, H0 + F),
                                 ("Layer2_RNN", H2, H1)):
        shapes[f"{scope}/BiasGRUCell/gates/Affine/Matrix"] = (inputs + units, 2 * units)
        shapes[f"{scope}/BiasGRUCell/gates/Affine/Bias"] = (2 * units,)
        shapes[f"{scope}/BiasGRUCell/candidate/Affine/Matrix"] = (inputs + units, units)
        shapes[f"{scope}/BiasGRUCell/candidate/Affine/Bias"] = (units,)
    values = {"LOL/" + k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    return values


def _write(prefix, values):
    tensors = dict(values)
    for name, value in values.items():      # the meta-RMSProp slots are read past
        tensors[name + "/RMSProp"] = np.full_like(value, 0.9 ** 6)
        tensors[name + "/RMSProp_1"] = np.zeros_like(value)
    tensors["global_step"] = np.array(6, np.int32)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    with open(os.path.join(os.path.dirname(prefix), "checkpoint"), "w",
              encoding="utf-8") as handle:
        handle.write(f'model_checkpoint_path: "{os.path.basename(prefix)}"\n')


@pytest.fixture(name="ckpt")
def fixture_ckpt(tmp_path):
    values = _original_variables(np.random.default_rng(0))
    # the hand-computable step: level-0 update gates saturated (h0' = its initial state),
    # no RNN term in the update, a known learning-rate change and offset
    values["LOL/PerTensor/Layer0_RNN/BiasGRUCell/gates/Affine/Bias"][H0:] = 40.0
    values["LOL/update_weights"][:] = 0.0
    values["LOL/PerTensor/GradsToDelta/Matrix"][:] = np.abs(
        values["LOL/PerTensor/GradsToDelta/Matrix"]) + 0.1
    values["LOL/learning_rate_weights"][:] = 0.0
    values["LOL/learning_rate_bias"][:] = 0.5
    values["LOL/PerTensor/param_stepsize_offset"] = np.float32(-0.7)
    values["LOL/PerTensor/learning_rate_momentum_logit"] = np.float32(1.3)
    directory = tmp_path / "HierarchicalRNN_GRUCell_20_2"
    directory.mkdir()
    _write(str(directory / "model.ckpt-0"), values)
    return directory, values


def test_original_checkpoint_weights_land_where_the_original_uses_them(ckpt):
    directory, v = ckpt
    name, opt = pretrained.load_optimizer(str(directory), expected="l2o_scale")
    assert name == "l2o_scale" and opt.faithful_global and not opt.batched_instances
    pairs = [(opt.init0, "Level0_RNN/init_vector"), (opt.init2, "Level2_RNN/init_vector"),
             (opt.gru0.w_gates, "PerTensor/Layer0_RNN/BiasGRUCell/gates/Affine/Matrix"),
             (opt.gru1.w_cand, "PerTensor/Layer1_RNN/BiasGRUCell/candidate/Affine/Matrix"),
             (opt.gru2.b_gates, "Layer2_RNN/BiasGRUCell/gates/Affine/Bias"),
             (opt.bias0_from_layer, "PerTensor/Layer0_RNN/Param/Affine/Matrix"),
             (opt.bias0_from_global_b, "PerTensor/Layer0_RNN/Global/Affine/Bias"),
             (opt.bias1_from_global, "PerTensor/Layer1_RNN/Affine/Matrix"),
             (opt.w_shortcut, "PerTensor/GradsToDelta/Matrix"),
             (opt.b_inp, "inp_decay_bias"), (opt.w_scl, "scl_decay_weights")]
    for variable, key in pairs:
        np.testing.assert_array_equal(variable.numpy(), v["LOL/" + key].reshape(variable.shape),
                                      err_msg=key)
    # the same through the prefix, for a synthetic (batch-first) problem
    _, batched = pretrained.load_optimizer(str(directory / "model.ckpt-0"), synthetic=True)
    assert batched.batched_instances


def test_original_checkpoint_first_step_by_hand(ckpt):
    """Level-0 update gate at 1: h0' = init_vector; then (hierarchical_rnn.py 632-683)
    scl/inp decay = sigmoid(h0' w + b), step_log_lr = log_lr + b_lr,
    new log_lr = m log_lr + (1 - m) step_log_lr with m = sigmoid(logit), and the update
    -exp(step_log_lr + offset) * sign(g) (w_update = 0, GradsToDelta > 0, unit RMS)."""
    directory, v = ckpt
    _, opt = pretrained.load_optimizer(str(directory))
    params = [tf.constant(np.linspace(-1, 1, 5), tf.float32)]
    grads = [tf.constant([0.3, -2.0, 0.1, 5.0, -0.4], tf.float32)]
    state = opt.initial_state(params)
    steps, new = opt.update(grads, state, params)
    init0 = v["LOL/Level0_RNN/init_vector"]
    np.testing.assert_allclose(new[0].numpy(), np.repeat(init0, 5, 0), rtol=1e-5, atol=1e-6)
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))   # noqa: E731
    np.testing.assert_allclose(new[3].numpy()[:, 0], sigmoid(
        init0 @ v["LOL/scl_decay_weights"] + v["LOL/scl_decay_bias"])[0, 0], rtol=1e-5)
    np.testing.assert_allclose(new[4].numpy()[:, 0], sigmoid(
        init0 @ v["LOL/inp_decay_weights"] + v["LOL/inp_decay_bias"])[0, 0], rtol=1e-5)
    log_lr = state[5].numpy()[:, 0]
    m = sigmoid(1.3)
    np.testing.assert_allclose(new[5].numpy()[:, 0], m * log_lr + (1 - m) * (log_lr + 0.5),
                               rtol=1e-5)
    np.testing.assert_allclose(steps[0].numpy(), -np.exp(log_lr + 0.5 - 0.7) *
                               np.sign(grads[0].numpy()), rtol=1e-4)


def test_convert_and_load_flag_take_a_checkpoint_directory(ckpt, tmp_path):
    directory, v = ckpt
    from run.workdir import check_load_flag  # pylint: disable=import-outside-toplevel
    assert check_load_flag(str(directory), "l2o_scale") == "learned"
    out = tmp_path / "scale.npz"
    proc = run_cli("run.convert_original", str(directory), str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, opt = pretrained.load_optimizer(str(out), expected="l2o_scale")
    np.testing.assert_array_equal(opt.gru2.w_gates.numpy(),
                                  v["LOL/Layer2_RNN/BiasGRUCell/gates/Affine/Matrix"])
    assert opt.faithful_global and not opt.batched_instances
    # loaded for a synthetic family, each row of a batch-first tensor is its own problem
    assert pretrained.load_optimizer(str(out), synthetic=True)[1].batched_instances
