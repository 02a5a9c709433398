"""What a model plugin returns is checked where it enters the core: dtype, shape, finiteness, range."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from cxrbench.data.synthcxr import SynthCXR
from cxrbench.protocol import get_track
from cxrbench.results import load_result
from cxrbench.runner import generation_plan, localization_queries, run_benchmark
from cxrbench.testing import DummyModel, registry_with

SMOKE = get_track("smoke")


class ComplexMaps(DummyModel):
    model_id = "complex-maps"

    def localize(self, images, queries, extraction):
        return [{**maps, "word": maps["word"] + 1j} for maps in super().localize(images, queries, extraction)]


class GradMaps(DummyModel):
    model_id = "grad-maps"

    def localize(self, images, queries, extraction):
        return [{g: torch.tensor(m, requires_grad=True) for g, m in maps.items()}
                for maps in super().localize(images, queries, extraction)]


class NanEosForLastSample(DummyModel):
    model_id = "nan-eos"

    def localize(self, images, queries, extraction):
        maps = super().localize(images, queries, extraction)
        for query, query_maps in zip(queries, maps):
            if query.sample_id == last_localized_sample():
                query_maps["eos"] = np.full_like(query_maps["eos"], np.nan)
        return maps


class WrongShapeMaps(DummyModel):
    model_id = "wrong-shape-maps"

    def localize(self, images, queries, extraction):
        return [{"word": np.ones((7, 5), np.float32)} for _ in queries]


class ComplexImages(DummyModel):
    model_id = "complex-images"

    def generate(self, prompts, seeds, image_size, sampler):
        return super().generate(prompts, seeds, image_size, sampler) + 0j


class GradImages(DummyModel):
    model_id = "grad-images"

    def generate(self, prompts, seeds, image_size, sampler):
        return torch.tensor(super().generate(prompts, seeds, image_size, sampler), requires_grad=True)


class InfiniteImageOfThirdPrompt(DummyModel):
    model_id = "infinite-image"

    def generate(self, prompts, seeds, image_size, sampler):
        images = super().generate(prompts, seeds, image_size, sampler)
        seed, _ = third_prompt()
        for i, image_seed in enumerate(seeds):
            if image_seed == seed:
                images[i, 0, 0] = np.inf
        return images


@functools.cache
def smoke_test_split():
    return SynthCXR(**SMOKE.dataset.params).split("test")


def last_localized_sample() -> str:
    return localization_queries(smoke_test_split())[-1].sample_id


def third_prompt() -> tuple[int, str]:
    """(seed of its first image, sample id) of the third generation prompt."""
    test = smoke_test_split()
    _, seeds, index, _ = generation_plan(SMOKE, test, 0)
    return seeds[int(np.flatnonzero(index == 2)[0])], test[2].id


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    models = [DummyModel, ComplexMaps, GradMaps, NanEosForLastSample, WrongShapeMaps, ComplexImages, GradImages,
              InfiniteImageOfThirdPrompt]
    registry = registry_with(*models)
    work = tmp_path_factory.mktemp("work")
    runs = run_benchmark([m.model_id for m in models], SMOKE, [0], tmp_path_factory.mktemp("results"), work,
                         registry=registry, show_progress=False)
    return {o.model: o for o in runs}, work


def error_of(outcomes, model_id):
    outcome = outcomes[0][model_id]
    assert outcome.status == "failed", f"{model_id} should fail, got {outcome.status}"
    return load_result(outcome.result_path)["error"]


@pytest.mark.slow
def test_complex_maps_fail_at_localize_naming_model_sample_and_token_group(outcomes):
    error = error_of(outcomes, "complex-maps")
    first = localization_queries(smoke_test_split())[0].sample_id
    assert error["stage"] == "localize" and error["type"] == "PluginError"
    for part in ("localize", "'complex-maps'", "cxrbench-testing", f"sample {first!r}", "'word'", "complex"):
        assert part in error["message"], (part, error["message"])


@pytest.mark.slow
def test_non_finite_map_fails_at_localize_naming_its_sample_and_group_and_keeps_the_images(outcomes):
    error = error_of(outcomes, "nan-eos")
    assert error["stage"] == "localize"
    for part in ("'nan-eos'", f"sample {last_localized_sample()!r}", "'eos'", "NaN or infinite"):
        assert part in error["message"], (part, error["message"])
    assert "'word'" not in error["message"]  # the word maps were fine
    assert (outcomes[1] / "nan-eos__smoke__seed0" / "generated.npz").is_file()  # generation is not lost


@pytest.mark.slow
def test_map_of_the_wrong_shape_names_both_shapes(outcomes):
    error = error_of(outcomes, "wrong-shape-maps")
    assert error["stage"] == "localize" and "(7, 5)" in error["message"] and "(32, 32)" in error["message"]


@pytest.mark.slow
def test_complex_images_fail_at_generate(outcomes):
    error = error_of(outcomes, "complex-images")
    assert error["stage"] == "generate"
    assert "'complex-images'" in error["message"] and "complex" in error["message"]
    assert third_prompt()[1] in error["message"]  # the batch's samples are named


@pytest.mark.slow
def test_non_finite_image_names_the_sample_of_its_prompt(outcomes):
    error = error_of(outcomes, "infinite-image")
    assert error["stage"] == "generate"
    assert f"sample {third_prompt()[1]!r}" in error["message"] and "NaN or infinite" in error["message"]


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["grad-maps", "grad-images"])
def test_tensors_that_require_grad_are_taken_as_their_values(outcomes, model_id):
    by_model = outcomes[0]
    assert by_model[model_id].status == "ok", by_model[model_id].error
    expected = by_model["dummy"].metrics
    for name in ("loc_word_auc_roc", "loc_eos_auc_roc", "fid_domain", "ms_ssim_within_prompt"):
        assert by_model[model_id].metrics[name]["value"] == pytest.approx(expected[name]["value"], abs=1e-6), name


def test_the_contract_check_refuses_what_the_runner_refuses():
    """``check_model``, the check plugin authors run, applies the runner's map rule: complex maps are refused."""
    from cxrbench.testing import check_model

    assert not any("localize" in p for p in check_model(DummyModel))
    problems = check_model(ComplexMaps)
    assert any("localize for" in p and "token group" in p for p in problems), problems
