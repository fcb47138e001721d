"""The original L2O-Scale's TensorFlow 1 checkpoints, read into
:class:`model_free.rules.scale.L2OScale`.

The Open-L2O L2O-Scale README evaluates ``metatest.py --restore_model_name=model.ckpt-0``
from ``l2o-scale-regularize-train/hess_cl_mt`` (the checkpoint published in
VITA-Group/L2O-Training-Techniques, ``L2O-Scale/l2o-scale-regularize-train/hess_cl_mt/
HierarchicalRNN_GRUCell_20_2/``).  Such a checkpoint is read with
``tf.train.load_checkpoint`` (it parses tensors only and runs no code): a prefix
(``.../model.ckpt-0``) or a directory with a ``checkpoint`` index file.  Only the 31
network variables are read; the meta-RMSProp slots (``.../RMSProp``, ``.../RMSProp_1``) and
``global_step`` are ignored (:func:`describe` reports them).

The mapping of every ``LOL/...`` variable onto our weights (paths in VITA-Group/Open-L2O,
``Model_Free_L2O/L2O-Scale/L2O-Scale-Evaluation/``; the training copy in
L2O-Training-Techniques ``L2O-Scale/l2o-scale-regularize-train/optimizer/`` has the same
``rnn_cells.py``, ``utils.py`` and network code in ``hierarchical_rnn.py``):

* ``LOL`` is ``trainable_optimizer.py:29`` (``OPTIMIZER_SCOPE``); the per-tensor part runs
  in ``variable_scope("PerTensor")`` (``hierarchical_rnn.py:365``), the global GRU in
  ``LOL/Layer2_RNN`` (``hierarchical_rnn.py:710``).
* ``Level{0,1,2}_RNN/init_vector`` ``[1, h]`` (``hierarchical_rnn.py:225-237``) ->
  ``init_level{0,1,2}`` ``[h]`` (reshaped; they are the initial states,
  ``hierarchical_rnn.py:310,318,349``).
* ``.../BiasGRUCell/gates/Affine/{Matrix,Bias}`` and ``.../candidate/Affine/{Matrix,Bias}``
  -> ``level*/w_gates, b_gates, w_cand, b_cand`` as they are, no transpose:
  ``utils.affine`` computes ``concat(inputs, 1) @ Matrix + Bias`` with ``Matrix``
  ``[input_size, output_size]`` (``utils.py:67,76,85``); the cell concatenates
  ``[inputs, state]`` and splits the gate columns into ``r, u`` in that order
  (``rnn_cells.py:55-59``), the candidate takes ``[inputs, r * state]``
  (``rnn_cells.py:62``), and the injected bias splits as ``r, u, c``
  (``rnn_cells.py:51``), all as :class:`model_free.rules.scale.BiasGRU`.  Level 0 is
  ``PerTensor/Layer0_RNN`` (``hierarchical_rnn.py:548,564``), level 1
  ``PerTensor/Layer1_RNN`` (``:571,584``), level 2 ``Layer2_RNN`` (``:710-714``).
* ``PerTensor/Layer0_RNN/Param/Affine`` ``[20, 30]`` (an affine of ``state["layer"]``,
  ``hierarchical_rnn.py:552-555``) -> ``bias0_from_layer`` / ``bias0_from_layer_b``;
  ``PerTensor/Layer0_RNN/Global/Affine`` (of the global state, ``:558-561``) ->
  ``bias0_from_global`` / ``_b``; ``PerTensor/Layer1_RNN/Affine`` ``[20, 60]`` (of the
  global state, ``:581-583``) -> ``bias1_from_global`` / ``_b``.
* ``update_weights`` (``:189``) -> ``w_update``; ``PerTensor/GradsToDelta/Matrix``
  ``[4, 1]`` (an affine without bias of ``concat(grads_scaled, 1)``, ``:604-609``) ->
  ``w_shortcut``; ``scl_decay_{weights,bias}`` (``:251-258``) -> ``w_scl_decay``,
  ``b_scl_decay``; ``inp_decay_{weights,bias}`` (``:272-279``) -> ``w_inp_decay``,
  ``b_inp_decay``; ``learning_rate_{weights,bias}`` (``:294-298``) -> ``w_lr``, ``b_lr``;
  ``PerTensor/learning_rate_momentum_logit`` (``:675-678``) -> ``lr_momentum_logit``;
  ``PerTensor/param_stepsize_offset`` (``:681-683``) -> ``lr_offset``.

The 12 input features are in the original's order (``hierarchical_rnn.py:373-518``: the 4
scaled gradients, the 3 products, the 4 centred log mean squares, the relative log rate
against the problem's mean, ``use_problem_lr_mean`` True in ``metatest.py:197``), which is
ours, so the 22 input rows of level 0 (12 + 10) and the 42 of level 1 (10 + 12 + 20) need
no permutation.  The optimizer is built with ``faithful_global=True``: the original feeds
the global GRU with the last tensor's level-1 state only (``hierarchical_rnn.py:419``,
``_compute_updated_global_state([layer_state], ...)`` after the loop).
"""
import os

import numpy as np

from open_l2o_tf.errors import UserError

PREFIX = "LOL/"

# our weight (L2OScale attribute path) -> the original's variable name (without "LOL/")
MAPPING = (
    ("init0", "Level0_RNN/init_vector"),
    ("init1", "Level1_RNN/init_vector"),
    ("init2", "Level2_RNN/init_vector"),
) + tuple(
    (f"{ours}.{w}", f"{theirs}/BiasGRUCell/{part}/Affine/{kind}")
    for ours, theirs in (("gru0", "PerTensor/Layer0_RNN"), ("gru1", "PerTensor/Layer1_RNN"),
                         ("gru2", "Layer2_RNN"))
    for w, part, kind in (("w_gates", "gates", "Matrix"), ("b_gates", "gates", "Bias"),
                          ("w_cand", "candidate", "Matrix"), ("b_cand", "candidate", "Bias"))
) + (
    ("bias0_from_layer", "PerTensor/Layer0_RNN/Param/Affine/Matrix"),
    ("bias0_from_layer_b", "PerTensor/Layer0_RNN/Param/Affine/Bias"),
    ("bias0_from_global", "PerTensor/Layer0_RNN/Global/Affine/Matrix"),
    ("bias0_from_global_b", "PerTensor/Layer0_RNN/Global/Affine/Bias"),
    ("bias1_from_global", "PerTensor/Layer1_RNN/Affine/Matrix"),
    ("bias1_from_global_b", "PerTensor/Layer1_RNN/Affine/Bias"),
    ("w_update", "update_weights"),
    ("w_shortcut", "PerTensor/GradsToDelta/Matrix"),
    ("w_scl", "scl_decay_weights"),
    ("b_scl", "scl_decay_bias"),
    ("w_inp", "inp_decay_weights"),
    ("b_inp", "inp_decay_bias"),
    ("w_lr", "learning_rate_weights"),
    ("b_lr", "learning_rate_bias"),
    ("lr_momentum_logit", "PerTensor/learning_rate_momentum_logit"),
    ("lr_offset", "PerTensor/param_stepsize_offset"),
)


def checkpoint_prefix(path, flag="IN"):
    """The TF1 checkpoint prefix of ``path``: a prefix (``model.ckpt-0``, whose ``.index``
    exists), or a directory holding one (its ``checkpoint`` file's latest, else the only
    ``*.index``).  ``None`` when ``path`` is neither (another kind of file)."""
    if os.path.isfile(path + ".index"):
        return path
    if path.endswith(".index") and os.path.isfile(path):
        return path[:-len(".index")]
    if not os.path.isdir(path):
        return None
    listed = os.path.join(path, "checkpoint")
    if os.path.isfile(listed):
        with open(listed, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    candidate = os.path.join(path, os.path.basename(name))
                    if os.path.isfile(candidate + ".index"):
                        return candidate
    indexes = sorted(f for f in os.listdir(path) if f.endswith(".index"))
    if len(indexes) == 1:
        return os.path.join(path, indexes[0][:-len(".index")])
    if indexes:
        raise UserError(f"{flag} {path} holds {len(indexes)} checkpoints and no `checkpoint` "
                        "file naming one; pass the prefix, e.g. "
                        f"{os.path.join(path, indexes[0][:-len('.index')])}")
    return None


def is_checkpoint(path):
    """Whether ``path`` names a TF1 checkpoint (prefix or directory)."""
    try:
        return checkpoint_prefix(path) is not None
    except UserError:
        return True


def read_tensors(path, flag="IN"):
    """``(prefix, {name: array})`` of the L2O-Scale variables (``LOL/...``, no optimizer
    slots) and ``global_step`` of the checkpoint at ``path``; tensors only."""
    prefix = checkpoint_prefix(path, flag)
    if prefix is None:
        raise UserError(f"{flag} {path} is not a TensorFlow checkpoint (expected a prefix "
                        "such as .../model.ckpt-0 with its .index, or a directory holding one)")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        tensors = {n: reader.get_tensor(n) for n in names
                   if not n.endswith(("/RMSProp", "/RMSProp_1", "/Adam", "/Adam_1"))}
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{flag} {path}: cannot read the TensorFlow checkpoint "
                        f"{prefix} ({type(err).__name__}: {str(err).splitlines()[0][:200]})") \
            from None
    return prefix, tensors


def describe(path):
    """What the checkpoint holds beyond the weights: ``global_step`` and the mean of each
    meta-RMSProp mean-square slot (``.../RMSProp``; TF1 starts it at 1 and multiplies it
    by the decay 0.9 at every meta-step, so 0.9**k after k near-zero meta-gradients)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    reader = tf.train.load_checkpoint(checkpoint_prefix(path))
    names = reader.get_variable_to_shape_map()
    slots = [float(np.mean(reader.get_tensor(n))) for n in names if n.endswith("/RMSProp")]
    step = (int(reader.get_tensor("global_step")) if "global_step" in names else None)
    return {"global_step": step, "rmsprop_ms_min": min(slots) if slots else None,
            "rmsprop_ms_max": max(slots) if slots else None, "num_slots": len(slots)}


def _attribute(opt, dotted):
    obj = opt
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def load_checkpoint(path, synthetic=False, flag="IN"):
    """``("l2o_scale", optimizer)``: an :class:`model_free.rules.scale.L2OScale` with the weights
    of the original L2O-Scale checkpoint at ``path`` (see the module docstring for the
    mapping), ``faithful_global=True`` and ``batched_instances=synthetic``."""
    from model_free.rules.scale import L2OScale  # pylint: disable=import-outside-toplevel
    _, tensors = read_tensors(path, flag)
    missing = [PREFIX + theirs for _, theirs in MAPPING if PREFIX + theirs not in tensors]
    if missing:
        raise UserError(f"{flag} {path}: not an original L2O-Scale (HierarchicalRNN) "
                        f"checkpoint; missing {missing[:3]}"
                        f"{' ...' if len(missing) > 3 else ''}")
    hidden = [int(np.size(tensors[PREFIX + f"Level{i}_RNN/init_vector"])) for i in range(3)]
    opt = L2OScale(*hidden, batched_instances=synthetic, faithful_global=True)
    for ours, theirs in MAPPING:
        variable = _attribute(opt, ours)
        value = np.asarray(tensors[PREFIX + theirs], np.float32)
        if value.size != int(np.prod(variable.shape)) or (
                value.ndim == len(variable.shape) and value.shape != tuple(variable.shape)):
            raise UserError(f"{flag} {path}: {PREFIX + theirs} has shape {value.shape}, "
                            f"our {ours} expects {tuple(variable.shape)}")
        variable.assign(value.reshape(variable.shape))
    return "l2o_scale", opt
