"""cxrbench model `frozen-encoder`: the seed paper's frozen-text-encoder arm, on cxrbench.diffusion."""

from collections.abc import Callable
from typing import Literal

from cxrbench.diffusion import DiffusionModel, DiffusionOptions
from cxrbench.hookspecs import hookimpl


class FrozenEncoderModel(DiffusionModel):
    model_id = "frozen-encoder"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: "
        "the text encoder stays frozen (embeddings cached); only the UNet learns."
    )

    class Options(DiffusionOptions):
        #: Fixed: the model id names the strategy, so every result of this id used it.
        train_text_encoder: Literal[False] = False


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(FrozenEncoderModel)
