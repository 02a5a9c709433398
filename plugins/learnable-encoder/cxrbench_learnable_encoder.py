"""cxrbench model `learnable-encoder`: the seed paper's learnable-text-encoder arm, on cxrbench.diffusion."""

from collections.abc import Callable
from typing import Literal

from cxrbench.diffusion import DiffusionModel, DiffusionOptions
from cxrbench.hookspecs import hookimpl


class LearnableEncoderModel(DiffusionModel):
    model_id = "learnable-encoder"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: "
        "the text encoder is fine-tuned jointly with the UNet at its own learning rate."
    )

    class Options(DiffusionOptions):
        #: Fixed: the model id names the strategy, so every result of this id used it.
        train_text_encoder: Literal[True] = True


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(LearnableEncoderModel)
