"""Pretrained bases: found locally, checked by sha256, loaded into the UNet without any network, refused
when they are other weights or fit another architecture."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cxrbench.diffusion.model import DiffusionModel
from cxrbench.errors import AssetUnavailable, ProtocolError
from cxrbench.model import FitContext, PretrainedBase
from cxrbench.pretrained import MANIFEST, base_manifest, check_base, file_sha256
from cxrbench.protocol import get_track

SIZE = 32
OPTIONS = {"block_out_channels": (8, 16), "norm_num_groups": 8}


def _make_base(folder: Path, options: dict = OPTIONS) -> PretrainedBase:
    """A base as scripts/pretrain_base.py writes one: a UNet's weights and the manifest beside them."""
    torch.manual_seed(123)
    model = DiffusionModel(options)
    model.build(SIZE, "cpu")
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "unet.safetensors"
    save_file({k: v.contiguous() for k, v in model.unet.state_dict().items()}, str(weights))
    manifest = {"options": model.config(), "image_size": SIZE, "unshuffle_factor": model.factor,
                "cross_attention_dim": model.text.hidden_size}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return PretrainedBase(name="test-base", weights=str(weights), sha256=file_sha256(weights))


def test_a_base_is_checked_by_its_sha256(tmp_path):
    base = _make_base(tmp_path / "base")
    assert check_base(base, "track 't'") == Path(base.weights)
    other = dataclasses.replace(base, sha256="0" * 64)
    with pytest.raises(ProtocolError) as refused:
        check_base(other, "track 't' v3")
    message = str(refused.value)
    assert "track 't' v3" in message and "0" * 64 in message and base.sha256 in message and base.weights in message


def test_a_missing_base_names_the_file(tmp_path):
    base = PretrainedBase(name="gone", weights=str(tmp_path / "nothing.safetensors"), sha256="1" * 64)
    with pytest.raises(AssetUnavailable, match="nothing.safetensors"):
        check_base(base, "track 't'")


@pytest.mark.slow
def test_a_fit_starts_from_the_base_without_network(tmp_path, monkeypatch):
    base = _make_base(tmp_path / "base")
    expected = DiffusionModel(OPTIONS)
    expected.build(SIZE, "cpu")
    expected.start_from_base(base)

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    model = DiffusionModel(OPTIONS)
    model.build(SIZE, "cpu")
    assert not torch.equal(model.unet.conv_in.weight, expected.unet.conv_in.weight)  # fresh weights differ
    model.start_from_base(base)
    for name, weight in expected.unet.state_dict().items():
        assert torch.equal(model.unet.state_dict()[name], weight), name
    # ``fit`` does the same when the context names the base: after one step at a negligible learning
    # rate the weights are still the base's, not a fresh initialization's.
    from cxrbench.diffusion.timing import disk_samples

    budget = dataclasses.replace(get_track("smoke").budget, steps=1, unet_learning_rate=1e-12)
    model.fit(disk_samples(16, SIZE), budget, FitContext(0, tmp_path / "work", SIZE, base=base))
    torch.testing.assert_close(model.unet.conv_in.weight, expected.unet.conv_in.weight, rtol=0, atol=1e-6)


def test_a_base_of_another_architecture_is_refused(tmp_path):
    base = _make_base(tmp_path / "base")
    model = DiffusionModel({"block_out_channels": (16, 32), "norm_num_groups": 8})
    model.build(SIZE, "cpu")
    with pytest.raises(ProtocolError, match="block_out_channels"):
        model.start_from_base(base)


def test_a_run_with_a_wrong_base_stops_before_training(tmp_path):
    from cxrbench.runner import run_benchmark

    base = _make_base(tmp_path / "base")
    track = dataclasses.replace(get_track("smoke"), base=dataclasses.replace(base, sha256="f" * 64))
    with pytest.raises(ProtocolError, match="sha256"):
        run_benchmark(["frozen-encoder"], track, [0], tmp_path / "out", workdir=tmp_path / "work",
                      show_progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_the_base_is_part_of_the_track_hash(tmp_path):
    base = _make_base(tmp_path / "base")
    smoke = get_track("smoke")
    with_base = dataclasses.replace(smoke, base=base)
    other = dataclasses.replace(smoke, base=dataclasses.replace(base, sha256="e" * 64))
    assert len({smoke.hash, with_base.hash, other.hash}) == 3
    assert base_manifest(base)["image_size"] == SIZE


def test_the_shipped_default_base_is_the_one_the_track_names_and_every_builtin_unet_fits_it(monkeypatch):
    """The committed weights match the default track's sha256 and load offline into the default UNet."""
    track = get_track("default")
    assert track.base is not None and track.base.name == "synthcxr-base-anatomy"
    path = check_base(track.base, "track 'default'")
    assert path.is_file() and file_sha256(path) == track.base.sha256
    manifest = base_manifest(track.base)
    assert manifest["image_size"] == track.image_size and manifest["corpus"]["dataset"] == "synthcxr-base"

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    model = DiffusionModel({})  # the built-in strategies' UNet: DiffusionOptions' defaults
    model.build(track.image_size, "cpu")
    model.start_from_base(track.base)
    from safetensors.torch import load_file

    shipped = load_file(str(path))
    for name, weight in model.unet.state_dict().items():
        assert torch.equal(weight, shipped[name]), name
