"""The settings of progressive (layer-wise) training, one dataclass
(:class:`ProgressiveSettings`; :class:`model_based.progressive.ProgressiveTrainer` takes it,
or its fields by name)."""
import dataclasses
from typing import Optional

from open_l2o_tf.errors import UserError

TASKS = ("sc", "lasso")
KEEPS = ("last", "best")
DECAY_MODES = ("grad", "lr")


@dataclasses.dataclass(frozen=True)
class ProgressiveSettings:
    """task: ``"sc"`` (sparse coding, NMSE) or ``"lasso"`` (Lasso objective, needs ``lam``).
    lr: base learning rate (5e-4); the stages use ``lr * (1, 0.2, 0.02)``.
    grad_multiplier: the age decay (0.3); decay_mode: ``"grad"`` (original) or ``"lr"``.
    patience: early-stopping patience in epochs (5).
    steps_per_epoch, batch_size, val_batch_size: 400, 128, 1024.
    max_epochs: cap on the epochs of one stage (None: no cap, as the original).
    keep: ``"last"`` (original) or ``"best"``.
    lasso_factor: the Lasso loss's factor on ``||A x - y||^2`` (0.25, the original's).
    seed: seed of the batch order.
    jit_compile: XLA-compile the whole epoch.
    cache_stage1: run the fixed first ``t - 1`` layers once per stage 1.
    checkpoint_seconds: within a stage, a checkpoint (weights, the stage's Adam slots and its
      early-stopping state) after the first epoch that ends this many seconds after the
      last one (600; 0: after every epoch; None: only at the ends of stages).
    """

    task: str = "sc"
    lam: Optional[float] = None
    lr: float = 5e-4
    grad_multiplier: float = 0.3
    decay_mode: str = "grad"
    patience: int = 5
    steps_per_epoch: int = 400
    batch_size: int = 128
    val_batch_size: int = 1024
    max_epochs: Optional[int] = None
    keep: str = "last"
    lasso_factor: float = 0.25
    seed: int = 0
    jit_compile: bool = True
    cache_stage1: bool = True
    checkpoint_seconds: Optional[float] = 600.0

    def __post_init__(self):
        if self.task not in TASKS:
            raise UserError(f"task must be 'sc' or 'lasso', got {self.task!r}")
        if self.task == "lasso" and self.lam is None:
            raise UserError("task 'lasso' needs lam")
        if self.keep not in KEEPS:
            raise UserError(f"keep must be 'last' or 'best', got {self.keep!r}")
        if self.checkpoint_seconds is not None and self.checkpoint_seconds < 0:
            raise UserError("checkpoint_seconds must be >= 0 (or None), got "
                            f"{self.checkpoint_seconds!r}")
        if self.decay_mode not in DECAY_MODES:
            raise UserError(f"decay_mode must be 'grad' or 'lr', got {self.decay_mode!r}")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
