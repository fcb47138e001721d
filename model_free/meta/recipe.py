"""The meta-training recipe: every setting of a :class:`model_free.meta.meta_trainer.MetaTrainer`
run in one dataclass (the optimizer's choices, from its class's ``meta_training``, and the
run's: horizon, model selection, seed).

A learned optimizer's ``meta_training`` returns a :class:`MetaRecipe` (or a dict of its
field names, :meth:`MetaRecipe.of`); :func:`model_free.meta.training.meta_train_or_load` adds the
run's settings with :meth:`MetaRecipe.replace`.  The meta learning rate is ``meta_lr``
everywhere, its default :data:`DEFAULT_META_LR` (Adam 1e-3, the original's for L2O-DM,
RNNprop and L2O-Swarm) written here only.
"""
import dataclasses
from typing import Any, Optional, Union

from open_l2o_tf.errors import UserError

DEFAULT_META_LR = 1e-3
SELECTIONS = ("original", "last_truncation", "horizon_mean")
OBJECTIVES = ("sum", "log_ratio")


@dataclasses.dataclass(frozen=True)
class MetaRecipe:
    """Settings of one meta-training run.

    unroll: optimizee steps per episode (100); truncation: steps per meta-update (20).
    meta_lr: learning rate of the default meta-optimizer (Adam) and of the imitation
      episodes' Adam.
    meta_optimizer: a Keras optimizer for the weights (None: ``Adam(meta_lr)``).
    meta_objective: ``"sum"`` (the sum of a truncation's losses, DM/RNNprop) or
      ``"log_ratio"`` (L2O-Scale; :mod:`model_free.meta.truncation`).
    clip_value: clip meta-gradients elementwise to ``+-clip_value`` (None: no clipping).
    second_order: keep the gradient through the optimizee gradients.
    carry_state: carry the optimizer's state from one episode into the next
      (:mod:`model_free.meta.carry`).
    curriculum, imitation: optional :class:`model_free.meta.curriculum.Curriculum` and
      :class:`model_free.meta.imitation.Imitation`.
    random_scale: None, or the bound r of RNNprop's random scaling ``exp(U(-r, r))``.
    selection, eval_every, eval_instances: model selection (:mod:`model_free.meta.selection`).
    seed: the run's seed; jit_compile: XLA-compile the one-device truncation and the
      model selection: True, False or ``"networks"`` (for the neural-network optimizees
      only: :func:`compiles`);
    deterministic: Grappler off (None: the device's default, :mod:`open_l2o_tf.device`).
    """

    unroll: int = 100
    truncation: int = 20
    meta_lr: float = DEFAULT_META_LR
    meta_optimizer: Any = None
    meta_objective: str = "sum"
    clip_value: Optional[float] = None
    second_order: bool = False
    carry_state: bool = False
    curriculum: Any = None
    imitation: Any = None
    random_scale: Optional[float] = None
    selection: str = "last_truncation"
    eval_every: int = 10
    eval_instances: int = 2
    seed: int = 0
    jit_compile: Union[bool, str] = False
    deterministic: Optional[bool] = None

    def __post_init__(self):
        if self.jit_compile not in (True, False, "networks"):
            raise ValueError(f"jit_compile must be True, False or 'networks', got "
                             f"{self.jit_compile!r}")
        if self.meta_objective not in OBJECTIVES:
            raise ValueError(f"meta_objective must be one of {OBJECTIVES}, got "
                             f"{self.meta_objective!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if not self.meta_lr > 0:     # the one check of the rate (--meta_lr's too)
            raise UserError(f"the meta learning rate (meta_lr) must be a positive number, "
                            f"got {self.meta_lr}")

    def replace(self, **changes):
        """A copy with ``changes`` (field names; a None ``meta_lr`` keeps this one's)."""
        if changes.get("meta_lr", 0) is None:
            changes.pop("meta_lr")
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, value):
        """``value`` as a recipe: a :class:`MetaRecipe`, a dict of its field names, or None
        (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls().replace(**dict(value))


def compiles(recipe, optimizee):
    """Whether the truncation and the model selection of ``recipe`` on ``optimizee`` are
    XLA-compiled: ``recipe.jit_compile`` (``"networks"``: only for the stochastic
    optimizees, the neural networks), and never where XLA does not suit the optimizee on
    this device (the convnets on a CPU: :func:`open_l2o_tf.optimizees.use_xla`)."""
    from open_l2o_tf.optimizees.base import use_xla  # pylint: disable=import-outside-toplevel
    wanted = recipe.jit_compile      # (imported here: this module imports no TensorFlow)
    if wanted == "networks":
        wanted = bool(getattr(optimizee, "stochastic", False))
    return use_xla(optimizee, bool(wanted))
