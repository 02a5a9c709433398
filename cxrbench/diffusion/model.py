"""``DiffusionModel``: a small text-to-image diffusion model on the benchmark contract.

A diffusers ``UNet2DConditionModel`` trained from scratch on the pixel-unshuffled image (see
``cxrbench.diffusion.unet``), conditioned on a pretrained text encoder's last hidden state (see
``cxrbench.diffusion.text``), trained with the DDPM epsilon loss (``training``), sampled with DDIM
(``sampling``), and localizing with its cross-attention (``cxrbench.attention``). An encoder strategy is
a subclass that sets ``model_id`` and its options' defaults, or overrides ``build_text_conditioner``. A
strategy whose model id says whether the encoder trains fixes it with a class keyword (its ``Options``
then accept only that value, see ``fixed_text_encoder``)::

    class FrozenEncoderModel(DiffusionModel, train_text_encoder=False):
        model_id = "frozen-encoder"

Models built from other components (a pretrained UNet, a VAE latent space, another tokenizer and
encoder: the Stable Diffusion plugin) override ``build`` to set ``unet``, ``text``, ``noise_scheduler``
and ``space`` (``cxrbench.diffusion.spaces``), and ``training_settings`` for mixed precision, gradient
accumulation and EMA; fit, generate, localize, save and load then work unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, create_model

from cxrbench.attention import extract_cross_attention, token_group_maps, token_group_weights
from cxrbench.data.schema import Sample
from cxrbench.diffusion.acceleration import compile_requested, compiled
from cxrbench.diffusion.sampling import sample
from cxrbench.diffusion.spaces import PixelSpace, SampleSpace, images_tensor
from cxrbench.diffusion.text import TextConditioner, load_text_encoder
from cxrbench.diffusion.training import autocast, train_denoiser
from cxrbench.diffusion.unet import build_unet, unshuffle_factor_for
from cxrbench.errors import ProtocolError
from cxrbench.model import (
    GENERATE,
    LOCALIZE,
    ExtractionConfig,
    FitContext,
    LocalizationQuery,
    Model,
    ModelOptions,
    PretrainedBase,
    SamplerConfig,
    TrainingBudget,
)
from cxrbench.pretrained import base_manifest, load_base_state
from cxrbench.protocol import derive_seed

#: The options a pretrained base's UNet weights depend on (``start_from_base`` compares them).
BASE_ARCHITECTURE = ("block_out_channels", "layers_per_block", "attention_heads", "norm_num_groups",
                     "beta_schedule", "num_train_timesteps")
STATE_FORMAT = 1
STATE_FILE = "model.json"
UNET_FILE = "unet.safetensors"
EMA_UNET_FILE = "unet_ema.safetensors"
TEXT_ENCODER_FILE = "text_encoder.safetensors"


class DiffusionOptions(ModelOptions):
    """Architecture and training options of a ``DiffusionModel`` (unknown keys are an error)."""

    block_out_channels: tuple[int, ...] = Field((32, 64), min_length=1)
    layers_per_block: int = Field(1, ge=1)
    attention_heads: int = Field(2, ge=1, description="heads per attention layer (few are faster on CPU)")
    norm_num_groups: int = Field(32, ge=1)
    unshuffle_factor: int | None = Field(
        None, ge=1, description="pixel-unshuffle factor; None: image_size // 16, so the UNet grid is 16 x 16"
    )
    max_tokens: int = Field(32, ge=2, description="prompt length in tokens, start/end markers included")
    text_encoder_path: str | None = Field(
        None, description="local transformers folder of the text encoder; None: all-MiniLM-L6-v2"
    )
    train_text_encoder: bool = False
    text_encoder_learning_rate: float | None = Field(
        None, gt=0, description="None: the track budget's text_encoder_learning_rate"
    )
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    num_train_timesteps: int = Field(1000, ge=2)
    max_grad_norm: float | None = Field(1.0, gt=0)
    generation_batch_size: int = Field(64, ge=1, description="images per sampling batch")
    extraction_rows_per_forward: int = Field(
        160, ge=1, description="(image, timestep) rows per UNet forward when localizing"
    )


def fixed_text_encoder(options: type[ModelOptions], trainable: bool) -> type[ModelOptions]:
    """``options`` with ``train_text_encoder`` fixed to ``trainable`` (a ``Literal``): for a model id that
    names its strategy, so every result of the id records the value it ran with and no option can change
    it. The other fields (their order and defaults) are those of ``options``."""
    if "train_text_encoder" not in options.model_fields:
        raise TypeError(f"{options.__qualname__} has no train_text_encoder option to fix")
    value_type = Literal[True] if trainable else Literal[False]
    fixed = create_model("Options", __base__=options, __module__=options.__module__,
                         train_text_encoder=(value_type, trainable))
    fixed.__qualname__ = f"{options.__qualname__}[train_text_encoder={trainable}]"
    return fixed


@contextmanager
def seeded_torch_draws(seed: int) -> Iterator[None]:
    """Inside the block, torch's global CPU generator draws from ``seed``; after it, its state is what it
    was before. For weights a library initializes from the global generator (peft's adapters, a
    transformers model built from a config): they come from ``seed`` alone, and the draws the caller
    makes afterwards (the UNet's initialization) are those it would make without them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class DiffusionModel(Model):
    """Text-to-image diffusion with cross-attention localization; subclasses choose the text strategy.

    ``class M(DiffusionModel, train_text_encoder=True)`` fixes ``M.Options``' ``train_text_encoder``
    (``fixed_text_encoder``), whether ``M`` defines ``Options`` or inherits them.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE, LOCALIZE})
    Options: ClassVar[type[ModelOptions]] = DiffusionOptions
    description: ClassVar[str] = "Small diffusers UNet on pixel-unshuffled images, pretrained text encoder."

    def __init_subclass__(cls, train_text_encoder: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if train_text_encoder is not None:
            cls.Options = fixed_text_encoder(cls.Options, train_text_encoder)
            # Named as a nested class would be, so that pickle finds it (options sent to worker processes).
            cls.Options.__module__, cls.Options.__qualname__ = cls.__module__, f"{cls.__qualname__}.Options"

    def __init__(self, options: ModelOptions | dict[str, Any] | None = None) -> None:
        super().__init__(options)
        #: ``FitContext.seed`` of the fit that built the model (None: built by ``load`` or directly).
        self.fit_seed: int | None = None
        self.unet: torch.nn.Module | None = None
        self.text: TextConditioner | None = None
        self.noise_scheduler: Any = None
        self.space: SampleSpace | None = None
        self.image_size: int | None = None
        self.factor: int | None = None
        self.device = torch.device("cpu")
        #: Autocast precision of every UNet forward ("no", "fp16", "bf16"); set by ``build``.
        self.mixed_precision = "no"
        #: The last training step's UNet weights (CPU) when the UNet holds their moving average instead.
        self.raw_unet_state: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------------------------- building

    def component_seed(self, component: str) -> int:
        """The seed of a component's random initial weights drawn in ``build`` (LoRA's adapters):
        ``derive_seed(FitContext.seed, component)`` in ``fit``. A model built outside a fit uses seed 0;
        one rebuilt by ``load`` then replaces what it drew with its saved weights."""
        return derive_seed(0 if self.fit_seed is None else self.fit_seed, component)

    def build_text_conditioner(self) -> TextConditioner:
        """The text strategy: the pretrained encoder, frozen or trainable per ``train_text_encoder``."""
        tokenizer, encoder = load_text_encoder(self.options.text_encoder_path)
        return TextConditioner(tokenizer, encoder, self.options.max_tokens, self.options.train_text_encoder)

    def build(self, image_size: int, device: torch.device | str) -> None:
        """Make the components for ``image_size`` on ``device``: ``unet`` (fresh weights, drawn from the
        global generator), ``text``, ``noise_scheduler`` (the training schedule) and ``space``."""
        from diffusers import DDPMScheduler

        opts = self.options
        self.device = torch.device(device)
        self.image_size = int(image_size)
        levels = len(opts.block_out_channels)
        self.factor = unshuffle_factor_for(self.image_size, opts.unshuffle_factor, levels)
        self.space = PixelSpace(self.factor)
        self.text = self.build_text_conditioner().to(self.device)
        self.unet = build_unet(
            in_channels=self.factor**2,
            cross_attention_dim=self.text.hidden_size,
            block_out_channels=tuple(opts.block_out_channels),
            layers_per_block=opts.layers_per_block,
            attention_heads=opts.attention_heads,
            norm_num_groups=opts.norm_num_groups,
        ).to(self.device)
        self.unet.eval()
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=opts.num_train_timesteps, beta_schedule=opts.beta_schedule
        )

    def start_from_base(self, base: PretrainedBase) -> None:
        """Load a track's pretrained base into the UNet just built (``fit`` does, when the track has one).

        The base's manifest names the options its weights fit; a model whose UNet differs (another width,
        depth, head count, grid, schedule or text width) is refused with the option that differs, since its
        fit would not start where the track says every entry starts.
        """
        manifest = base_manifest(base)
        fitted = manifest["options"]
        mine = self.config()
        for key in BASE_ARCHITECTURE:
            if key not in mine or _plain(fitted.get(key)) != _plain(mine[key]):
                raise ProtocolError(
                    f"model {self.model_id!r} cannot start from the pretrained base {base.name!r}: its option "
                    f"{key} is {mine.get(key)!r}, but the base's weights fit {fitted.get(key)!r}"
                )
        expected = {"image_size": self.image_size, "unshuffle_factor": self.factor,
                    "cross_attention_dim": self.text.hidden_size}
        for key, value in expected.items():
            if manifest.get(key) != value:
                raise ProtocolError(
                    f"model {self.model_id!r} cannot start from the pretrained base {base.name!r}: its {key} is "
                    f"{value}, but the base was pretrained with {manifest.get(key)!r}"
                )
        state = load_base_state(base, f"model {self.model_id!r}")
        self.unet.load_state_dict({k: v.to(self.device) for k, v in state.items()})

    def training_settings(self, budget: TrainingBudget) -> dict[str, Any]:
        """Keyword arguments of ``train_denoiser`` beyond data and budget, plus ``ema_decay`` (None: no
        moving average of the UNet weights)."""
        opts = self.options
        return {
            "text_learning_rate": opts.text_encoder_learning_rate or budget.text_encoder_learning_rate,
            "max_grad_norm": opts.max_grad_norm,
            "ema_decay": None,
        }

    def before_training_step(self, step: int, budget: TrainingBudget) -> None:
        """Called before optimizer step ``step`` (0-based) of ``fit``, also for every step after a resume:
        a strategy that changes during training (an encoder schedule) sets its state for ``step`` here,
        from the step alone. Default: nothing."""

    def _require_fitted(self, image_size: int) -> None:
        if self.unet is None:
            raise ProtocolError(f"model {self.model_id!r} must be fitted (fit) or restored (load) before use")
        if image_size != self.image_size:
            raise ProtocolError(
                f"image_size must be the size the model was fitted at ({self.image_size}), "
                f"but got {image_size}"
            )

    def _images_tensor(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        return images_tensor(images, self.image_size).to(self.device)

    # ------------------------------------------------------------------------------------ contract

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        """Train the UNet (and the encoder when trainable) for exactly ``budget.steps`` steps.

        Deterministic for a seed: ``torch.manual_seed(context.seed)`` before the weights are made (a
        component that draws its own weights seeds them from ``component_seed``), and every random draw
        of training comes from generators seeded from ``context.seed``. The training
        images are brought into the sample space once (``SampleSpace.encode_training_set``). With an
        EMA decay, the UNet ends up holding the moving average (what generate and localize use) and
        ``raw_unet_state`` the last step's weights.
        """
        if not train:
            raise ProtocolError("train must hold at least one sample, but got none")
        torch.manual_seed(context.seed)
        self.fit_seed = context.seed
        self.build(context.image_size, context.device)
        if context.base is not None:
            self.start_from_base(context.base)
        clean = self.space.encode_training_set(train, self.image_size, self.device,
                                               derive_seed(context.seed, "encode"), context.workdir)
        settings = self.training_settings(budget)
        ema_decay = settings.pop("ema_decay", None)
        ema = None
        if ema_decay is not None:
            from diffusers.training_utils import EMAModel

            ema = EMAModel(self.unet.parameters(), decay=ema_decay, foreach=True)
        train_denoiser(
            self.unet, self.text, clean, [s.report for s in train], budget, context, self.noise_scheduler,
            mixed_precision=self.mixed_precision, ema=ema,
            before_step=lambda step: self.before_training_step(step, budget),
            compile_unet=compile_requested(), **settings,
        )
        self.raw_unet_state = None
        if ema is not None:
            self.raw_unet_state = {k: v.detach().cpu().clone() for k, v in self.unet.state_dict().items()}
            ema.copy_to(self.unet.parameters())

    def generate(
        self, prompts: Sequence[str], seeds: Sequence[int], image_size: int, sampler: SamplerConfig
    ) -> np.ndarray:
        """Images (N, H, W) in [0, 1]; each (prompt, seed) gives the same image in any batch."""
        self._require_fitted(image_size)
        if len(prompts) != len(seeds):
            raise ProtocolError(
                f"prompts and seeds must have the same length, but got {len(prompts)} and {len(seeds)}"
            )
        shape = self.space.sample_shape(image_size)
        batch = self.options.generation_batch_size
        forward = compiled(self.unet) if compile_requested() else self.unet
        out = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch):
                stop = start + batch
                with autocast(self.device, self.mixed_precision):
                    samples = sample(forward, self.text, list(prompts[start:stop]), list(seeds[start:stop]),
                                     shape, sampler, self.noise_scheduler.config)
                out.append(self.space.decode(samples.float()).cpu())
        if not out:
            return np.zeros((0, image_size, image_size), dtype=np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    def localize(
        self, images: np.ndarray, queries: Sequence[LocalizationQuery], extraction: ExtractionConfig
    ) -> list[dict[str, np.ndarray]]:
        """Cross-attention maps per query and token group, at the input images' resolution.

        Each distinct (sample, report) goes through ``extract_cross_attention`` once: noised to every
        ``extraction.timesteps`` with noise seeded by ``derive_seed(extraction.noise_seed, sample_id)``,
        conditioned on its report, no guidance. The token groups are those of ``token_group_weights``.
        """
        if self.unet is None:
            raise ProtocolError(f"model {self.model_id!r} must be fitted (fit) or restored (load) before use")
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 3 or len(images) != len(queries):
            raise ProtocolError(
                f"images must be (N, H, W) with one image per query ({len(queries)}), "
                f"but got shape {images.shape}"
            )
        horizon = self.noise_scheduler.config.num_train_timesteps
        bad = [t for t in extraction.timesteps if not 0 <= t < horizon]
        if bad:
            raise ProtocolError(f"extraction timesteps must lie in [0, {horizon}), but got {bad}")
        unique: dict[tuple[str, str], int] = {}
        slot_of_query = []
        for i, query in enumerate(queries):
            key = (query.sample_id, query.report)
            first = unique.get(key)
            if first is None or not np.array_equal(images[first], images[i]):
                unique[key] = first = i
            slot_of_query.append(first)
        firsts = sorted(set(slot_of_query))
        position = {q: k for k, q in enumerate(firsts)}

        with torch.no_grad(), autocast(self.device, self.mixed_precision):
            clean = self.space.encode(self._images_tensor(images[firsts]))
            hidden, mask = self.text.encode([queries[i].report for i in firsts])
            attention = extract_cross_attention(
                self.unet, clean, hidden, extraction.timesteps, self.noise_scheduler,
                [derive_seed(extraction.noise_seed, queries[i].sample_id) for i in firsts],
                encoder_attention_mask=mask, rows_per_forward=self.options.extraction_rows_per_forward,
            )
        maps = []
        size = tuple(images.shape[1:])
        for query, first in zip(queries, slot_of_query):
            spans = self.text.token_spans(query.report)
            weights = token_group_weights(query.report, query.query_words, spans)
            maps.append(token_group_maps(attention[position[first]], weights, size))
        return maps

    # ------------------------------------------------------------------------------- persistence

    def save(self, directory: Path) -> bool:
        """Write ``model.json`` (options, image size), the UNet and, when trained, the text encoder weights
        (safetensors). A frozen encoder is not saved: it is the pretrained one. With EMA, ``unet.safetensors``
        holds the last step's weights and ``unet_ema.safetensors`` their moving average."""
        from safetensors.torch import save_file

        if self.unet is None:
            return False
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.raw_unet_state is not None:
            save_file(_contiguous(self.raw_unet_state), str(directory / UNET_FILE))
            save_file(_contiguous(self.unet.state_dict()), str(directory / EMA_UNET_FILE))
        else:
            save_file(_contiguous(self.unet.state_dict()), str(directory / UNET_FILE))
            (directory / EMA_UNET_FILE).unlink(missing_ok=True)
        if self.text.trainable:
            save_file(_contiguous(self.text.state_dict()), str(directory / TEXT_ENCODER_FILE))
        state = {
            "format": STATE_FORMAT,
            "model_id": self.model_id,
            "options": self.config(),
            "image_size": self.image_size,
            "unshuffle_factor": self.factor,
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
        return True

    def load(self, directory: Path) -> bool:
        """Restore what ``save`` wrote. Returns False when ``directory`` holds no saved state, or state
        saved with other options (it would not be this configuration's fit)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        path = directory / STATE_FILE
        if not path.is_file():
            return False
        state = json.loads(path.read_text())
        if state.get("format") != STATE_FORMAT or state.get("options") != self.config():
            return False
        self.build(state["image_size"], self.device)
        ema_path = directory / EMA_UNET_FILE
        if ema_path.is_file():
            self.raw_unet_state = load_file(str(directory / UNET_FILE), device="cpu")
            self.unet.load_state_dict(load_file(str(ema_path), device=str(self.device)))
        else:
            self.raw_unet_state = None
            self.unet.load_state_dict(load_file(str(directory / UNET_FILE), device=str(self.device)))
        if self.text.trainable:
            self.text.load_state_dict(load_file(str(directory / TEXT_ENCODER_FILE), device=str(self.device)))
        return True


def _plain(value: Any) -> Any:
    """Tuples and lists compare equal (JSON has no tuples)."""
    return list(value) if isinstance(value, tuple | list) else value


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in state.items()}
