"""pytest-benchmark suite of cross-attention extraction on the default track's UNet (random weights).

Skipped in the normal test run (``addopts`` has ``--benchmark-skip``). Run it with::

    pytest tests/benchmarks --benchmark-only [--benchmark-json extraction.json]

The same figures, with the speed-up and overhead ratios, come from ``cxrbench bench extraction --json``
(docs/performance.md).
"""

from __future__ import annotations

import copy

import pytest
import torch

from cxrbench.attention import capture_cross_attention
from cxrbench.bench import build_extraction_setup

IMAGES = 4
TIMESTEPS = 40  # the seed paper's: the last 40 of 50 DDIM steps


@pytest.fixture(scope="module")
def setup():
    return build_extraction_setup(images=IMAGES, timesteps=TIMESTEPS)


def test_batched_extraction(benchmark, setup):
    """All 4 x 40 (image, timestep) rows in batched forwards of the model's default row count."""
    maps = benchmark.pedantic(setup.extract, args=(setup.rows_per_forward,), rounds=5, warmup_rounds=1)
    assert maps.shape[0] == IMAGES


def test_sequential_extraction(benchmark, setup):
    """One UNet forward per (image, timestep): 160 forwards."""
    maps = benchmark.pedantic(setup.extract, args=(1,), rounds=3, warmup_rounds=1)
    assert maps.shape[0] == IMAGES


def test_plain_forward(benchmark, setup):
    """One forward of the batched row count with the UNet's own (SDPA) attention processors."""
    _, noisy, t, text, mask = setup.forward_inputs()

    def forward():
        with torch.no_grad():
            return setup.unet(noisy, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample

    benchmark.pedantic(forward, rounds=5, warmup_rounds=1)


def test_captured_forward(benchmark, setup):
    """The same forward with attn2 probabilities captured into running sums (the capture processors stay
    installed on a copy of the UNet, as during an extraction)."""
    image, noisy, t, text, mask = setup.forward_inputs()
    unet = copy.deepcopy(setup.unet)
    with capture_cross_attention(unet) as store:
        store.accumulate(IMAGES)

        def forward():
            with torch.no_grad():
                store.set_rows(image)
                return unet(noisy, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample

        benchmark.pedantic(forward, rounds=5, warmup_rounds=1)
