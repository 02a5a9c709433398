"""Training: the DDPM denoising objective, a fixed number of AdamW steps, deterministic per seed.

Loss (Ho et al., 2020): ``|| eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, c) ||^2`` with
t uniform over the training schedule's timesteps and eps standard normal; a schedule configured with
``prediction_type="v_prediction"`` (Stable Diffusion 2) regresses the velocity
``sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` instead (Salimans & Ho, 2022), ``"sample"`` regresses x0.
With probability ``caption_dropout`` the prompt c is replaced by "" so the same network also learns the
unconditional prediction that classifier-free guidance needs.

For large models: the batch can be split into micro-batches whose gradients are accumulated into one
optimizer step (the same step as the whole batch at once, up to float rounding), the forward passes can
run under autocast ("fp16" with a gradient scaler on CUDA, or "bf16"), and an exponential moving average
of the UNet weights can follow every step.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from cxrbench.diffusion.acceleration import compiled
from cxrbench.diffusion.checkpoints import GeneratorState, TrainingCheckpoints, training_key
from cxrbench.diffusion.text import TextConditioner
from cxrbench.distributed import mean_across, processes
from cxrbench.model import FitContext, TrainingBudget
from cxrbench.protocol import derive_seed


class EpochBatches(Iterator[torch.Tensor]):
    """Endless batches of sample indices: shuffled epochs laid end to end, cut into ``batch_size``.

    Its state (the generator and the rest of the current epoch) goes into training checkpoints.
    """

    def __init__(self, num_samples: int, batch_size: int, generator: torch.Generator) -> None:
        self.num_samples, self.batch_size, self.generator = num_samples, batch_size, generator
        self.pending = torch.empty(0, dtype=torch.long)

    def __next__(self) -> torch.Tensor:
        while self.pending.numel() < self.batch_size:
            self.pending = torch.cat([self.pending, torch.randperm(self.num_samples, generator=self.generator)])
        batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
        return batch

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state(), "pending": self.pending.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.pending = state["pending"].clone()


def batch_indices(num_samples: int, batch_size: int, generator: torch.Generator) -> EpochBatches:
    """Endless batches of sample indices: shuffled epochs laid end to end, cut into ``batch_size``."""
    return EpochBatches(num_samples, batch_size, generator)


def make_optimizer(
    unet: torch.nn.Module, text: TextConditioner, budget: TrainingBudget, text_learning_rate: float
) -> torch.optim.Optimizer:
    """AdamW over the UNet (``budget.unet_learning_rate``) and a trainable text encoder (its own lr)."""
    groups: list[dict[str, Any]] = [{"params": list(unet.parameters()), "lr": budget.unet_learning_rate}]
    text_params = text.parameters()
    if text_params:
        groups.append({"params": text_params, "lr": text_learning_rate})
    device_type = next(unet.parameters()).device.type
    # The fused kernel updates all tensors of a group at once: about 10x faster for the 22M-weight encoder.
    fused = device_type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, weight_decay=budget.weight_decay, fused=fused)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warmup over ``warmup_steps`` optimizer steps, then constant."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


#: Autocast precisions ``train_denoiser`` and the models accept ("no": float32 throughout).
MixedPrecision = Literal["no", "fp16", "bf16"]
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast(device: torch.device | str, mixed_precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` for "fp16" / "bf16"; a no-op context for "no"."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    if mixed_precision not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"mixed_precision must be one of ['no', 'fp16', 'bf16'], but got {mixed_precision!r}"
        )
    return torch.autocast(torch.device(device).type, dtype=_AUTOCAST_DTYPES[mixed_precision])


def half_dtype(mixed_precision: str) -> torch.dtype | None:
    """The dtype frozen weights can be stored in under ``mixed_precision`` (None for "no")."""
    return _AUTOCAST_DTYPES.get(mixed_precision)


def regression_target(
    noise_scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet learns to predict, per the schedule's ``prediction_type`` (epsilon by default)."""
    prediction_type = noise_scheduler.config.get("prediction_type", "epsilon")
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(clean, noise, timesteps)
    if prediction_type == "sample":
        return clean
    raise ValueError(
        f"scheduler prediction_type must be one of ['epsilon', 'v_prediction', 'sample'], "
        f"but got {prediction_type!r}"
    )


def _micro_batches(size: int, micro_batch_size: int | None) -> list[slice]:
    step = size if micro_batch_size is None else max(1, min(size, int(micro_batch_size)))
    return [slice(start, min(size, start + step)) for start in range(0, size, step)]


def _data_parallel(unet: torch.nn.Module, text: TextConditioner, device: torch.device) -> torch.nn.Module:
    """The UNet wrapped in DDP through accelerate's ``Accelerator`` (a trainable encoder is wrapped in
    place in ``text``; ``_unwrap_text`` puts it back). Gradients are averaged over the processes."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # Weights outside the loss (the pooler of a BERT-like encoder) get no gradient; DDP must expect that.
    handler = DistributedDataParallelKwargs(find_unused_parameters=bool(text.parameters()))
    # Precision and compilation are the model's own settings, never the launcher's.
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no", dynamo_backend="no",
                              device_placement=False, kwargs_handlers=[handler])
    if text.parameters():
        text.encoder = accelerator.prepare_model(text.encoder)
    return accelerator.prepare_model(unet)


def _unwrap_text(text: TextConditioner) -> None:
    if isinstance(text.encoder, torch.nn.parallel.DistributedDataParallel):
        text.encoder = text.encoder.module


def _no_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for micro-batches before the last one (gradients are reduced once per step)."""
    return contextlib.nullcontext() if sync or not hasattr(model, "no_sync") else model.no_sync()


@dataclass
class StepSettings:
    """How one optimizer step runs: everything but the batch (see ``training_step``)."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    trained: list[torch.nn.Parameter]
    max_grad_norm: float | None = None
    mixed_precision: MixedPrecision = "no"
    micro_batch_size: int | None = None
    #: Multiplies the loss before backward: under a launcher, DDP averages over processes, so each
    #: process weights its share of the batch by (its rows x processes / batch size).
    loss_weight: float = 1.0
    schedule: Any = None
    #: A diffusers ``EMAModel`` that follows ``ema_module``'s parameters after every step.
    ema: Any = None
    ema_module: torch.nn.Module | None = None


def training_step(
    model: Any, text: TextConditioner, noise_scheduler: Any, x0: torch.Tensor, noise: torch.Tensor,
    timesteps: torch.Tensor, prompts: Sequence[str], settings: StepSettings,
) -> float:
    """One optimizer step of the denoising loss on a batch; returns the batch's mean loss.

    ``model`` is what runs the UNet forward (the UNet, its DDP wrapper or its compiled form); its
    parameters are those in ``settings.optimizer``. ``prompts`` are the batch's (possibly dropped) captions.
    """
    optimizer, scaler = settings.optimizer, settings.scaler
    optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    parts = _micro_batches(len(prompts), settings.micro_batch_size)
    for part in parts:
        noisy = noise_scheduler.add_noise(x0[part], noise[part], timesteps[part])
        target = regression_target(noise_scheduler, x0[part], noise[part], timesteps[part])
        with autocast(x0.device, settings.mixed_precision), _no_sync(model, part is parts[-1]):
            hidden, mask = text.encode(prompts[part])
            prediction = model(noisy, timesteps[part], encoder_hidden_states=hidden,
                               encoder_attention_mask=mask).sample
        # Each micro-batch's mean weighted by its share: the sum is the whole batch's mean loss.
        loss = F.mse_loss(prediction.float(), target.float()) * ((part.stop - part.start) / len(prompts))
        scaler.scale(loss * settings.loss_weight).backward()
        step_loss += float(loss.detach()) * settings.loss_weight
    if settings.max_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(settings.trained, settings.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    if settings.schedule is not None:
        settings.schedule.step()
    if settings.ema is not None:
        settings.ema.step(settings.ema_module.parameters())
    return step_loss


def step_settings(unet: torch.nn.Module, text: TextConditioner, budget: TrainingBudget, text_learning_rate: float,
                  max_grad_norm: float | None, mixed_precision: MixedPrecision = "no",
                  micro_batch_size: int | None = None, ema: Any = None) -> StepSettings:
    """The optimizer (AdamW, ``make_optimizer``), warmup schedule and gradient scaler of a fit."""
    optimizer = make_optimizer(unet, text, budget, text_learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_factor(s, budget.warmup_steps))
    device = next(unet.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision == "fp16" and device.type == "cuda")
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    return StepSettings(optimizer, scaler, trained, max_grad_norm, mixed_precision, micro_batch_size,
                        schedule=schedule, ema=ema, ema_module=unet if ema is not None else None)


def train_denoiser(
    unet: torch.nn.Module,
    text: TextConditioner,
    clean_samples: torch.Tensor,
    prompts: Sequence[str],
    budget: TrainingBudget,
    context: FitContext,
    noise_scheduler: Any,
    text_learning_rate: float,
    max_grad_norm: float | None,
    mixed_precision: MixedPrecision = "no",
    micro_batch_size: int | None = None,
    ema: Any = None,
    before_step: Callable[[int], None] | None = None,
    compile_unet: bool = False,
) -> list[float]:
    """Run exactly ``budget.steps`` optimizer steps of ``budget.batch_size`` samples; return the losses.

    ``clean_samples`` (N, C, h, w) are in the UNet's input space (on any device: each batch moves to the
    UNet's), ``prompts`` their reports. Batches, noise, timesteps and caption dropout come from
    generators seeded with ``derive_seed(context.seed, ...)``; dropout layers (none in the default UNet)
    would use the global generator, which the caller seeds. ``micro_batch_size`` splits each batch for
    gradient accumulation (the random draws are those of the whole batch); ``mixed_precision`` runs the
    forward passes under ``autocast``; ``ema`` (a diffusers ``EMAModel`` over the UNet's parameters)
    steps after every optimizer step. ``before_step(step)`` (0-based) runs before every step's draws, also
    for the steps after a resume: a strategy that changes during training sets its state for that step
    there (it must depend on the step alone). ``context.progress`` is called after every step with the number
    of steps done and {"loss", "lr"}. ``compile_unet`` runs the forwards through ``torch.compile``
    (one process only; ``cxrbench.diffusion.acceleration``).

    ``context.checkpoint_every``: the whole training state is written every that many steps under
    ``context.checkpoint_dir`` (``cxrbench.diffusion.checkpoints``), and a fit of the same data, budget,
    seed and settings resumes from the latest checkpoint there, ending with the same weights. Under a
    launcher with P processes (``cxrbench.distributed``) the UNet (and a trainable encoder) is wrapped in
    DDP and process i takes samples i, i+P, ... of every batch, whose draws are still those of the whole
    batch; the averaged gradients make each step that of one process up to float rounding.
    """
    device = next(unet.parameters()).device
    batches, draws = _seeded_draws(len(prompts), budget.batch_size, context.seed)
    settings = step_settings(unet, text, budget, text_learning_rate, max_grad_norm, mixed_precision,
                             micro_batch_size, ema)
    checkpoints, parts, start, losses = _resumable_fit(
        unet, text, clean_samples, prompts, budget, context, settings, text_learning_rate, batches, draws)
    procs = processes()
    model = _data_parallel(unet, text, device) if procs.distributed else _forward_model(unet, compile_unet)
    unet.train()
    for step in range(start, budget.steps):
        if before_step is not None:
            before_step(step)
        x0, noise, timesteps, batch_prompts, settings.loss_weight = _draw_batch(
            next(batches), draws, clean_samples, prompts, budget, noise_scheduler, procs, device)
        learning_rate = settings.optimizer.param_groups[0]["lr"]
        loss = training_step(model, text, noise_scheduler, x0, noise, timesteps, batch_prompts, settings)
        losses.append(mean_across(loss))
        checkpoints.after_step(step + 1, parts, losses)
        context.progress(step + 1, {"loss": losses[-1], "lr": learning_rate})
    _unwrap_text(text)
    unet.eval()
    return losses


def _forward_model(unet: torch.nn.Module, compile_unet: bool) -> Any:
    """What runs the UNet's training forwards in one process: the UNet, or its ``torch.compile`` form."""
    return compiled(unet) if compile_unet else unet


def _seeded_draws(num_samples: int, batch_size: int, seed: int) -> tuple[Any, torch.Generator]:
    """The batch order and the generator of every step's draws, seeded from the fit's ``seed``. A fit makes
    them before its optimizer: made after it, some fits (learnable-then-frozen on the smoke track) end
    with other last bits in their floats."""
    batches = batch_indices(num_samples, batch_size, torch.Generator().manual_seed(derive_seed(seed, "batches")))
    return batches, torch.Generator().manual_seed(derive_seed(seed, "noise"))


def _resumable_fit(
    unet: torch.nn.Module, text: TextConditioner, clean_samples: torch.Tensor, prompts: Sequence[str],
    budget: TrainingBudget, context: FitContext, settings: StepSettings, text_learning_rate: float,
    batches: Any, draws: torch.Generator,
) -> tuple[TrainingCheckpoints, dict[str, Any], int, list[float]]:
    """The fit's checkpoints, restored from the latest one there is: (checkpoints, what a checkpoint holds,
    the first step to run, the losses of the steps before it)."""
    parts = _checkpoint_parts(unet, text, settings, batches, draws)
    key = _fit_key(unet, text, clean_samples, prompts, budget, context, settings, text_learning_rate)
    checkpoints = TrainingCheckpoints(context.checkpoint_dir, key, context.checkpoint_every,
                                      write=processes().is_main)
    start, losses = checkpoints.restore(parts)
    return checkpoints, parts, start, losses


def _checkpoint_parts(unet: torch.nn.Module, text: TextConditioner, settings: StepSettings, batches: Any,
                      draws: torch.Generator) -> dict[str, Any]:
    """What a training checkpoint holds: the UNet, a trainable encoder, optimizer, schedule, scaler, the
    batch order, the draws' generator and the EMA."""
    parts: dict[str, Any] = {"unet": unet, "optimizer": settings.optimizer, "schedule": settings.schedule,
                             "scaler": settings.scaler, "batches": batches, "draws": GeneratorState(draws)}
    if text.parameters():
        parts["text_encoder"] = text
    if settings.ema is not None:
        parts["ema"] = settings.ema
    return parts


def _fit_key(unet: torch.nn.Module, text: TextConditioner, clean_samples: torch.Tensor, prompts: Sequence[str],
             budget: TrainingBudget, context: FitContext, settings: StepSettings, text_learning_rate: float) -> Any:
    """The ``training_key`` of a fit: what its checkpoints must have been written with to resume it."""
    return training_key(
        seed=context.seed, budget=budget.to_dict(), samples=list(clean_samples.shape),
        prompts=hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
        weights=[[n, list(p.shape)] for n, p in unet.named_parameters()], text_weights=len(text.parameters()),
        text_learning_rate=text_learning_rate, max_grad_norm=settings.max_grad_norm,
        mixed_precision=settings.mixed_precision, micro_batch_size=settings.micro_batch_size,
        ema=settings.ema is not None, base=context.base.sha256 if context.base is not None else None,
    )


def _draw_batch(
    index: torch.Tensor, draws: torch.Generator, clean_samples: torch.Tensor, prompts: Sequence[str],
    budget: TrainingBudget, noise_scheduler: Any, procs: Any, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str], float]:
    """One step's draws for the whole batch (caption dropout, noise, timesteps), then this process's share:
    (x0, noise, timesteps, prompts, loss weight). The draws are the whole batch's under any launcher."""
    dropped = torch.rand(len(index), generator=draws) < budget.caption_dropout
    noise = torch.randn((len(index), *clean_samples.shape[1:]), generator=draws)
    timesteps = torch.randint(0, int(noise_scheduler.config.num_train_timesteps), (len(index),), generator=draws)
    share = slice(procs.index, None, procs.count)
    batch_size = len(index)
    index, dropped, noise, timesteps = index[share], dropped[share], noise[share], timesteps[share]
    batch_prompts = ["" if drop else prompts[i] for i, drop in zip(index.tolist(), dropped.tolist())]
    x0 = clean_samples[index.to(clean_samples.device)].to(device)
    weight = len(index) * procs.count / batch_size if procs.distributed else 1.0
    return x0, noise.to(device), timesteps.to(device), batch_prompts, weight
