"""cxrbench models `frozen-then-learnable` and `learnable-then-frozen`: the encoder learns for part of
the budget.

all-MiniLM-L6-v2 is frozen for the first ``round(switch_fraction * steps)`` optimizer steps and
fine-tuned (at the track's text-encoder learning rate) for the rest, or the reverse. The optimizer
holds the encoder's weights from the start; while the encoder is frozen it runs without gradients, and
AdamW skips weights without a gradient, so it neither moves them nor decays them nor touches their
moment estimates. Frozen then learnable: the encoder's Adam state starts (step count 0) at the switch.
Learnable then frozen: the state stays as the switch left it. ``round`` is Python's (half to even).
"""

from collections.abc import Callable
from typing import ClassVar

from pydantic import Field

from cxrbench.diffusion import DiffusionModel, DiffusionOptions
from cxrbench.hookspecs import hookimpl
from cxrbench.model import TrainingBudget


class EncoderScheduleOptions(DiffusionOptions):
    switch_fraction: float = Field(0.5, ge=0, le=1, description="part of the budget before the switch")


class ScheduledEncoderModel(DiffusionModel, train_text_encoder=True):
    """The encoder learns before the switch step (``learns_first``) or after it. ``train_text_encoder`` is
    fixed to true: the encoder's weights are trained (during part of the budget) and saved with the model."""

    capabilities = frozenset({"generate", "localize"})
    Options = EncoderScheduleOptions
    learns_first: ClassVar[bool] = False

    def switch_step(self, budget: TrainingBudget) -> int:
        """The first optimizer step (0-based) of the second part of the budget."""
        return round(self.options.switch_fraction * budget.steps)

    def before_training_step(self, step: int, budget: TrainingBudget) -> None:
        self.text.learning = (step < self.switch_step(budget)) == self.learns_first


class FrozenThenLearnableModel(ScheduledEncoderModel):
    model_id = "frozen-then-learnable"
    learns_first = False
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: frozen for the first "
        "part of the budget (switch_fraction), then fine-tuned with the UNet."
    )


class LearnableThenFrozenModel(ScheduledEncoderModel):
    model_id = "learnable-then-frozen"
    learns_first = True
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: fine-tuned with the UNet "
        "for the first part of the budget (switch_fraction), then frozen."
    )


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(FrozenThenLearnableModel)
    register(LearnableThenFrozenModel)
