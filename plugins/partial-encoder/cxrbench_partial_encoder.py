"""cxrbench model `partial-encoder`: only the last transformer layers of all-MiniLM-L6-v2 learn.

The last ``trainable_layers`` of the encoder's transformer layers are fine-tuned jointly with the UNet at
the track's text-encoder learning rate; the embeddings and the layers below stay pretrained (and are not
saved with the model). Between the frozen and the learnable encoder: the lower layers' contextual
states are fixed, the top layers may still move information between tokens.
"""

from collections.abc import Callable

from pydantic import Field

from cxrbench.diffusion import DiffusionModel, DiffusionOptions, TextConditioner, load_text_encoder
from cxrbench.errors import ProtocolError
from cxrbench.hookspecs import hookimpl


class PartialEncoderModel(DiffusionModel, train_text_encoder=True):
    model_id = "partial-encoder"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: only its last "
        "transformer layers are fine-tuned with the UNet, embeddings and lower layers frozen."
    )

    class Options(DiffusionOptions):
        trainable_layers: int = Field(2, ge=1, description="how many of the encoder's last layers learn")

    def build_text_conditioner(self) -> TextConditioner:
        tokenizer, encoder = load_text_encoder(self.options.text_encoder_path)
        total = int(encoder.config.num_hidden_layers)
        count = self.options.trainable_layers
        if count > total:
            raise ProtocolError(
                f"trainable_layers must be at most the encoder's {total} layers, but got {count}"
            )
        trained = tuple(f"encoder.layer.{i}." for i in range(total - count, total))
        return TextConditioner(tokenizer, encoder, self.options.max_tokens, trainable=True,
                               trainable_weights=lambda name: name.startswith(trained))


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(PartialEncoderModel)
