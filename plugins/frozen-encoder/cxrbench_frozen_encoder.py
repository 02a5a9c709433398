"""cxrbench model `frozen-encoder`: the seed paper's frozen-text-encoder arm, on cxrbench.diffusion."""

from collections.abc import Callable

from cxrbench.diffusion import DiffusionModel
from cxrbench.hookspecs import hookimpl


class FrozenEncoderModel(DiffusionModel, train_text_encoder=False):
    model_id = "frozen-encoder"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: "
        "the text encoder stays frozen (embeddings cached); only the UNet learns."
    )


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(FrozenEncoderModel)
