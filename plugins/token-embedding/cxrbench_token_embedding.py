"""cxrbench model `token-embedding`: no contextual encoder; each token id is its own learnable embedding.

The conditioning of a token is a row of an embedding table over the all-MiniLM-L6-v2 WordPiece
vocabulary, initialized from MiniLM's input word embeddings (no position embeddings, no transformer
layers): it cannot carry any other word's information. Tokenizer, token spans and the end-of-text
([SEP]) token are those of the MiniLM models, so attention maps are read exactly as for them. This is
the upper bound on word-level interpretability of the encoder strategies.
"""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from pydantic import Field
from transformers.modeling_outputs import BaseModelOutput

from cxrbench.diffusion import DiffusionModel, DiffusionOptions, TextConditioner, load_text_encoder
from cxrbench.hookspecs import hookimpl


class TokenEmbeddingEncoder(torch.nn.Module):
    """Token id -> its embedding, whatever the other tokens are. Answers like a transformers encoder
    (``config.hidden_size``, ``last_hidden_state``), so ``TextConditioner`` uses it unchanged."""

    def __init__(self, weight: torch.Tensor, padding_idx: int | None = None) -> None:
        super().__init__()
        self.embeddings = torch.nn.Embedding(*weight.shape, padding_idx=padding_idx,
                                             _weight=weight.detach().clone())
        self.config = SimpleNamespace(hidden_size=int(weight.shape[1]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
        # The mask is not needed here: no token looks at another. It still reaches the UNet.
        return BaseModelOutput(last_hidden_state=self.embeddings(input_ids))


class TokenEmbeddingModel(DiffusionModel):
    model_id = "token-embedding"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; no contextual encoder: each token id its own embedding "
        "(initialized from all-MiniLM-L6-v2's word embeddings), learned with the UNet."
    )

    class Options(DiffusionOptions):
        train_text_encoder: bool = Field(True, description="learn the embedding table (false: keep MiniLM's)")

    def build_text_conditioner(self) -> TextConditioner:
        tokenizer, encoder = load_text_encoder(self.options.text_encoder_path)
        table = encoder.get_input_embeddings()
        embeddings = TokenEmbeddingEncoder(table.weight, padding_idx=table.padding_idx)
        return TextConditioner(tokenizer, embeddings, self.options.max_tokens,
                               self.options.train_text_encoder)


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(TokenEmbeddingModel)
