"""Several processes on one run: who is who, which samples each takes, and gathering on the main process.

Under a launcher (``accelerate launch -m cxrbench run ...``, ``torchrun ... -m cxrbench run ...``) every
process runs the same command. ``init_processes`` joins them through accelerate's ``PartialState`` (gloo
on CPU, NCCL on GPUs); the runner then fine-tunes with DDP (``cxrbench.diffusion.training``), gives
process i of P the samples i, i+P, i+2P, ... of generation and attention extraction (``map_sharded``),
and gathers what they produce on the main process, which alone scores and writes results (what only
the main process does goes through ``on_main`` and ``main_decides``). Objects travel through
``torch.distributed``'s object collectives on a gloo group, so they never need a GPU.

Without a launcher (or before ``init_processes``) there is one process and nothing here communicates.
Every per-sample random draw derives from (global seed, sample id), so which process draws a sample,
and with which others in its batch, does not change what is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cxrbench.errors import CxrbenchError

R = TypeVar("R")

#: Environment variables through which launchers announce the number of processes.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@dataclass(frozen=True)
class Processes:
    """This process's place among the run's processes: ``index`` of ``count`` (0 is the main process);
    ``local_index`` on its node (it picks the GPU)."""

    index: int = 0
    count: int = 1
    local_index: int = 0

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1


class RemoteError(CxrbenchError):
    """Another process of the run failed; the message names it and its error."""


_PROCESSES = Processes()
_GROUP: Any = None  # the gloo group objects travel on (None: the default group, already gloo)


def launched() -> bool:
    """Whether a launcher started this process as one of several."""
    for name in _WORLD_SIZE_VARIABLES:
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def init_processes(device: str = "cpu") -> Processes:
    """Join the other processes of the run when a launcher started several; return this one's place.

    ``device``: the run's device; "cpu" makes accelerate use gloo, a GPU device NCCL (objects still
    travel on a gloo group). Call it at the same point in every process; calling it again is harmless.
    """
    global _PROCESSES, _GROUP
    if _PROCESSES.distributed or not launched():
        return _PROCESSES
    # lazy, as every torch import here: a run of one process never imports torch.distributed or accelerate
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=torch.device(device).type == "cpu")
    if state.num_processes > 1:
        _GROUP = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        _PROCESSES = Processes(state.process_index, state.num_processes, state.local_process_index)
    return _PROCESSES


def processes() -> Processes:
    """This process's place (one process of one until ``init_processes`` joined several)."""
    return _PROCESSES


def on_main(action: Callable[[], R]) -> R | None:
    """``action()`` on the main process, None on the others.

    The one place that decides what only the main process does: write artifacts and results, print, score.
    """
    return action() if _PROCESSES.is_main else None


def main_decides(action: Callable[[], R]) -> R:
    """``action()`` run on the main process only; every process gets its value (every process must call it)."""
    return broadcast_from_main(on_main(action))


def process_device(device: str) -> str:
    """The device of this process: a plain "cuda" becomes this process's GPU, "cuda:<local index>"."""
    if _PROCESSES.distributed and device == "cuda":
        return f"cuda:{_PROCESSES.local_index}"
    return device


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every process's ``obj`` in process order on the main process; None on the others."""
    if not _PROCESSES.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * _PROCESSES.count if _PROCESSES.is_main else None
    dist.gather_object(obj, out, dst=0, group=_GROUP)
    return out


def broadcast_from_main(obj: Any) -> Any:
    """The main process's ``obj``, on every process."""
    if not _PROCESSES.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_GROUP)
    return box[0]


def mean_across(value: float) -> float:
    """The mean of ``value`` over all processes (``value`` itself for one process)."""
    if not _PROCESSES.distributed:
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(total, group=_GROUP)
    return float(total.item()) / _PROCESSES.count


def barrier() -> None:
    """Wait until every process got here."""
    if _PROCESSES.distributed:
        import torch.distributed as dist

        dist.barrier(group=_GROUP)


def _pack(units: Sequence[Sequence[int]], chunk: int) -> list[list[int]]:
    """Consecutive units packed into calls of at most ``chunk`` items (a larger unit goes alone)."""
    calls: list[list[int]] = []
    for unit in units:
        if calls and len(calls[-1]) + len(unit) <= chunk:
            calls[-1].extend(unit)
        else:
            calls.append(list(unit))
    return calls


def map_sharded(
    units: Sequence[Sequence[int]],
    work: Callable[[list[int]], Sequence[R]],
    chunk: int,
    progress: Callable[[int], Any] | None = None,
) -> list[R] | None:
    """Run ``work`` over the items of ``units`` split among the processes; results in item order on main.

    ``units`` groups the item positions 0..n-1 (e.g. all images of one prompt, all queries of one
    sample); process i takes units i, i+P, ... and calls ``work`` on the positions of consecutive units,
    at most ``chunk`` items a call, which returns one result per position. After every round of calls the
    main process gathers them and ``progress`` gets the number of items done. Returns the n results on
    the main process and None on the others. When ``work`` raises in any process, every process raises:
    the failing process its own exception, the others ``RemoteError``.
    """
    procs = _PROCESSES
    chunk = max(1, int(chunk))
    total = sum(len(u) for u in units)
    plans = [_pack(units[r::procs.count], chunk) for r in range(procs.count)]
    mine = plans[procs.index]
    results: list[Any] = [None] * total if procs.is_main else []
    for round_ in range(max((len(p) for p in plans), default=0)):
        positions = mine[round_] if round_ < len(mine) else []
        error: BaseException | None = None
        try:
            values = list(work(positions)) if positions else []
            if len(values) != len(positions):
                raise CxrbenchError(f"work returned {len(values)} results for {len(positions)} items")
            payload: tuple[Any, ...] = ("ok", positions, values)
        except Exception as exc:  # every process must reach the gather below, or the others wait forever
            if not procs.distributed:
                raise
            error = exc
            payload = ("error", f"process {procs.index}: {type(exc).__name__}: {exc}", None)
        gathered = gather_to_main(payload)
        failure = None
        if gathered is not None:
            failure = next((p[1] for p in gathered if p[0] == "error"), None)
        failure = broadcast_from_main(failure)
        if failure is not None:
            if error is not None:
                raise error
            raise RemoteError(f"another process failed: {failure}")
        if gathered is not None:
            done = 0
            for _, where, values in gathered:
                for position, value in zip(where, values):
                    results[position] = value
                done += len(where)
            if progress is not None:
                progress(done)
    return results if procs.is_main else None
