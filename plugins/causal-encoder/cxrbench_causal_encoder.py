"""cxrbench models `causal-encoder-frozen` and `causal-encoder-learnable`: a CLIP-style causal text
transformer, as Stable Diffusion's text encoder is, at a small size.

The encoder is transformers' ``CLIPTextModel`` built from a ``CLIPTextConfig`` in code (hidden size
384, 4 layers, 6 heads, 77 positions by default): each token attends only to itself and the tokens
before it (the causal mask), and the last hidden state goes through CLIP's final layer norm. No
pretrained CLIP weights install offline, so its weights are random, drawn from a fixed seed
(``encoder_seed``) in a generator of their own: every fit and every seed starts from the same encoder,
and the global random state (the UNet's initialization) is untouched. ``causal-encoder-frozen`` keeps it
so (an honest control: a frozen, untrained encoder); ``causal-encoder-learnable`` trains it with the UNet
at the track's text-encoder learning rate.

Tokenizer: there is no CLIP vocabulary offline either, so prompts are tokenized with all-MiniLM-L6-v2's
WordPiece tokenizer ([CLS] ... [SEP], padded with [PAD]); the model's vocabulary size is that
tokenizer's, its ``eos_token_id`` / ``pad_token_id`` / ``bos_token_id`` are [SEP] / [PAD] / [CLS], so
CLIP's end-of-text pooling finds [SEP]. Word spans and the end-of-text token of the attention maps are
therefore those of the MiniLM models ([SEP]); under the causal mask [SEP] is the one token that has seen
the whole prompt, as CLIP's ``<|endoftext|>`` is.
"""

from collections.abc import Callable

import torch
from pydantic import Field

from cxrbench.diffusion import (
    DiffusionModel,
    DiffusionOptions,
    TextConditioner,
    load_text_encoder,
    seeded_torch_draws,
)
from cxrbench.errors import ProtocolError
from cxrbench.hookspecs import hookimpl

#: Positions of the causal encoder (CLIP's context length).
MAX_POSITIONS = 77


class CausalEncoderOptions(DiffusionOptions):
    """``DiffusionOptions`` plus the causal encoder's size and the seed of its initial weights.
    ``text_encoder_path`` names the folder whose tokenizer is used (None: all-MiniLM-L6-v2)."""

    encoder_hidden_size: int = Field(
        384, ge=8, description="width of the causal encoder (the UNet's cross-attention dimension)"
    )
    encoder_layers: int = Field(4, ge=1, description="transformer layers of the causal encoder")
    encoder_heads: int = Field(6, ge=1, description="attention heads of the causal encoder")
    encoder_seed: int = Field(0, ge=0, description="seed of the causal encoder's random initial weights")


def build_causal_encoder(tokenizer, opts: CausalEncoderOptions) -> torch.nn.Module:  # noqa: ANN001
    """A ``CLIPTextModel`` over ``tokenizer``'s vocabulary, initialized from ``opts.encoder_seed`` alone."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if opts.max_tokens > MAX_POSITIONS:
        raise ProtocolError(f"max_tokens must be at most the causal encoder's {MAX_POSITIONS} positions, "
                            f"but got {opts.max_tokens}")
    if opts.encoder_hidden_size % opts.encoder_heads:
        raise ProtocolError(f"encoder_hidden_size must be divisible by encoder_heads ({opts.encoder_heads}), "
                            f"but got {opts.encoder_hidden_size}")
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=opts.encoder_hidden_size,
        intermediate_size=4 * opts.encoder_hidden_size, num_hidden_layers=opts.encoder_layers,
        num_attention_heads=opts.encoder_heads, max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    with seeded_torch_draws(opts.encoder_seed):
        return CLIPTextModel(config)


class CausalEncoderModel(DiffusionModel):
    """The UNet conditioned on the causal encoder, frozen or trainable per ``train_text_encoder``."""

    capabilities = frozenset({"generate", "localize"})
    Options = CausalEncoderOptions

    def build_text_conditioner(self) -> TextConditioner:
        tokenizer, _ = load_text_encoder(self.options.text_encoder_path)
        encoder = build_causal_encoder(tokenizer, self.options)
        return TextConditioner(tokenizer, encoder, self.options.max_tokens, self.options.train_text_encoder)


#: What both causal-encoder models are; each description ends with what learns.
DESCRIPTION = ("Diffusion UNet on pixel-unshuffled images; small CLIP-style causal text transformer, "
               "random from a fixed seed ")


class CausalEncoderFrozenModel(CausalEncoderModel, train_text_encoder=False):
    model_id = "causal-encoder-frozen"
    description = DESCRIPTION + "and frozen (embeddings cached); only the UNet learns."


class CausalEncoderLearnableModel(CausalEncoderModel, train_text_encoder=True):
    model_id = "causal-encoder-learnable"
    description = DESCRIPTION + "and trained jointly with the UNet."


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(CausalEncoderFrozenModel)
    register(CausalEncoderLearnableModel)
