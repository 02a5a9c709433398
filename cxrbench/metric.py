"""What a metric declares: the contract of a metric plugin (``cxrbench_register_metrics``).

A metric names what it needs, and the core gives it exactly that, computes its intervals, writes it into
the result and puts it on the leaderboard; a model never scores itself. Three kinds of input:

- ``MAPS``, a score of one attention map against its boxes: ``compute(heatmap, boxes, image_shape)``
  gets one map of one (test sample, finding) query and one token group (float64, the image's shape), the
  finding's boxes (``cxrbench.data.schema.Box`` in pixels) and the image's (height, width). It returns a
  float (``nan`` where it is undefined), or a dict of floats keyed by ``outputs``. The result gets
  ``loc_<group>_<output>`` for every token group the model returns; it aggregates as the mean over queries,
  overall, macro over classes and per class, each with a bootstrap interval (the built-in localization
  metrics aggregate the same way).
- ``FEATURES``, a number of two feature sets: ``compute(real, generated, prompt_ids, seed)`` gets the real
  test images' features (M, D), the generated images' features (N, D) from one feature extractor (float64),
  the prompt of each generated image (N ints; a track draws several images per prompt) and the run seed. It
  returns a float, or a dict keyed by ``outputs`` of floats or of entries ``{"value", "ci_low", "ci_high",
  "n", "note"}`` that carry their own interval. The result gets ``<output>_<extractor>`` for every feature
  extractor of the run; a float gets a percentile-bootstrap interval over prompts (the core resamples whole
  prompts with their images and calls ``compute`` again).
- ``SAMPLES``, a number of the per-sample localization scores: ``compute(records)`` gets the lines of the
  result's per-sample file (``{"sample_id", "label", "phrase", "metrics": {"loc_<group>_<metric>": float}}``)
  and returns a float, or a dict keyed by ``outputs``. The result gets ``<output>`` with a
  percentile-bootstrap interval over the lines.

A plugin's metric entries in a result carry ``"source"`` (its distribution) and ``"description"``; the
built-in metrics register through the same hook (``cxrbench.builtins``) and carry neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FEATURES", "MAPS", "METRIC_NAME_PATTERN", "Metric", "NEEDS", "SAMPLES"]

MAPS = "maps"
FEATURES = "features"
SAMPLES = "samples"
NEEDS: tuple[str, ...] = (MAPS, FEATURES, SAMPLES)
#: A metric's name and each of its outputs: lower-case words joined by underscores.
METRIC_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class Metric:
    """One registered metric (or a family of outputs computed together, as the built-in localization).

    ``outputs`` maps each output name to its direction (True: higher is better); without it the metric has
    one output, ``name``, in the direction ``higher_is_better``.
    """

    name: str
    needs: str
    compute: Callable[..., Any]
    higher_is_better: bool = True
    description: str = ""
    reference: str = ""
    outputs: Mapping[str, bool] = field(default_factory=dict)
    #: A description of each output, where they differ (``description`` otherwise).
    output_descriptions: Mapping[str, str] = field(default_factory=dict)

    def describe(self, output: str) -> str:
        """What ``output`` measures."""
        return dict(self.output_descriptions).get(output, self.description)

    @property
    def directions(self) -> dict[str, bool]:
        """Each output's name and whether higher is better."""
        return dict(self.outputs) if self.outputs else {self.name: bool(self.higher_is_better)}

    def problems(self) -> list[str]:
        """What makes this declaration invalid, as messages (empty: valid)."""
        problems = []
        if not isinstance(self.name, str) or not METRIC_NAME_PATTERN.match(self.name):
            problems.append(f"name must match {METRIC_NAME_PATTERN.pattern}, but got {self.name!r}")
        if self.needs not in NEEDS:
            problems.append(f"needs must be one of {list(NEEDS)}, but got {self.needs!r}")
        if not callable(self.compute):
            problems.append("compute must be callable")
        for output, higher in dict(self.outputs).items():
            if not isinstance(output, str) or not METRIC_NAME_PATTERN.match(output):
                problems.append(f"output names must match {METRIC_NAME_PATTERN.pattern}, but got {output!r}")
            if not isinstance(higher, bool):
                problems.append(f"output {output!r}: its direction must be True or False, but got {higher!r}")
        return problems
