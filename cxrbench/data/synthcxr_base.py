"""SynthCXR-Base: finding-free chest films captioned with anatomy, devices and positions, for pretraining.

A base model pretrained here learns to draw chest films and to ground general words (sides, zones,
apex and base, support devices, anatomy) without ever seeing the eight findings of the tracks, so the
tracks' fine-tune has to teach the findings. Studies are SynthCXR patients (``cxrbench.data.synthcxr``)
with none of the eight findings drawn and no word of them in the caption (no query word of
``QUERY_WORDS``, no class name), at a higher rate of things worth saying than the track's data:

``variant="anatomy"``
    support devices with their position (ECG leads, right internal jugular line, endotracheal tube, a
    pacemaker or a port over the right or left upper chest, median sternotomy wires) and anatomy (heart
    size normal, an elevated right or left hemidiaphragm, low lung volumes or hyperinflation, breast
    shadows, rotation, scoliosis).
``variant="lesions"``
    the same studies, plus one or two incidental lesions that are none of the eight findings, drawn
    where the caption says: a calcified granuloma (tiny, very dense, sharp), a bulla (a round lucency
    inside a thin wall), apical scarring (thin strands fanning down from an apex) or a healed rib
    fracture (a callus on a rib at the lateral chest wall).

Every device, anatomical feature and lesion drawn is named in the caption (one whose sentence would not
fit is not drawn; breast shadows, part of about half of all SynthCXR patients, are named when dense);
captions stay within ``MAX_CAPTION_CHARS``, inside a 32-token text encoder. Study ``i`` is a pure function of
``(seed, split, i)`` from its own random streams (split codes that SynthCXR and SynthCXR-OpenI never
use), so no study equals a study of the tracks' datasets for any seed; the ``lesions`` variant draws
the same patients as ``anatomy`` and adds lesions from a stream of their own; their sentences come
first, so a device or feature of the ``anatomy`` study may not fit the caption, and is then not drawn.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrbench.data import synthcxr
from cxrbench.data.schema import Sample
from cxrbench.data.synthcxr import (
    SIDES,
    Anatomy,
    DeviceSpec,
    LesionSpec,
    StudySpec,
    StudySplits,
    _pick,
    _sample_point,
    _sentence,
    _u,
    _zone_phrase,
    check_dataset_sizes,
    render_studies,
)
from cxrbench.errors import DataError

VARIANTS: tuple[str, ...] = ("anatomy", "lesions")
#: Split codes of the seed streams; SynthCXR and SynthCXR-OpenI use 1 and 2.
_SPLIT_CODES = {"train": 11, "test": 12}
_ANATOMY_STREAM, _TEXTURE_STREAM, _DEVICE_STREAM, _LESION_STREAM = 1, 2, 3, 4
#: Longest caption in characters (tested to stay within 32 WordPiece tokens of all-MiniLM-L6-v2).
MAX_CAPTION_CHARS = 90
#: How often a study has each anatomical feature and each device (independently).
FEATURE_RATES: dict[str, float] = {
    "elevated_hemidiaphragm": 0.2, "lung_volumes": 0.2, "breast_shadows": 1.0, "rotation": 0.15,
    "scoliosis": 0.15, "heart_size": 0.3,
}
DEVICE_RATES: dict[str, float] = {
    "pacemaker": 0.2, "port": 0.16, "sternotomy": 0.12, "central_line": 0.14, "endotracheal_tube": 0.08,
    "ecg_leads": 0.16,
}
#: Lesion kinds of the ``lesions`` variant and their weights (one or two per study).
LESION_WEIGHTS: dict[str, float] = {"granuloma": 0.35, "bulla": 0.2, "scarring": 0.2, "rib_fracture": 0.25}

#: Sentence templates: {side} the patient's side, {where}/{prep}/{adj} a zone's noun, preposition and
#: adjective (``synthcxr._zone_phrase``), {level} "upper" or "lower", {convex} "dextro" or "levo".
_SENTENCES: dict[str, tuple[str, ...]] = {
    "elevated_hemidiaphragm": ("Elevated {side} hemidiaphragm.", "The {side} hemidiaphragm is elevated.",
                               "Mild elevation of the {side} hemidiaphragm."),
    "low_volumes": ("Low lung volumes.", "Lung volumes are low."),
    "hyperinflation": ("Hyperinflated lungs.", "The lungs are hyperexpanded.",
                       "Hyperinflation with flattened hemidiaphragms."),
    "breast_shadows": ("Bilateral breast shadows.", "Breast shadows over both lung bases."),
    "rotation": ("Patient rotated to the {side}.", "Mild rotation to the {side}."),
    "scoliosis": ("Mild {convex}scoliosis.", "Thoracic scoliosis convex to the {side}."),
    "heart_size": ("Heart size is normal.", "Normal heart size.", "The heart is normal in size."),
    "pacemaker": ("{Side} chest wall pacemaker.", "Pacemaker over the {side} upper chest with two leads.",
                  "{Side} pacemaker, leads in the right atrium and ventricle."),
    "port": ("{Side} chest port, catheter tip in the SVC.", "{Side} chest wall port.",
             "Port over the {side} upper chest."),
    "sternotomy": ("Median sternotomy wires.", "Sternotomy wires in the midline.",
                   "Intact sternotomy wires."),
    "central_line": ("Right IJ line tip in the SVC.", "Right central line in place."),
    "endotracheal_tube": ("Endotracheal tube above the carina.", "ET tube in place."),
    "ecg_leads": ("ECG leads over the upper chest.", "ECG leads over both upper chest walls."),
    "granuloma": ("Calcified granuloma {prep} the {where}.", "{Adj} calcified granuloma.",
                  "Small calcified granuloma {prep} the {where}."),
    "bulla": ("Bulla {prep} the {where}.", "{Adj} bulla.", "Thin-walled bulla {prep} the {where}."),
    "scarring": ("Linear scarring at the {side} apex.", "{Side} apical scarring."),
    "scarring/bilateral": ("Biapical scarring.", "Scarring at both apices."),
    "rib_fracture": ("Healed {side} {level} rib fracture.", "Old healed fracture of a {side} {level} rib."),
}
_NOTHING = ("No acute abnormality.", "Normal chest radiograph.")


def _say(rng: np.random.Generator, key: str, **words: str) -> str:
    """A sentence for ``key`` with its placeholders filled ({Side}/{Adj}: capitalized)."""
    template = _pick(rng, _SENTENCES[key])
    filled = template.format(Side=words.get("side", "").capitalize(), Adj=words.get("adj", "").capitalize(),
                             **words)
    return _sentence(filled)


# --------------------------------------------------------------------------------------------------
# What a study shows: first the items and their sentences, then (for those the caption holds) geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """Something a study shows: its kind, side, zone (or rib level), sentence and anatomy changes."""

    kind: str
    sentence: str
    side: str = "right"
    zone: str | None = None
    changes: dict[str, float] = field(default_factory=dict)


def _side(rng: np.random.Generator) -> str:
    return SIDES[int(rng.integers(2))]


def _features(rng: np.random.Generator, values: dict[str, float]) -> list[_Item]:
    """The patient's anatomical features (as changes of the SynthCXR patient ``values``)."""
    out: list[_Item] = []
    draws = {kind: rng.random() < rate for kind, rate in FEATURE_RATES.items()}
    if draws["elevated_hemidiaphragm"]:
        side = _side(rng)
        out.append(_Item("elevated_hemidiaphragm", _say(rng, "elevated_hemidiaphragm", side=side), side,
                         changes={f"dome_lift_{side}": _u(rng, 0.03, 0.06)}))
    if draws["lung_volumes"] and rng.random() < 0.5:  # shallow inspiration: short lungs, crowded ribs
        changes = {"lung_height": _u(rng, 0.5, 0.58), "ribs_above_dome": _u(rng, 7.0, 8.0)}
        out.append(_Item("low_volumes", _say(rng, "low_volumes"), changes=changes))
    elif draws["lung_volumes"]:  # hyperinflation: long lungs, flat domes, a narrow heart, more ribs
        height = _u(rng, 0.78, 0.84)
        changes = {"lung_height": height, "dome_right": _u(rng, 0.01, 0.025),
                   "dome_left": _u(rng, 0.01, 0.025), "heart_ctr": _u(rng, 0.36, 0.42),
                   "ribs_above_dome": _u(rng, 10.5, 11.5), "apex_y": min(values["apex_y"], 0.93 - height)}
        out.append(_Item("hyperinflation", _say(rng, "hyperinflation"), changes=changes))
    if draws["breast_shadows"] and values["breast"] > 0.8:  # the densest breast shadows are named
        out.append(_Item("breast_shadows", _say(rng, "breast_shadows")))
    for kind in ("rotation", "scoliosis"):
        if draws[kind]:
            side = _side(rng)
            amount = _u(rng, 0.02, 0.04) * (1.0 if side == "left" else -1.0)
            convex = "dextro" if side == "right" else "levo"
            out.append(_Item(kind, _say(rng, kind, side=side, convex=convex), side, changes={kind: amount}))
    if draws["heart_size"]:
        out.append(_Item("heart_size", _say(rng, "heart_size")))
    return out


def _device_items(rng: np.random.Generator) -> list[_Item]:
    """The study's devices with their sentences (a pacemaker and a port take different sides)."""
    out = []
    sides = list(SIDES) if rng.random() < 0.5 else list(reversed(SIDES))
    for kind, rate in DEVICE_RATES.items():
        if rng.random() < rate:
            side = sides.pop(0) if kind in ("pacemaker", "port") else "right"
            out.append(_Item(kind, _say(rng, kind, side=side), side))
    return out


def _upper_chest(rng: np.random.Generator, a: Anatomy, side: str) -> tuple[float, float]:
    """A point over the upper chest below the clavicle on the patient's ``side`` (x, y in image units)."""
    d = _u(rng, 0.17, 0.25)
    return (a.cx - d if side == "right" else a.cx + d), a.apex_y + a.clavicle_drop + _u(rng, 0.05, 0.09)


def _device(rng: np.random.Generator, item: _Item, a: Anatomy) -> DeviceSpec:
    kind = item.kind
    if kind == "pacemaker":
        x, y = _upper_chest(rng, a, item.side)
        g = {"x": x, "y": y, "atrial_drop": _u(rng, 0.06, 0.1), "ventricle_d": _u(rng, 0.04, 0.09),
             "ventricle_drop": _u(rng, 0.22, 0.3)}
    elif kind == "port":
        x, y = _upper_chest(rng, a, item.side)
        g = {"x": x, "y": y, "radius": _u(rng, 0.018, 0.024), "tip_y": a.hilum_y + _u(rng, -0.04, 0.0)}
    elif kind == "sternotomy":
        top = a.apex_y + a.clavicle_drop + _u(rng, 0.05, 0.08)
        g = {"count": float(rng.integers(5, 8)), "top": top, "bottom": a.hilum_y + _u(rng, 0.16, 0.22),
             "offset": _u(rng, -0.006, 0.006)}
    elif kind == "central_line":
        g = {"entry_d": _u(rng, 0.16, 0.24), "entry_y": a.apex_y + a.clavicle_drop + _u(rng, -0.02, 0.02),
             "tip_y": a.hilum_y + _u(rng, -0.05, 0.0)}
    elif kind == "endotracheal_tube":
        g = {"tip_y": a.apex_y + a.carina_drop - _u(rng, 0.03, 0.06)}
    else:  # ECG leads
        count = int(rng.integers(2, 5))
        g = {f"x{i}": _u(rng, 0.12, 0.88) for i in range(count)}
        g.update({f"y{i}": _u(rng, 0.06, 0.3) for i in range(count)})
        g["count"] = float(count)
    return DeviceSpec(kind, g)


def _lesion_items(rng: np.random.Generator) -> list[_Item]:
    """One or two lesions of different kinds, each with its side, zone (rib level) and sentence."""
    kinds = tuple(LESION_WEIGHTS)
    chosen = [synthcxr._pick_weighted(rng, kinds, tuple(LESION_WEIGHTS.values()))]
    if rng.random() < 0.35:
        rest = tuple(k for k in kinds if k != chosen[0])
        chosen.append(synthcxr._pick_weighted(rng, rest, tuple(LESION_WEIGHTS[k] for k in rest)))
    items = []
    for kind in chosen:
        side = _side(rng)
        if kind == "scarring" and rng.random() < 0.3:
            items.append(_Item(kind, _say(rng, "scarring/bilateral"), "bilateral", "upper"))
        elif kind == "scarring":
            items.append(_Item(kind, _say(rng, kind, side=side), side, "upper"))
        elif kind == "rib_fracture":
            level = _pick(rng, ("upper", "lower"))
            items.append(_Item(kind, _say(rng, kind, side=side, level=level), side, level))
        else:
            zone = _pick(rng, ("upper", "upper", "middle")) if kind == "bulla" else _pick(rng, synthcxr.ZONES)
            where, prep, adjective = _zone_phrase(rng, side, zone)
            items.append(_Item(kind, _say(rng, kind, where=where, prep=prep, adj=adjective), side, zone))
    return items


def _lesion(rng: np.random.Generator, item: _Item, a: Anatomy) -> LesionSpec:
    if item.kind == "scarring":
        g = {"count": float(rng.integers(2, 5)), "spread": _u(rng, 0.4, 0.9), "tilt": _u(rng, -0.2, 0.4),
             "length": _u(rng, 0.05, 0.1)}
    elif item.kind == "rib_fracture":
        side = SIDES.index(item.side)
        t = _u(rng, 0.2, 0.45) if item.zone == "upper" else _u(rng, 0.55, 0.8)
        g = {"y": a.apex[side] + t * (a.costophrenic[side] - a.apex[side]), "inset": _u(rng, 0.0, 0.015)}
    else:
        radius = _u(rng, 0.006, 0.011) if item.kind == "granuloma" else _u(rng, 0.03, 0.055)
        d, y = _sample_point(a, SIDES.index(item.side), item.zone or "upper", rng, margin=radius + 0.02)
        g = {"d": d, "y": y, "radius": radius}
    return LesionSpec(item.kind, item.side, item.zone, g)


def _entropy(seed: int, split: str, stream: int, index: int) -> list[int]:
    return [int(seed), _SPLIT_CODES[split], stream, int(index)]


def _fit(items: list[_Item], caption: list[str]) -> list[_Item]:
    """Add each item's sentence to ``caption`` while it fits ``MAX_CAPTION_CHARS``; the items that fit."""
    kept = []
    for item in items:
        if len(" ".join([*caption, item.sentence])) <= MAX_CAPTION_CHARS:
            caption.append(item.sentence)
            kept.append(item)
    return kept


def base_study_spec(seed: int, split: str, index: int, variant: str = "anatomy") -> StudySpec:
    """Study ``index`` of ``split``: a pure function of ``(seed, split, index)`` and the variant.

    Lesions, devices and features are chosen with their sentences first; the caption takes them in that
    order while they fit, and only what it names is drawn.
    """
    if variant not in VARIANTS:
        raise DataError(f"SynthCXR-Base variant must be one of {VARIANTS}, but got {variant!r}")
    rng = np.random.default_rng(_entropy(seed, split, _ANATOMY_STREAM, index))
    values = synthcxr._draw_anatomy(rng).values
    features = _features(rng, values)
    device_rng = np.random.default_rng(_entropy(seed, split, _DEVICE_STREAM, index))
    devices = _device_items(device_rng)
    lesion_rng = np.random.default_rng(_entropy(seed, split, _LESION_STREAM, index))
    lesions = _lesion_items(lesion_rng) if variant == "lesions" else []
    caption: list[str] = []
    lesions, devices, features = _fit(lesions, caption), _fit(devices, caption), _fit(features, caption)
    for item in features:
        values.update(item.changes)
    anatomy = Anatomy(values)
    if not caption:
        caption.append(_pick(rng, _NOTHING))
    return StudySpec(id=f"synthcxr-base-{variant}-{split}-{index:06d}", split=split, index=index,
                     anatomy=anatomy, findings=(), report=" ".join(caption),
                     texture_entropy=tuple(_entropy(seed, split, _TEXTURE_STREAM, index)),
                     devices=tuple(_device(device_rng, item, anatomy) for item in devices),
                     lesions=tuple(_lesion(lesion_rng, item, anatomy) for item in lesions))


class SynthCXRBase(StudySplits):
    """SynthCXR-Base: finding-free films captioned with anatomy, devices (and lesions), for pretraining.

    Args:
        n_train: number of training studies.
        n_test: number of test studies (held out from pretraining, e.g. to measure it).
        image_size: side of the square images in pixels (16 or more).
        seed: dataset seed; study ``i`` of a split depends only on ``(seed, split, i)`` and the variant.
        variant: "anatomy" (devices and anatomy) or "lesions" (the same studies plus incidental lesions).

    Raises:
        DataError: for a negative size, an image size below 16, a negative seed or an unknown variant.

    Example:
        >>> ds = SynthCXRBase(n_train=2, n_test=0, image_size=32, variant="lesions")
        >>> [s.findings for s in ds.split("train")]
        [(), ()]
    """

    name = "synthcxr-base"
    version = "1"

    def __init__(self, n_train: int, n_test: int, image_size: int = 64, seed: int = 0,
                 variant: str = "anatomy") -> None:
        check_dataset_sizes("SynthCXRBase", n_train, n_test, image_size, seed)
        if variant not in VARIANTS:
            raise DataError(f"SynthCXRBase variant must be one of {VARIANTS}, but got {variant!r}")
        self.n_train, self.n_test = int(n_train), int(n_test)
        self.image_size, self.seed, self.variant = int(image_size), int(seed), variant
        self._cache: dict[str, list[Sample]] = {}

    def params(self) -> dict[str, Any]:
        """The constructor arguments: ``SynthCXRBase(**ds.params())`` builds the same dataset."""
        return {"n_train": self.n_train, "n_test": self.n_test, "image_size": self.image_size,
                "seed": self.seed, "variant": self.variant}

    def spec(self, split: str, index: int) -> StudySpec:
        """The specification (anatomy, devices, lesions, caption) of study ``index`` of ``split``."""
        self._check_index(split, index)
        return base_study_spec(self.seed, split, index, self.variant)

    def _samples(self, split: str, specs: list[StudySpec]) -> list[Sample]:
        images = _render(specs, self.image_size)
        return [Sample(id=s.id, image=image, report=s.report, split=split) for s, image in zip(specs, images)]

    def render(self, split: str, index: int, labels: Collection[str] | None = None) -> np.ndarray:
        """Study ``index`` (``labels`` is accepted for the dataset interface: there are no findings)."""
        return _render([self.spec(split, index)], self.image_size, labels)[0]

    def fingerprint(self) -> str:
        """SHA-256 over both splits: ids, captions and images quantized to uint8 (there are no findings)."""
        return self._digest(f"{self.name}-v{self.version}|{self.variant}|{self.image_size}")


def _render(specs: list[StudySpec], size: int, labels: Collection[str] | None = None) -> list[np.ndarray]:
    """Images of ``specs``, rendered in batches of bounded memory."""
    chunk = max(1, synthcxr._BATCH_PIXELS // (size * synthcxr._oversampling(size)) ** 2)
    images: list[np.ndarray] = []
    for start in range(0, len(specs), chunk):
        images += [image for image, _ in render_studies(specs[start:start + chunk], size, labels)]
    return images


__all__ = ["SynthCXRBase", "base_study_spec", "VARIANTS", "FEATURE_RATES", "DEVICE_RATES", "LESION_WEIGHTS",
           "MAX_CAPTION_CHARS"]
