"""cxrbench model `lora-encoder`: all-MiniLM-L6-v2 adapted with low-rank adapters (LoRA), base frozen.

peft's LoRA (Hu et al., 2021) is injected into the encoder's attention projections (``query``, ``key``,
``value``; add ``dense`` to the ``target_modules`` option for the output and feed-forward projections):
each adapted layer computes ``W x + (alpha / rank) B A x`` with ``W`` the frozen pretrained weight and
``A`` (rank x in), ``B`` (out x rank) trained at the track's text-encoder learning rate. ``B`` starts at
zero, so training starts from the pretrained encoder exactly. Saved models and training checkpoints
hold only the adapter weights.
"""

from collections.abc import Callable, Sequence

import torch
from pydantic import Field

from cxrbench.diffusion import (
    DiffusionModel,
    DiffusionOptions,
    TextConditioner,
    load_text_encoder,
    seeded_torch_draws,
)
from cxrbench.hookspecs import hookimpl
from cxrbench.model import FitContext, Sample, TrainingBudget

#: peft's name for the adapter weights (``lora_A``, ``lora_B``) and their dropout.
ADAPTER_MARK = "lora_"


def is_adapter_weight(name: str) -> bool:
    return ADAPTER_MARK in name


class LoraEncoderModel(DiffusionModel, train_text_encoder=True):
    model_id = "lora-encoder"
    capabilities = frozenset({"generate", "localize"})
    description = (
        "Diffusion UNet on pixel-unshuffled images; all-MiniLM-L6-v2 text encoder: frozen, with low-rank "
        "adapters (LoRA) on its attention projections learned jointly with the UNet."
    )

    # train_text_encoder is fixed to true: the adapters train, the base weights never do.
    class Options(DiffusionOptions):
        rank: int = Field(8, ge=1, description="rank of the adapters (peft r)")
        alpha: float = Field(16.0, gt=0, description="adapter scale numerator: updates scale by alpha / rank")
        dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input while training")
        target_modules: tuple[str, ...] = Field(
            ("query", "key", "value"), min_length=1,
            description="encoder Linear layers to adapt, by name suffix (peft target_modules); add 'dense' "
                        "for the attention output and feed-forward layers",
        )

    def build_text_conditioner(self) -> TextConditioner:
        from peft import LoraConfig, inject_adapter_in_model

        opts = self.options
        tokenizer, encoder = load_text_encoder(opts.text_encoder_path)
        config = LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                            target_modules=list(opts.target_modules))
        # The adapters' random initialization is drawn from a seed of their own, derived from the fit's
        # seed, so the UNet gets the same initial weights as under every other encoder strategy.
        with seeded_torch_draws(self.component_seed("lora")):
            encoder = inject_adapter_in_model(config, encoder)
        return TextConditioner(tokenizer, encoder, opts.max_tokens, trainable=True,
                               trainable_weights=is_adapter_weight)

    def _adapter_dropout(self, training: bool) -> None:
        for name, module in self.text.encoder.named_modules():
            if isinstance(module, torch.nn.Dropout) and is_adapter_weight(name):
                module.train(training)

    def before_training_step(self, step: int, budget: TrainingBudget) -> None:
        # The encoder stays in eval mode (no dropout of its own); only the adapters' dropout is active.
        self._adapter_dropout(self.options.dropout > 0)

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        super().fit(train, budget, context)
        self._adapter_dropout(False)


@hookimpl
def cxrbench_register_models(register: Callable[[type], None]) -> None:
    register(LoraEncoderModel)
