"""The result record as a typed model: :class:`ResultRecord`, its JSON Schema, and readable problems.

The model describes the JSON a run writes (``cxrbench.runner``) exactly: every key a result may have, with its
type. Keys outside the format are refused, except where the format is open: a plugin's ``config``, the
dataset's ``params``, the ``environment`` (one version per library), an evaluator's description, and the
metric names themselves (plugins add metrics). ``docs/result-schema.json`` is
``ResultRecord.model_json_schema()``, written by ``cxrbench schema``.

Checks that need more than the record (the current track definitions, the installed plugins, the metric
definition versions) are in ``cxrbench.results.validation_errors``.
"""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

#: The version of the result format this module describes (``ResultRecord.schema_version``).
SCHEMA_VERSION = 1
#: A result's ``status``.
STATUSES = ("ok", "failed")
#: Where the JSON Schema of :class:`ResultRecord` is committed, relative to the repository root.
SCHEMA_FILE = "docs/result-schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class ClosedRecord(BaseModel):
    """A JSON object whose keys are exactly the declared fields; values are not coerced (``"0"`` is no int)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class OpenRecord(BaseModel):
    """A JSON object with declared fields that may carry more keys of any type."""

    model_config = ConfigDict(strict=True, extra="allow")


class TrackRecord(ClosedRecord):
    name: str = Field(description="Track name (smoke, default, paper).")
    version: str = Field(description="Track version.")
    hash: str = Field(description="Hash of the track definition; must equal the current definition's.")


class PluginRecord(ClosedRecord):
    model: str = Field(description="Model id.")
    distribution: str = Field(description="Python distribution that registers the model.")
    version: str = Field(description="Version of that distribution.")
    capabilities: list[str] = Field(description="What the model does: fit, generate, localize.")
    plugin: str | None = Field(None, description="Name of the plugin (entry point) that registers the model.")
    config: dict[str, Any] = Field(default_factory=dict, description="The model's resolved options.")
    config_requested: dict[str, Any] | None = Field(None, description="The options the run was given.")
    baseline: str | None = Field(None, description="Label of a reference baseline; null for a competing model.")


class DatasetRecord(ClosedRecord):
    name: str | None = Field(None, description="Dataset name.")
    params: dict[str, Any] = Field(default_factory=dict, description="The track's dataset parameters.")
    fingerprint: str | None = Field(None, description="Hash of the data the run used.")
    n_train: int | None = Field(None, description="Training samples.")
    n_test: int | None = Field(None, description="Test samples.")
    left_out: dict[str, int] = Field(
        default_factory=dict, description="What the dataset left out, and why: {reason: count}.")


class EvaluatorRecord(OpenRecord):
    """A feature extractor fidelity was scored with; its own description may add keys."""

    name: str
    available: bool
    note: str | None = Field(None, description="Why an extractor is not available.")
    sha256: str | None = Field(None, description="SHA-256 of its weights.")
    feature_dim: int | None = None
    input_size: int | None = None
    resize_method: str | None = None


class EnvironmentRecord(OpenRecord):
    """Interpreter, platform, device and library versions (one key per library, more may be added)."""

    python: str | None = None
    platform: str | None = None
    machine: str | None = None
    device: str | None = None
    device_name: str | None = None
    world_size: int | None = None
    torch: str | None = None
    torch_threads: int | None = None
    torch_compile: bool | None = None
    cxrbench: str | None = None


class TimingsRecord(ClosedRecord):
    """Seconds spent in each stage of the run."""

    data_s: float | None = None
    fit_s: float | None = None
    generate_s: float | None = None
    localize_s: float | None = None
    metrics_s: float | None = None
    total_s: float | None = None


class ErrorRecord(ClosedRecord):
    stage: str = Field(description="Stage the run failed at.")
    type: str = Field(description="Exception type.")
    message: str


class MetricEntry(ClosedRecord):
    """One figure: value, 95% interval, sample count and direction."""

    value: float | None = Field(description="null when the metric could not be computed (see note).")
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool
    note: str | None = Field(None, description="How it was computed, or why there is no value.")
    std: float | None = Field(None, description="Standard deviation the interval was derived from.")
    source: str | None = Field(None, description="Distribution that registered a plugin's metric.")
    description: str | None = Field(None, description="What a plugin's metric measures.")


class ClassEntry(ClosedRecord):
    """One class of a metric's per-class table."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


class RescoredRecord(ClosedRecord):
    """When a result's metrics were recomputed from its run's kept outputs (``cxrbench rescore``)."""

    at: str = Field(description="ISO-8601 UTC time of the rescore.")
    metric_versions_before: dict[str, int] = Field(description="The metric versions it had before.")


class ResultRecord(ClosedRecord):
    """One result of cxrbench: a (model, track, seed) run, schema version 1 (``docs/results.md``)."""

    model_config = ConfigDict(title="cxrbench result", json_schema_extra={"$schema": JSON_SCHEMA_DIALECT})

    schema_version: Literal[1]  # SCHEMA_VERSION
    metric_versions: dict[str, int] = Field(
        default_factory=dict, description="Definition version of each metric family; absent means 1.")
    status: Literal["ok", "failed"]
    error: ErrorRecord | None = Field(None, description="Why a failed run failed.")
    created: str = Field(description="ISO-8601 UTC time the record was made.")
    track: TrackRecord
    plugin: PluginRecord
    seed: int
    dataset: DatasetRecord
    evaluators: dict[str, EvaluatorRecord] = Field(description="Feature extractors, by name.")
    environment: EnvironmentRecord
    timings: TimingsRecord
    metrics: dict[str, MetricEntry] = Field(description="Every metric, by name (plugins may add names).")
    per_class: dict[str, dict[str, ClassEntry]] = Field(description="Per-class tables: metric -> class -> entry.")
    per_sample_file: str | None = Field(None, description="Name of the per-sample JSON lines file beside it.")
    features_file: str | None = Field(None, description="Name of the features file beside it.")
    features_sha256: str | None = Field(None, description="SHA-256 of the features file.")
    rescored: RescoredRecord | None = Field(None, description="Set when the metrics were recomputed by rescore.")

    @model_validator(mode="after")
    def failed_run_has_error(self) -> ResultRecord:
        if self.status == "failed" and self.error is None:
            raise PydanticCustomError(
                "failed_without_error", "a failed result must carry an 'error' object with stage, type and message")
        return self


def result_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`ResultRecord`."""
    return ResultRecord.model_json_schema()


def result_schema_text() -> str:
    """The JSON Schema as the text of ``docs/result-schema.json``."""
    return json.dumps(result_json_schema(), indent=2) + "\n"


def record_problems(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """``(location, message)`` for each way ``data`` differs from :class:`ResultRecord`; empty when it fits."""
    try:
        ResultRecord.model_validate(data)
    except ValidationError as exc:
        return [(tuple(e["loc"]), problem_message(e)) for e in exc.errors()]
    return []


#: What a value of each pydantic type error should have been.
EXPECTED = {
    "int_type": "int", "float_type": "a number", "string_type": "str", "bool_type": "true or false",
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
    "list_type": "a list",
}


def problem_message(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence naming the field: ``metric 'fid_domain' field 'value' must be ...``."""
    loc, kind, given = tuple(error["loc"]), error["type"], error.get("input")
    if kind == "missing":
        return f"missing key {loc[0]!r}" if len(loc) == 1 else f"{field_name(loc[:-1], bare=True)} is missing {loc[-1]!r}"
    if kind == "extra_forbidden":
        return f"{field_name(loc)} is not part of the result format ({SCHEMA_FILE})"
    if kind == "literal_error":
        return f"{field_name(loc)} must be {error['ctx']['expected']}, but got {describe(given)}"
    if kind in EXPECTED:
        expected = EXPECTED[kind] + (" or null" if accepts_null(loc) else "")
        return f"{field_name(loc)} must be {expected}, but got {describe(given)}"
    return f"{field_name(loc)}: {error['msg']}" if loc else error["msg"]


def field_name(loc: tuple[Any, ...], bare: bool = False) -> str:
    """``("metrics", "fid_domain", "value")`` -> ``metric 'fid_domain' field 'value'``; ``("per_class", "m",
    "c")`` -> ``per_class 'm' class 'c'``; ``("seed",)`` -> ``key 'seed'`` (``seed`` when ``bare``);
    ``("track", "hash")`` -> ``track field 'hash'``."""
    head, rest = loc[0], [str(part) for part in loc[1:]]
    owners = {"metrics": ("metric",), "per_class": ("per_class", "class"), "evaluators": ("evaluator",)}
    if head in owners and rest:
        labels = owners[head][: len(rest)]
        name = " ".join(f"{label} {part!r}" for label, part in zip(labels, rest))
        rest = rest[len(labels):]
    else:
        name = str(head) if bare or rest else f"key {head!r}"
    return f"{name} field {'.'.join(rest)!r}" if rest else name


def describe(value: Any) -> str:
    """A value as a message shows it: its type, and its repr when it is a scalar."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__} {value!r}" if value is not None else "null"
    return type(value).__name__


def accepts_null(loc: tuple[Any, ...]) -> bool:
    """Whether the field of :class:`ResultRecord` at ``loc`` may be null."""
    annotation: Any = ResultRecord
    for part in loc:
        annotation = without_null(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return False
            annotation = field.annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return False
    return type(None) in get_args(annotation) and get_origin(annotation) in (Union, types.UnionType)


def without_null(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
