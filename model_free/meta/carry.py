"""The learned optimizer's state carried from the end of one episode into the next
(``carry_state``: L2O-Scale's ``metaopt.py`` with ``reset_rnn_params``, reset only at the
first episode of the run).

The carried state is in the checkpoint (:meth:`CarriedState.arrays`: one array per leaf,
stacked over the replicas, ``[R, ...]``) and a resumed run goes on with it (under
``mirrored`` each replica's shard); it starts afresh when resumed on another number of
replicas or problem size, and under a multi-process strategy, where no process holds the
other processes' shards.
"""
import numpy as np
import tensorflow as tf

from open_l2o_tf import distribute


class CarriedState:
    """``begin(state)`` at the start of an episode (the carried state when there is one
    that fits, else ``state``), ``end(state)`` after it; ``arrays()`` / ``load(arrays)``
    for the checkpoint.  Disabled (``enabled=False``) it carries nothing."""

    def __init__(self, enabled, strategy=None, say=None):
        self.enabled, self.strategy = bool(enabled), strategy
        self.say = say or (lambda *a, **k: None)
        self.state = None
        self._restored = None     # the checkpoint's arrays, unpacked at the next episode

    def begin(self, state):
        if not self.enabled:
            return state
        if self._restored is not None:
            self.state = self._unpack(self._restored, state)
            self._restored = None
        if self.state is not None and all(
                a.shape == b.shape for a, b in zip(self._local_leaves(self.state),
                                                   self._local_leaves(state))):
            return self.state
        return state

    def end(self, state):
        if self.enabled:
            self.state = state

    def _local_leaves(self, state):
        if self.strategy is not None:
            state = distribute.first_local(self.strategy, state)
        return tf.nest.flatten(state)

    def arrays(self):
        """One array per leaf, stacked over the replicas (``[R, ...]``, ``R = 1`` on one
        device); None when there is none to save (no carry yet, or a multi-process
        strategy: a process holds its own replicas' shards only)."""
        if not self.enabled or self.state is None or distribute.multi_process(self.strategy):
            return None
        if self.strategy is None:
            return [np.asarray(leaf)[None] for leaf in tf.nest.flatten(self.state)]
        return [np.stack([np.asarray(v) for v in
                          self.strategy.experimental_local_results(leaf)])
                for leaf in tf.nest.flatten(self.state)]

    def load(self, arrays):
        """The checkpoint's arrays (:meth:`arrays`), used at the next episode."""
        self._restored = None
        if arrays and self.enabled and not distribute.multi_process(self.strategy):
            self._restored = arrays

    def _unpack(self, arrays, template):
        """``arrays`` in the structure of a fresh ``template`` state (per-replica values
        under a strategy); None, with a note, when they do not fit."""
        leaves = self._local_leaves(template)
        replicas = distribute.num_replicas(self.strategy)
        if len(arrays) != len(leaves) or any(
                a.shape != (replicas,) + tuple(leaf.shape) for a, leaf in zip(arrays, leaves)):
            self.say(f"[meta] the checkpoint's carried optimizer state does not fit "
                     f"{replicas} replica(s) of this problem; it starts afresh")
            return None
        if self.strategy is None:
            values = [tf.constant(a[0]) for a in arrays]
        else:
            values = [self.strategy.experimental_distribute_values_from_function(
                lambda ctx, a=a: tf.constant(a[ctx.replica_id_in_sync_group]))
                for a in arrays]
        return tf.nest.pack_sequence_as(template, values)
