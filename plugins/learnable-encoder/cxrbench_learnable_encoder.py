"""cxrbench model `learnable-encoder`: the seed paper's learnable-text-encoder arm, on cxrbench.diffusion."""

from collections.abc import Callable

from cxrbench.diffusion import DiffusionModel
from cxrbench.hookspecs import hookimpl


class LearnableEncoderModel(DiffusionModel, train_text_encoder=True):
    model_id = "learnable-encoder"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: "
        "the text encoder is fine-tuned jointly with the UNet at its own learning rate."
    )


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(LearnableEncoderModel)
