"""SynthCXR v3: procedurally rendered PA chest radiographs with radiology reports and exact boxes.

The embedded, offline default dataset of the smoke and default tracks. Every study is a patient
(position and size of the thorax on the film, lung apices and costophrenic angles, diaphragm domes,
heart size, ribs, clavicles, spine, trachea, soft tissue, exposure and quantum noise all vary) with
zero, one or two findings drawn where its report says. v3 places findings as variably as radiologists'
boxes on real films (``cxrbench.data.audit`` compares the class box priors with ChestX-ray14's), in
these drawing patterns (``PATTERNS``) and sites:

==================  ================================================================================
Cardiomegaly        enlarged cardiac silhouette, cardiothoracic ratio 0.54-0.66 (normal 0.38-0.48)
Pleural Effusion    free fluid at one lung base (meniscus rising laterally, blunted costophrenic angle)
                    or at both (one finding, a box per side); loculated: a lens of fluid along the
                    lateral chest wall or in the right minor fissure
Pneumothorax        lucency without lung markings bounded by a thin bright visceral pleural line:
                    apical (small to large), lateral (along the lateral wall) or basilar (deep sulcus)
Consolidation       dense lobar opacity with a sharp fissural border and dark branching air bronchograms;
                    any zone, the lingula or the left lower lobe behind the heart
Pneumonia           ill-defined, patchy (mottled) airspace opacity; any zone, lingula, behind the heart
Atelectasis         plate-like band (near horizontal) in any zone, or a collapsed lower lobe (wedge
                    to the lifted dome) or upper lobe (wedge along the upper mediastinum)
Edema               mottled haze with septal lines, perihilar, bibasilar or diffuse; a box per lung
Lung Opacity        rounded (nodular) or hazy focal opacity; any zone, lingula, behind the heart
==================  ================================================================================

Conventions: images are PA views, so the patient's right is the image's left. Zones are fractions of
each lung's height from apex to costophrenic angle (upper 0.10-0.36, middle 0.40-0.60, lower
0.64-0.86). A finding's boxes are the bounding boxes, in output pixels, of where its drawing replaces
more than ``_FOOTPRINT_WEIGHT`` of the local tissue, so they are tight to what was drawn; edema and
bilateral effusions have one box per lung. ``SynthCXR.render(split, i, labels=())`` draws the same
patient without its findings.

Determinism: a study is a pure function of ``(seed, split, index)``; a block of 80 consecutive studies
shares one composition table (12 normal, 8 single studies of each finding, 4 pairs that cover every
finding once), so every finding is equally frequent and study ``i`` never depends on how many studies
a split has, nor on which other studies are rendered in the same vectorized batch. Rendering uses
float32 arithmetic (exactly rounded on every CPU) with float64 transcendental functions, and the
fingerprint hashes images quantized to uint8, so it is the same on any machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from cxrbench.data.schema import FINDING_CLASSES, Box, Finding, Sample
from cxrbench.errors import DataError

SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_CODES = {"train": 1, "test": 2}
#: Studies per composition block: 12 normal + 8 x 8 single-finding + 4 two-finding studies.
_BLOCK = 80
_NORMAL_PER_BLOCK = 12
_SINGLES_PER_CLASS = 8
#: A finding's footprint: where its mixing weight exceeds this (box = bounding box of the footprint).
_FOOTPRINT_WEIGHT = 0.05
#: Pixels rendered per vectorized batch (bounds memory: a few dozen float32 arrays of this size live at once).
_BATCH_PIXELS = 2**18
ZONES: tuple[str, ...] = ("upper", "middle", "lower")
_ZONE_RANGES = {"upper": (0.10, 0.36), "middle": (0.40, 0.60), "lower": (0.64, 0.86)}
SIDES: tuple[str, ...] = ("right", "left")
_PATIENT_SIDES = (0, 1)  # index 0: patient right (image left); 1: patient left (image right)
#: Severity words of the graded findings, mildest first.
SEVERITIES: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": ("mild", "moderate", "marked"),
    "Pleural Effusion": ("small", "moderate", "large"),
    "Pneumothorax": ("small", "moderate", "large"),
    "Edema": ("mild", "moderate"),
}


# --------------------------------------------------------------------------------------------------
# Study specification: everything random about a study, drawn before anything is rendered.
# --------------------------------------------------------------------------------------------------


#: Patient parameters and the uniform range each is drawn from (image units, y downwards; attenuation
#: in units where the displayed brightness is 1 - exp(-exposure * attenuation)).
_ANATOMY_RANGES: dict[str, tuple[float, float]] = {
    "cx": (0.44, 0.56),
    "thorax_halfwidth": (0.31, 0.385),
    "thorax_asymmetry": (-0.012, 0.012),
    "apex_y": (0.04, 0.17),
    "apex_jitter_right": (-0.01, 0.01),
    "apex_jitter_left": (-0.01, 0.01),
    "lung_height": (0.6, 0.78),
    "right_dome_rise": (0.01, 0.035),
    "dome_right": (0.05, 0.085),
    "dome_left": (0.045, 0.08),
    "apex_offset_right": (0.15, 0.18),
    "apex_offset_left": (0.15, 0.18),
    "mediastinum_halfwidth": (0.05, 0.065),
    "knob_drop": (0.15, 0.19),
    "knob_size": (0.02, 0.04),
    "carina_drop": (0.20, 0.25),
    "hilum_offset": (0.085, 0.105),
    "hilum_drop": (0.27, 0.32),
    "heart_ctr": (0.38, 0.48),
    "heart_right_fraction": (0.27, 0.35),
    "heart_apex_level": (0.78, 0.92),
    "heart_top_offset": (-0.02, 0.03),
    "gastric_bubble": (0.0, 1.0),
    "ribs_above_dome": (8.5, 10.0),
    "rib_curvature": (1.8, 2.6),
    "rib_phase_right": (0.0, 1.0),
    "rib_phase_left": (0.0, 1.0),
    "rib_density": (0.16, 0.26),
    "clavicle_drop": (0.05, 0.085),
    "neck_halfwidth": (0.11, 0.15),
    "shoulder_rise": (0.04, 0.09),
    "body_halfwidth": (0.46, 0.58),
    "breast": (0.0, 1.0),
    "breast_size": (0.12, 0.18),
    "breast_drop": (-0.04, 0.02),
    "soft_density": (0.5, 0.65),
    "core_density": (0.85, 1.05),
    "air_density": (1.05, 1.25),
    "marking_strength": (0.8, 1.2),
    "exposure": (0.9, 1.1),
    "black": (0.0, 0.05),
    "white": (0.86, 0.97),
    "gamma": (0.85, 1.2),
    "noise_sigma": (0.008, 0.022),
}


#: Anatomy a finding changes (``FindingSpec.anatomy``): how far each hemidiaphragm is lifted.
_FINDING_ANATOMY = ("dome_lift_right", "dome_lift_left")
#: Posture a patient may be drawn with (synthcxr-base; 0 otherwise): ``rotation`` shifts the spine and the
#: trachea from the middle of the thorax towards the patient's right (< 0) or left (> 0); ``scoliosis``
#: bows the thoracic spine, convex to the right (< 0) or the left (> 0), by that much at mid height.
_POSE_ANATOMY = ("rotation", "scoliosis")


class Anatomy:
    """One patient's anatomy and exposure: one attribute per entry of ``_ANATOMY_RANGES`` (the single
    list of patient parameters), plus derived per-side tuples.

    Per-side tuples are indexed 0 = patient right (image left), 1 = patient left (image right). The
    values are floats for one patient, or (B, 1, 1) arrays for a batch (``Anatomy.stack``); the
    geometry functions below accept either.
    """

    def __init__(self, values: dict[str, float]) -> None:
        self.values = dict(values)
        # Volume loss (lobar atelectasis) raises a hemidiaphragm, synthcxr-base poses some patients; 0 else.
        for key in _FINDING_ANATOMY + _POSE_ANATOMY:
            self.values.setdefault(key, 0.0)
        values = self.values
        self.__dict__.update(values)
        #: Height of the left costophrenic angle (the right one is ``right_dome_rise`` higher).
        self.costophrenic_y = self.apex_y + self.lung_height
        half, asym = self.thorax_halfwidth, self.thorax_asymmetry
        self.thorax = (half + asym, half - asym)
        self.apex = (self.apex_y + self.apex_jitter_right, self.apex_y + self.apex_jitter_left)
        self.costophrenic = (self.costophrenic_y - self.right_dome_rise, self.costophrenic_y)
        self.dome_lift = (self.dome_lift_right, self.dome_lift_left)
        self.dome = (self.dome_right, self.dome_left)
        self.apex_offset = (self.apex_offset_right, self.apex_offset_left)
        self.hilum_y = self.apex_y + self.hilum_drop
        #: Internal thoracic diameter (the denominator of the cardiothoracic ratio).
        self.thoracic_width = 2.0 * self.thorax_halfwidth

    def __repr__(self) -> str:
        return f"Anatomy({', '.join(f'{k}={v:.4g}' for k, v in self.values.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Anatomy) and other.values == self.values

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def stack(cls, anatomies: list["Anatomy"]) -> "Anatomy":
        """Many patients at once: each value becomes a (B, 1, 1) float32 array; renders broadcast over B."""
        keys = anatomies[0].values.keys()
        return cls({k: np.array([a.values[k] for a in anatomies], dtype=np.float32).reshape(-1, 1, 1)
                    for k in keys})


@dataclass(frozen=True)
class FindingSpec:
    """A finding to draw: class, where, how severe, its geometry, its own texture seed and its phrase."""

    label: str
    side: str | None
    zone: str | None
    severity: str | None
    geometry: dict[str, float] = field(default_factory=dict)
    texture_seed: int = 0
    phrase: str = ""
    #: Changes to the patient's anatomy while the finding is drawn (added to ``Anatomy`` values).
    anatomy: dict[str, float] = field(default_factory=dict)
    #: The drawing pattern of a class with several (``PATTERNS``), e.g. "apical", "bilateral"; else "".
    pattern: str = ""


@dataclass(frozen=True)
class DeviceSpec:
    """A support device over the chest: ``kind`` in DEVICE_KINDS and its geometry."""

    kind: str
    geometry: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LesionSpec:
    """An incidental lesion that is none of the eight findings (drawn by synthcxr-base): ``kind``, the
    side ("right", "left" or "bilateral"), the zone and its geometry."""

    kind: str
    side: str
    zone: str | None = None
    geometry: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySpec:
    """Everything that defines one study; rendering is a pure function of it and the image size."""

    id: str
    split: str
    index: int
    anatomy: Anatomy
    findings: tuple[FindingSpec, ...]
    report: str
    texture_entropy: tuple[int, ...]
    devices: tuple[DeviceSpec, ...] = ()
    lesions: tuple[LesionSpec, ...] = ()

    @property
    def cardiothoracic_ratio(self) -> float:
        """Heart width / internal thoracic width as drawn (the cardiomegaly finding sets it > 0.5)."""
        for f in self.findings:
            if f.label == "Cardiomegaly":
                return f.geometry["ctr"]
        return self.anatomy.heart_ctr


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _draw_anatomy(rng: np.random.Generator) -> Anatomy:
    draws = rng.random(len(_ANATOMY_RANGES))
    ranges = _ANATOMY_RANGES.items()
    values = {name: lo + (hi - lo) * x for (name, (lo, hi)), x in zip(ranges, draws.tolist())}
    return Anatomy(values)


# --------------------------------------------------------------------------------------------------
# Lung geometry shared by the spec (where findings go) and the renderer (what they look like).
# --------------------------------------------------------------------------------------------------


def _mediastinal_border(a: Anatomy, side: int, v: np.ndarray) -> np.ndarray:
    """Distance from the midline of the lung's medial border at height ``v`` (aortic knob on the left)."""
    border = a.mediastinum_halfwidth + np.zeros_like(v)
    if side == 1:
        border = border + a.knob_size * _f64(np.exp, -(((v - a.apex_y - a.knob_drop) / 0.035) ** 2))
    return border


def _lung_extent(a: Anatomy, side: int, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Medial and lateral distance from the midline of a lung at height ``v`` (above the dome)."""
    top, cp, tw = a.apex[side], a.costophrenic[side], a.thorax[side]
    apex = a.apex_offset[side]
    t = np.clip((v - top) / (cp - top), 0.0, 1.0)
    lateral = apex + (tw - apex) * _f64(np.power, t, 0.35)
    medial = apex - (apex - _mediastinal_border(a, side, v)) * _f64(np.power, t, 0.3)
    return medial, lateral


def _dome_y(a: Anatomy, side: int, d: np.ndarray | float) -> np.ndarray:
    """Height of the diaphragm under a lung at lateral distance ``d``; lowest at the costophrenic angle."""
    tw, cp = a.thorax[side], a.costophrenic[side]
    dome = a.dome[side]
    peak = 0.45 * tw
    return cp - a.dome_lift[side] - dome * (1.0 - ((np.asarray(d) - peak) / (tw - peak)) ** 2)


def _zone_y(a: Anatomy, side: int, t: float) -> float:
    """Height at fraction ``t`` of the lung's height (0 apex, 1 costophrenic angle)."""
    return a.apex[side] + t * (a.costophrenic[side] - a.apex[side])


def _heart_extent(a: Anatomy, ctr: float) -> tuple[float, float, float, float]:
    """Reach right and left of the midline, top and floor of a heart whose width is ``ctr`` of the thorax."""
    width = ctr * a.thoracic_width
    right = width * a.heart_right_fraction
    left = width - right
    floor = _dome_y(a, 1, left) + a.dome_lift[1]  # a lifted dome covers the heart's floor, not reshapes it
    top = a.hilum_y + a.heart_top_offset - 0.3 * (ctr - 0.45)  # a large heart also rises higher
    return right, left, top, floor


def _heart_borders(a: Anatomy, ctr: float, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from the midline of the right (image left) and left heart borders at height ``v``.

    The left border bulges out from the pulmonary trunk to the ventricular apex, widest at a fraction
    ``heart_apex_level`` of the heart's height; the right border is the right atrium's arc. Both
    continue under the left dome, which hides their lower end (the cardiophrenic angles).
    """
    right, left, top, floor = _heart_extent(a, ctr)
    s = (v - top) * (1.0 / (floor - top))
    peak = a.heart_apex_level
    left_border = left * np.sqrt(np.clip(1.0 - ((s - peak) / peak) ** 2, 0.0, 1.0))
    right_border = right * np.sqrt(np.clip(1.0 - ((s - 0.75) / 0.45) ** 2, 0.0, 1.0))
    return right_border, left_border


def _heart_mask(a: Anatomy, ctr: float, u: np.ndarray, v: np.ndarray, edge: float) -> np.ndarray:
    right_border, left_border = _heart_borders(a, ctr, v)
    x = u - a.cx
    below_top = _ramp(v - _heart_extent(a, ctr)[2], edge)
    return _ramp(left_border - x, edge) * _ramp(x + right_border, edge) * below_top


def _sample_point(a: Anatomy, side: int, zone: str, rng: np.random.Generator, margin: float
                  ) -> tuple[float, float]:
    """A point (distance from the midline, y) inside lung ``side`` within ``zone``, clear of the heart.

    Keeps ``margin`` from the lung borders where the lung is wide enough, a smaller margin where not.
    """
    lo, hi = _ZONE_RANGES[zone]
    for m in (margin, 0.5 * margin, 0.01):
        for _ in range(12):
            y = _zone_y(a, side, lo + (hi - lo) * float(rng.random()))
            medial, lateral = (float(x[0]) for x in _lung_extent(a, side, np.array([y])))
            if side == 1 and y > a.hilum_y:
                medial = max(medial, _heart_extent(a, a.heart_ctr)[1])
            if lateral - medial < 2 * m:
                continue
            d = medial + m + (lateral - medial - 2 * m) * float(rng.random())
            if y + m < float(_dome_y(a, side, d)):
                return d, y
    y = _zone_y(a, side, 0.5 * (lo + hi))
    medial, lateral = (float(x[0]) for x in _lung_extent(a, side, np.array([y])))
    return 0.3 * medial + 0.7 * lateral, y


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------

#: Names of a site: (noun, its preposition, adjective form); {s} is the side, {m} the side's middle zone.
_ZONE_WORDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "upper": (("{s} upper lobe", "in", "{s} upper lobe"), ("{s} upper lung zone", "in", "{s} upper zone"),
              ("{s} apex", "at", "{s} apical")),
    "middle": (("{s} mid lung", "in", "{s} mid lung"), ("{s} mid lung zone", "in", "{s} mid lung zone"),
               ("{m}", "in", "{m}")),
    "lower": (("{s} lower lobe", "in", "{s} lower lobe"), ("{s} lung base", "at", "{s} basilar"),
              ("{s} lower lung zone", "in", "{s} lower zone")),
    # Left lung only: the lingula, next to the left heart border, and the lower lobe behind the heart.
    "lingula": (("lingula", "in", "lingular"),),
    "retrocardiac": (("left lower lobe behind the heart", "in", "left lower lobe"),),
}
_ADVERB = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}


def _zone_phrase(rng: np.random.Generator, side: str, site: str, concise: bool = False
                 ) -> tuple[str, str, str]:
    """Noun, preposition and adjective naming ``site`` of lung ``side``; ``concise`` takes the first names."""
    options = _ZONE_WORDS[site]
    names = options[0 if concise else int(rng.integers(len(options)))]
    middle = "right middle lobe" if side == "right" else "left midlung"  # every zone name states its side
    noun, prep, adjective = names
    return noun.format(s=side, m=middle), prep, adjective.format(s=side, m=middle)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _pick_weighted(rng: np.random.Generator, options: tuple[str, ...], weights: tuple[float, ...]) -> str:
    cumulative = np.cumsum(weights) / np.sum(weights)
    return options[min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(options) - 1)]


#: Report templates per finding and drawing pattern (``label/pattern``). Placeholders: {sev} severity,
#: {adv} its adverb, {side}, {where} the site's noun, {prep} its preposition, {adj} its adjective form,
#: {size} "small " for small opacities. The first two are the concise forms used when a report states two
#: findings. A template with a severity set applies only to those.
_TEMPLATES: dict[str, tuple[tuple[str, frozenset[str] | None], ...]] = {
    "Cardiomegaly": (
        ("{sev} cardiomegaly.", None), ("The cardiac silhouette is {adv} enlarged.", None),
        ("{sev} enlargement of the cardiac silhouette.", None), ("{sev} cardiomegaly is present.", None),
    ),
    "Pleural Effusion/basal": (
        ("{sev} {side} pleural effusion.", None), ("{sev} {side} effusion.", None),
        ("{side} pleural effusion, {sev}.", None), ("There is a {sev} {side} pleural effusion.", None),
        ("Small {side} pleural effusion blunting the costophrenic angle.", frozenset({"small"})),
        ("{sev} {side} pleural effusion at the lung base.", None),
    ),
    "Pleural Effusion/bilateral": (
        ("{sev} bilateral pleural effusions.", None), ("{sev} bilateral effusions.", None),
        ("Bilateral pleural effusions, {sev}.", None), ("There are {sev} bilateral pleural effusions.", None),
    ),
    "Pleural Effusion/loculated": (
        ("Loculated {side} pleural effusion.", None), ("{side} loculated effusion.", None),
        ("Loculated {side} pleural effusion along the lateral chest wall.", None),
        ("{side} lateral loculated pleural effusion.", None),
    ),
    "Pleural Effusion/fissural": (
        ("Loculated effusion in the {side} minor fissure.", None),
        ("{side} fissural pleural effusion.", None),
        ("Loculated {side} pleural effusion in the minor fissure.", None),
    ),
    "Pneumothorax/apical": (
        ("{sev} {side} apical pneumothorax.", frozenset({"small", "moderate"})),
        ("{side} apical pneumothorax, {sev}.", frozenset({"small", "moderate"})),
        ("There is a {sev} {side} apical pneumothorax.", frozenset({"small", "moderate"})),
        ("{sev} pneumothorax at the {side} apex.", frozenset({"small", "moderate"})),
        ("Large {side} pneumothorax.", frozenset({"large"})),
        ("{side} pneumothorax, large.", frozenset({"large"})),
        ("There is a large {side} pneumothorax.", frozenset({"large"})),
    ),
    "Pneumothorax/lateral": (
        ("{sev} {side} lateral pneumothorax.", None), ("{side} lateral pneumothorax, {sev}.", None),
        ("{sev} {side} pneumothorax along the lateral chest wall.", None),
    ),
    "Pneumothorax/basilar": (
        ("{sev} {side} basilar pneumothorax.", None), ("{side} basilar pneumothorax, {sev}.", None),
        ("{sev} {side} basilar pneumothorax with a deep sulcus.", None),
    ),
    "Consolidation": (
        ("Consolidation {prep} the {where}.", None), ("{adj} consolidation.", None),
        ("Dense consolidation {prep} the {where}.", None),
        ("{adj} consolidation with air bronchograms.", None),
        ("Lobar consolidation {prep} the {where}.", None),
    ),
    "Pneumonia": (
        ("{adj} pneumonia.", None), ("Patchy {adj} pneumonia.", None),
        ("Pneumonia {prep} the {where}.", None),
        ("Patchy airspace disease {prep} the {where}, consistent with pneumonia.", None),
    ),
    "Atelectasis/plate": (
        ("Linear atelectasis {prep} the {where}.", None), ("{adj} atelectasis.", None),
        ("Plate-like atelectasis {prep} the {where}.", None), ("{adj} subsegmental atelectasis.", None),
        ("Minimal plate-like atelectasis {prep} the {where}.", None),
    ),
    "Atelectasis/lower lobe": (
        ("{side} lower lobe atelectasis.", None), ("Atelectasis of the {side} lower lobe.", None),
        ("{side} lower lobe atelectasis with volume loss.", None),
        ("{side} basilar atelectasis with elevation of the hemidiaphragm.", None),
    ),
    "Atelectasis/upper lobe": (
        ("{side} upper lobe atelectasis.", None), ("Atelectasis of the {side} upper lobe.", None),
        ("{side} upper lobe atelectasis with volume loss.", None),
        ("{side} apical atelectasis with volume loss.", None),
    ),
    "Edema/perihilar": (
        ("{sev} perihilar edema.", None), ("{sev} perihilar pulmonary edema.", None),
        ("{sev} pulmonary edema in a perihilar distribution.", None),
    ),
    "Edema/bibasilar": (
        ("{sev} bibasilar edema.", None), ("{sev} interstitial edema at the lung bases.", None),
        ("{sev} pulmonary edema, most marked at the bases.", None),
    ),
    "Edema/diffuse": (
        ("{sev} diffuse pulmonary edema.", None), ("{sev} diffuse interstitial edema.", None),
        ("{sev} pulmonary edema throughout both lungs.", None),
    ),
    "Lung Opacity/rounded": (
        ("Focal opacity {prep} the {where}.", None), ("{size}rounded opacity {prep} the {where}.", None),
        ("Nodular opacity {prep} the {where}.", None),
    ),
    "Lung Opacity/hazy": (
        ("Hazy opacity {prep} the {where}.", None), ("{adj} opacity.", None),
        ("Ill-defined opacity {prep} the {where}.", None), ("Patchy opacity {prep} the {where}.", None),
    ),
}
#: Longest finding sentence in characters (longer wordings of a template set are skipped).
_MAX_PHRASE_CHARS = 64


def _finding_phrase(rng: np.random.Generator, label: str, side: str | None, site: str | None,
                    severity: str | None, concise: bool = False, pattern: str = "") -> str:
    """The sentence that states one finding; it always contains one of the class's query words.

    ``site`` is a zone, ``"lingula"`` or ``"retrocardiac"``; ``pattern`` selects the templates of a
    drawing pattern (``_TEMPLATES`` key ``label/pattern`` when there is one).
    """
    where, prep, adjective = ("", "", "")
    if site is not None and side is not None:
        where, prep, adjective = _zone_phrase(rng, side, site, concise)
    key = f"{label}/{pattern}" if f"{label}/{pattern}" in _TEMPLATES else label
    options = [t for t, only in _TEMPLATES[key] if only is None or severity in only]
    words = {"sev": severity or "", "adv": _ADVERB.get(severity or "", ""), "side": side or "",
             "where": where, "prep": prep, "adj": adjective, "size": "small " if severity == "small" else ""}
    texts = [_sentence(t.format(**words)) for t in (options[:2] if concise else options)]
    fitting = tuple(t for t in texts if len(t) <= _MAX_PHRASE_CHARS) or (min(texts, key=len),)
    return _pick(rng, fitting)


_NORMAL_SENTENCES = (
    "No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.", "The lungs are clear.",
    "Normal chest radiograph.", "Clear lungs.",
)
_HEART_NORMAL = ("Heart size is normal.", "Normal heart size.", "The heart is normal in size.")
#: Pertinent negatives: each names another class in its own short sentence.
_NEGATIVES = {"Pneumothorax": "No pneumothorax.", "Pleural Effusion": "No pleural effusion."}
#: Longest report in characters; keeps every report inside a 32-token text encoder (tested).
_MAX_REPORT_CHARS = 80


def _compose_report(rng: np.random.Generator, findings: tuple[FindingSpec, ...]) -> str:
    """Finding sentences, then optional pertinent negatives and heart size, within ``_MAX_REPORT_CHARS``."""
    labels = {f.label for f in findings}
    extras: list[str] = []
    if not findings:
        sentences = [_pick(rng, _NORMAL_SENTENCES)]
        if rng.random() < 0.4:
            extras.append(_pick(rng, tuple(_NEGATIVES.values())))
        if rng.random() < 0.4:
            extras.append(_pick(rng, _HEART_NORMAL))
    else:
        sentences = [f.phrase for f in findings]
        negatives = tuple(text for label, text in _NEGATIVES.items() if label not in labels)
        if negatives and rng.random() < 0.5:
            extras.append(_pick(rng, negatives))
        if "Cardiomegaly" not in labels and rng.random() < 0.4:
            extras.append(_pick(rng, _HEART_NORMAL))
        elif rng.random() < 0.2:
            extras.append("Lungs are otherwise clear.")
    report = " ".join(sentences)
    for extra in extras:
        if len(findings) < 2 and len(report) + 1 + len(extra) <= _MAX_REPORT_CHARS:
            report = f"{report} {extra}"
    return report


# --------------------------------------------------------------------------------------------------
# Composition and finding geometry
# --------------------------------------------------------------------------------------------------


def _seed_entropy(seed: int, split: str, stream: int, key: int) -> list[int]:
    return [int(seed), _SPLIT_CODES[split], stream, int(key)]


@lru_cache(maxsize=256)
def _block_composition(seed: int, split: str, block: int) -> tuple[tuple[str, ...], ...]:
    """The finding labels of each of the 80 studies of a block, in a seeded random order."""
    rng = np.random.default_rng(_seed_entropy(seed, split, 0, block))
    slots: list[tuple[str, ...]] = [()] * _NORMAL_PER_BLOCK
    for label in FINDING_CLASSES:
        slots += [(label,)] * _SINGLES_PER_CLASS
    order = [FINDING_CLASSES[i] for i in rng.permutation(len(FINDING_CLASSES))]
    slots += [tuple(sorted(order[i:i + 2], key=FINDING_CLASSES.index)) for i in range(0, len(order), 2)]
    return tuple(slots[i] for i in rng.permutation(len(slots)))


@dataclass
class _Draft:
    """What a class's draw function decides about a finding: where (side, zone, and the site the
    report names), how severe, its drawing pattern, geometry and anatomy changes."""

    side: str | None
    zone: str | None = None
    site: str | None = None
    severity: str | None = None
    pattern: str = ""
    geometry: dict[str, float] = field(default_factory=dict)
    anatomy: dict[str, float] = field(default_factory=dict)


#: Sites of the focal airspace findings and their weights, per lung (right, left); the lingula and the
#: lower lobe behind the heart are left-sided. A site's zone is its own name or ``_SITE_ZONES``'.
_SITE_WEIGHTS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "Consolidation": ({"upper": 0.3, "middle": 0.3, "lower": 0.4},
                      {"upper": 0.25, "middle": 0.15, "lower": 0.3, "lingula": 0.15, "retrocardiac": 0.15}),
    "Pneumonia": ({"upper": 0.15, "middle": 0.3, "lower": 0.55},
                  {"upper": 0.15, "middle": 0.1, "lower": 0.45, "lingula": 0.15, "retrocardiac": 0.15}),
    "Lung Opacity": ({"upper": 0.35, "middle": 0.3, "lower": 0.35},
                     {"upper": 0.3, "middle": 0.2, "lower": 0.25, "lingula": 0.1, "retrocardiac": 0.15}),
}
_SITE_ZONES = {"lingula": "middle", "retrocardiac": "lower"}
#: Drawing patterns of a class and how often each is drawn.
PATTERNS: dict[str, dict[str, float]] = {
    "Atelectasis": {"plate": 0.6, "lower lobe": 0.3, "upper lobe": 0.1},
    "Pneumothorax": {"apical": 0.45, "lateral": 0.2, "basilar": 0.35},
    "Pleural Effusion": {"basal": 0.5, "bilateral": 0.15, "loculated": 0.25, "fissural": 0.1},
    "Edema": {"perihilar": 0.35, "bibasilar": 0.5, "diffuse": 0.15},
    "Lung Opacity": {"rounded": 0.5, "hazy": 0.5},
}


def _pick_pattern(rng: np.random.Generator, label: str, allowed: Collection[str] | None) -> str:
    weights = {k: w for k, w in PATTERNS[label].items() if allowed is None or k in allowed}
    if not weights:
        raise DataError(f"{label} patterns must be among {tuple(PATTERNS[label])}, "
                        f"but got {tuple(allowed or ())}")
    return _pick_weighted(rng, tuple(weights), tuple(weights.values()))


def _pick_site(rng: np.random.Generator, draft: _Draft, label: str, side_index: int) -> str:
    weights = _SITE_WEIGHTS[label][side_index]
    draft.site = _pick_weighted(rng, tuple(weights), tuple(weights.values()))
    draft.zone = _SITE_ZONES.get(draft.site, draft.site)
    return draft.site


def _site_point(a: Anatomy, side: int, site: str, rng: np.random.Generator, margin: float
                ) -> tuple[float, float]:
    """A point (distance from the midline, y) in ``site``: a zone (``_sample_point``), the lingula
    (left mid to lower zone against the heart border) or the left lower lobe behind the heart."""
    if site in ZONES:
        return _sample_point(a, side, site, rng, margin)
    y = _zone_y(a, side, _u(rng, 0.5, 0.68) if site == "lingula" else _u(rng, 0.68, 0.84))
    medial = float(_mediastinal_border(a, side, np.array([y]))[0])
    heart = float(_heart_borders(a, a.heart_ctr, np.array([y]))[1][0])
    if site == "lingula":
        d = max(heart, medial) + 0.6 * margin + _u(rng, 0.0, 0.03)
    else:
        d = medial + (max(heart, medial + 0.02) - medial) * _u(rng, 0.3, 0.7)
    return d, min(y, float(_dome_y(a, side, d)) - 0.5 * margin)


def _draft_cardiomegaly(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                        allowed: Collection[str] | None) -> None:
    ctr = draft.geometry["ctr"] = _u(rng, 0.54, 0.66)
    draft.severity = "mild" if ctr < 0.58 else ("moderate" if ctr < 0.62 else "marked")
    draft.side = None


def _draft_effusion(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                    allowed: Collection[str] | None) -> None:
    g = draft.geometry
    if side_index == 1:  # the minor fissure is in the right lung
        allowed = [p for p in (allowed or PATTERNS["Pleural Effusion"]) if p != "fissural"]
    draft.pattern = _pick_pattern(rng, "Pleural Effusion", allowed)
    if draft.pattern == "fissural":  # a lens of fluid in the minor fissure (a "pseudotumour")
        g.update(t=_u(rng, 0.38, 0.5), d=_u(rng, 0.12, 0.2), half_width=_u(rng, 0.05, 0.09),
                 half_height=_u(rng, 0.02, 0.035), strength=_u(rng, 0.8, 0.9))
        return
    if draft.pattern == "loculated":  # lenticular fluid along the lateral chest wall
        g.update(centre=_u(rng, 0.25, 0.75), half=_u(rng, 0.06, 0.11), thickness=_u(rng, 0.035, 0.06),
                 strength=_u(rng, 0.8, 0.9))
        return
    levels = {"small": (0.78, 0.86), "moderate": (0.58, 0.72), "large": (0.32, 0.5)}
    if draft.pattern == "bilateral":
        draft.severity, draft.side = _pick(rng, ("small", "moderate")), "bilateral"
        g.update(level_right=_u(rng, *levels[draft.severity]), level_left=_u(rng, *levels[draft.severity]))
    else:
        draft.severity = _pick(rng, SEVERITIES["Pleural Effusion"])
        g["level"] = _u(rng, *levels[draft.severity])
    g.update(meniscus=_u(rng, 0.04, 0.14), fade=_u(rng, 0.015, 0.03), strength=_u(rng, 0.85, 0.95))


def _draft_pneumothorax(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                        allowed: Collection[str] | None) -> None:
    """Pleural air separates the lung from the chest wall by a rim whose depth peaks at ``centre`` (a
    fraction of the lung's height) and falls to nothing ``half`` away; apical air also caps the apex
    (``top_gap``), basilar air also lifts the lung off the lateral dome (``base_gap``, a deep sulcus)."""
    g = draft.geometry
    draft.pattern = _pick_pattern(rng, "Pneumothorax", allowed)
    if draft.pattern == "apical":
        draft.severity = _pick_weighted(rng, SEVERITIES["Pneumothorax"], (0.45, 0.35, 0.2))
        depth, extent = {"small": ((0.045, 0.06), (0.3, 0.45)), "moderate": ((0.065, 0.085), (0.6, 0.8)),
                         "large": ((0.09, 0.12), (1.0, 1.3))}[draft.severity]
        g.update(depth=_u(rng, *depth), centre=0.0, half=_u(rng, *extent))
        g["top_gap"] = g["depth"]
        draft.zone = "upper" if draft.severity != "large" else None
    else:
        draft.severity = _pick_weighted(rng, ("small", "moderate"), (0.6, 0.4))
        depth = (0.04, 0.055) if draft.severity == "small" else (0.055, 0.075)
        g["depth"] = _u(rng, *depth)
        if draft.pattern == "lateral":
            g.update(centre=_u(rng, 0.3, 0.7), half=_u(rng, 0.2, 0.35))
            draft.zone = "middle"
        else:
            g.update(centre=1.0, half=_u(rng, 0.3, 0.5), base_gap=g["depth"] * _u(rng, 0.7, 1.0))
            draft.zone = "lower"
    g["strength"] = _u(rng, 0.85, 0.95)


def _draft_consolidation(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                         allowed: Collection[str] | None) -> None:
    """A lobe or segment between ``top`` and ``bottom`` (fractions of the lung's height); the lingula
    and the lower lobe behind the heart reach only ``reach`` beyond the left heart border."""
    site = _pick_site(rng, draft, "Consolidation", side_index)
    bounds = {"upper": ((0.0, 0.12), (0.36, 0.46)), "middle": ((0.34, 0.42), (0.6, 0.68)),
              "lower": ((0.58, 0.68), (1.0, 1.0)), "lingula": ((0.42, 0.5), (0.7, 0.8)),
              "retrocardiac": ((0.58, 0.66), (1.0, 1.0))}[site]
    g = draft.geometry
    g.update(top=_u(rng, *bounds[0]), bottom=_u(rng, *bounds[1]), tilt=_u(rng, -0.15, 0.15),
             strength=_u(rng, 0.75, 0.88))
    if site == "lingula":
        g["reach"] = _u(rng, 0.07, 0.12)
    elif site == "retrocardiac":
        g.update(reach=_u(rng, -0.01, 0.03), behind_heart=1.0)


def _draft_pneumonia(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                     allowed: Collection[str] | None) -> None:
    """An ill-defined cloud broken up into patches: an elliptical envelope times thresholded noise."""
    site = _pick_site(rng, draft, "Pneumonia", side_index)
    d, y = _site_point(a, side_index, site, rng, margin=0.08)
    draft.geometry.update(d=d, y=y, rx=_u(rng, 0.1, 0.24), ry=_u(rng, 0.1, 0.24),
                          patchiness=_u(rng, 0.3, 0.6), strength=_u(rng, 0.6, 0.75),
                          behind_heart=float(site == "retrocardiac"))


def _draft_atelectasis(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                       allowed: Collection[str] | None) -> None:
    g = draft.geometry
    draft.pattern = _pick_pattern(rng, "Atelectasis", allowed)
    if draft.pattern == "plate":  # plate-like (subsegmental): a thin, near horizontal band in any zone
        draft.zone = draft.site = _pick_weighted(rng, ZONES, (0.1, 0.2, 0.7))
        d, y = _sample_point(a, side_index, draft.zone, rng, margin=0.06)
        g.update(d=d, y=y, length=_u(rng, 0.12, 0.22), thickness=_u(rng, 0.01, 0.017),
                 angle=_u(rng, -0.3, 0.3), strength=_u(rng, 0.8, 0.92))
    elif draft.pattern == "lower lobe":  # a dense wedge along the medial base; the dome rises
        draft.zone = "lower"
        g.update(lobar=1.0, top=_u(rng, 0.45, 0.6), width=_u(rng, 0.1, 0.16), strength=_u(rng, 0.6, 0.8))
        draft.anatomy["dome_lift_right" if side_index == 0 else "dome_lift_left"] = _u(rng, 0.02, 0.04)
    else:  # a collapsed upper lobe: a dense wedge along the upper mediastinum, widest at the apex
        draft.zone = "upper"
        g.update(upper_lobe=1.0, bottom=_u(rng, 0.32, 0.45), width=_u(rng, 0.08, 0.13),
                 strength=_u(rng, 0.7, 0.85))


def _draft_edema(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                 allowed: Collection[str] | None) -> None:
    """A haze centred ``d`` from the midline at ``t`` of each lung's height, with septal lines."""
    draft.pattern = _pick_pattern(rng, "Edema", allowed)
    draft.severity = _pick(rng, SEVERITIES["Edema"])
    draft.side = "bilateral"
    strength = (0.35, 0.45) if draft.severity == "mild" else (0.5, 0.62)
    hilum_t = (a.hilum_y + 0.02 - a.apex_y) / (a.costophrenic_y - a.apex_y)
    shapes = {"perihilar": (a.hilum_offset + 0.03, hilum_t, (0.1, 0.17), (0.11, 0.2)),
              "bibasilar": (_u(rng, 0.15, 0.24), _u(rng, 0.75, 0.9), (0.1, 0.17), (0.09, 0.15)),
              "diffuse": (_u(rng, 0.17, 0.21), _u(rng, 0.45, 0.55), (0.22, 0.28), (0.32, 0.4))}
    d, t, rx, ry = shapes[draft.pattern]
    draft.geometry.update(d=d, t=t, rx=_u(rng, *rx), ry=_u(rng, *ry), strength=_u(rng, *strength),
                          septal_lines=_u(rng, 0.5, 1.0), line_phase=_u(rng, 0.0, 1.0))


def _draft_lung_opacity(rng: np.random.Generator, a: Anatomy, side_index: int, draft: _Draft,
                        allowed: Collection[str] | None) -> None:
    draft.pattern = _pick_pattern(rng, "Lung Opacity", allowed)
    site = _pick_site(rng, draft, "Lung Opacity", side_index)
    behind = float(site == "retrocardiac")
    if draft.pattern == "rounded":  # well-defined, nodular
        radius = _u(rng, 0.025, 0.08)
        draft.severity = "small" if radius < 0.04 else None
        d, y = _site_point(a, side_index, site, rng, margin=radius + 0.01)
        draft.geometry.update(d=d, y=y, radius=radius, strength=_u(rng, 0.6, 0.75), behind_heart=behind)
    else:  # hazy, ill-defined
        rx, ry = _u(rng, 0.06, 0.2), _u(rng, 0.06, 0.2)
        d, y = _site_point(a, side_index, site, rng, margin=0.07)
        draft.geometry.update(d=d, y=y, rx=rx, ry=ry, hazy=1.0, strength=_u(rng, 0.45, 0.6),
                              behind_heart=behind)


_DRAFTS: dict[str, Callable[..., None]] = {
    "Cardiomegaly": _draft_cardiomegaly, "Pleural Effusion": _draft_effusion,
    "Pneumothorax": _draft_pneumothorax, "Consolidation": _draft_consolidation, "Pneumonia": _draft_pneumonia,
    "Atelectasis": _draft_atelectasis, "Edema": _draft_edema, "Lung Opacity": _draft_lung_opacity,
}


def _draw_finding(rng: np.random.Generator, a: Anatomy, label: str, side_index: int,
                  concise: bool = False, patterns: Collection[str] | None = None) -> FindingSpec:
    """Draw one finding of ``label`` in lung ``side_index`` (bilateral patterns use both lungs).

    ``patterns`` restricts the drawing patterns of a class with several (``PATTERNS``; None: all).
    """
    if label not in _DRAFTS:
        raise DataError(f"finding label must be one of {FINDING_CLASSES}, but got {label!r}")
    draft = _Draft(side=SIDES[side_index])
    _DRAFTS[label](rng, a, side_index, draft, patterns)
    texture_seed = int(rng.integers(2**31))
    phrase_side = draft.side if draft.side in SIDES else None
    site = draft.site or draft.zone
    if label in ("Pleural Effusion", "Pneumothorax", "Atelectasis") and draft.pattern != "plate":
        site = None  # the pattern's templates say where
    phrase = _finding_phrase(rng, label, phrase_side, site, draft.severity, concise, draft.pattern)
    return FindingSpec(label, draft.side, draft.zone, draft.severity, draft.geometry, texture_seed, phrase,
                       draft.anatomy, draft.pattern)


#: Support devices and how often a study has each (independently); reports name the line and the tube.
DEVICE_KINDS: dict[str, float] = {"ecg_leads": 0.08, "central_line": 0.06, "endotracheal_tube": 0.03}
_DEVICE_SENTENCES = {
    "central_line": ("Right IJ line tip in the SVC.", "Right central line in place."),
    "endotracheal_tube": ("Endotracheal tube in place.", "ET tube above the carina."),
}


def _draw_devices(rng: np.random.Generator, a: Anatomy) -> tuple[DeviceSpec, ...]:
    devices = []
    for kind, rate in DEVICE_KINDS.items():
        if rng.random() >= rate:
            continue
        if kind == "ecg_leads":
            count = int(rng.integers(2, 5))
            g = {f"x{i}": _u(rng, 0.12, 0.88) for i in range(count)}
            g.update({f"y{i}": _u(rng, 0.06, 0.3) for i in range(count)})
            g["count"] = float(count)
        elif kind == "central_line":
            g = {"entry_d": _u(rng, 0.16, 0.24), "entry_y": a.apex_y + a.clavicle_drop + _u(rng, -0.02, 0.02),
                 "tip_y": a.hilum_y + _u(rng, -0.05, 0.0)}
        else:
            g = {"tip_y": a.apex_y + a.carina_drop - _u(rng, 0.03, 0.06)}
        devices.append(DeviceSpec(kind, g))
    return tuple(devices)


def _with_device_sentences(rng: np.random.Generator, report: str, devices: tuple[DeviceSpec, ...]) -> str:
    for device in devices:
        if device.kind in _DEVICE_SENTENCES:
            sentence = _pick(rng, _DEVICE_SENTENCES[device.kind])
            if len(report) + 1 + len(sentence) <= _MAX_REPORT_CHARS:
                report = f"{report} {sentence}"
    return report


def study_spec(seed: int, split: str, index: int, support_devices: bool = True) -> StudySpec:
    """The specification of study ``index`` of ``split``: a pure function of ``(seed, split, index)``.

    Support devices are drawn from their own random stream, so ``support_devices=False`` gives the same
    patients, findings and reports, only without devices (and without the sentences naming them).
    """
    labels = _block_composition(seed, split, index // _BLOCK)[index % _BLOCK]
    rng = np.random.default_rng(_seed_entropy(seed, split, 1, index))
    anatomy = _draw_anatomy(rng)
    first_side = int(rng.integers(2))
    findings = []
    for k, label in enumerate(labels):
        side = first_side if k == 0 else 1 - first_side
        findings.append(_draw_finding(rng, anatomy, label, side, concise=len(labels) > 1))
    report = _compose_report(rng, tuple(findings))
    devices: tuple[DeviceSpec, ...] = ()
    if support_devices:
        device_rng = np.random.default_rng(_seed_entropy(seed, split, 3, index))
        devices = _draw_devices(device_rng, anatomy)
        report = _with_device_sentences(device_rng, report, devices)
    return StudySpec(
        id=f"synthcxr-{split}-{index:06d}", split=split, index=index, anatomy=anatomy,
        findings=tuple(findings), report=report, texture_entropy=tuple(_seed_entropy(seed, split, 2, index)),
        devices=devices,
    )


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _f64(fn: Callable[..., np.ndarray], *args: np.ndarray | float) -> np.ndarray:
    """``fn(*args)`` evaluated in float64 and rounded to the arguments' precision.

    Rendering runs in float32 for speed. Elementary arithmetic and sqrt are exactly rounded on every
    CPU, but float32 exp/power implementations differ between CPUs in the last bits; float64 ones
    differ at most in the last of 53 bits, which changes the float32 result only when it lies within
    that distance of a rounding boundary.
    """
    dtype = np.result_type(*args)
    out = fn(*(np.asarray(x, dtype=np.float64) for x in args))
    return out.astype(np.float32) if dtype == np.float32 else out


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step from 0 to 1 over ``width`` centred on x = 0 (a box-filtered edge)."""
    y = x * (1.0 / width) + 0.5
    return np.minimum(np.maximum(y, 0.0, out=y), 1.0, out=y)


def _rise(x: np.ndarray, width: float) -> np.ndarray:
    """0 for x <= 0 rising linearly to 1 at x = ``width``."""
    y = x * (1.0 / width)
    return np.minimum(np.maximum(y, 0.0, out=y), 1.0, out=y)


def _biweight(q: np.ndarray) -> np.ndarray:
    """(1 - q)^2 for q < 1, else 0: a smooth bump with compact support (q = squared normalized distance)."""
    y = np.maximum(1.0 - q, 0.0)
    return y * y


@lru_cache(maxsize=64)
def _smooth_basis(resolution: int, knots: int) -> np.ndarray:
    """Gaussian interpolation matrix (resolution, knots): B @ G @ B.T is smooth noise of unit variance."""
    pos = (np.arange(resolution) + 0.5) / resolution
    centres = (np.arange(knots) + 0.5) / knots
    basis = np.exp(-0.5 * ((pos[:, None] - centres[None, :]) * knots / 0.8) ** 2)
    return basis / np.linalg.norm(basis, axis=1, keepdims=True)


def _smooth_noise(rng: np.random.Generator, resolution: int, knots: int) -> np.ndarray:
    """Gaussian random field of unit variance with about ``knots`` features across the image."""
    basis = _smooth_basis(resolution, knots)
    return (basis @ rng.standard_normal((knots, knots)) @ basis.T).astype(np.float32)


def _side_rows(a: Anatomy, u: np.ndarray, side: int) -> np.ndarray:
    """Lateral distance from the midline towards ``side`` (negative on the other half)."""
    return (a.cx - u) if side == 0 else (u - a.cx)


def _x_of(a: Anatomy, side: int, d: float) -> float:
    return a.cx - d if side == 0 else a.cx + d


def _wave(x: np.ndarray) -> np.ndarray:
    """Triangle wave with period 2*pi, +1 at multiples of 2*pi and -1 half-way: a cheap, exactly
    reproducible stand-in for cos (only IEEE-exact operations)."""
    f = x * (1.0 / (2.0 * np.pi))
    return 4.0 * np.abs(f - np.floor(f) - 0.5) - 1.0


@dataclass
class _Canvas:
    """Grids and per-study fields at the render resolution, shared by the anatomy and finding layers."""

    res: int
    edge: float
    u: np.ndarray  # (1, R) x in image units
    v: np.ndarray  # (R, 1) y in image units
    left_half: np.ndarray  # (1, R) True on the image left (patient right)
    d: np.ndarray  # (1, R) distance from the midline
    lung_shape: list[np.ndarray]  # per side, heart not removed
    heart: np.ndarray
    lung: np.ndarray  # both lungs, heart removed
    air: np.ndarray  # attenuation the air of the lungs removes (0 outside the lungs)
    markings: np.ndarray  # vessel attenuation inside the lungs


def _lung_fields(a: Anatomy, side: int, u: np.ndarray, v: np.ndarray, edge: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Soft mask of one lung and its depth (1 in the middle, falling towards apex, wall and dome)."""
    ds = _side_rows(a, u, side)
    medial, lateral = _lung_extent(a, side, v)
    to_wall = lateral - ds
    to_dome = _dome_y(a, side, ds) - v
    from_apex = v - a.apex[side]
    shape = _ramp(to_wall, edge) * _ramp(ds - medial, edge) * _ramp(to_dome, edge) * _ramp(from_apex, edge)
    depth = _rise(to_wall, 0.1) * _rise(to_dome, 0.06) * _rise(from_apex, 0.15)
    return shape, depth


#: The smooth random fields of a patient and their number of features across the image.
_TEXTURE_KNOTS = {"warp": 7, "parenchyma": 24, "soft": 5, "abdomen": 8}


def _textures(specs: list[StudySpec], res: int, size: int) -> dict[str, np.ndarray]:
    """Each patient's random fields, drawn in a fixed order from its texture stream, stacked (B, ...)."""
    draws = []
    for spec in specs:
        rng = np.random.default_rng(list(spec.texture_entropy))
        fields = {name: rng.standard_normal((k, k)) for name, k in _TEXTURE_KNOTS.items()}
        fields["noise"] = rng.random((size, size), dtype=np.float32)
        draws.append(fields)
    tex = {}
    for name, k in _TEXTURE_KNOTS.items():
        basis = _smooth_basis(res, k)
        tex[name] = (basis @ np.stack([d[name] for d in draws]) @ basis.T).astype(np.float32)
    # Quantum noise: uniform with unit variance (cheaper to draw than normal, alike to the eye).
    tex["noise"] = (np.stack([d["noise"] for d in draws]) - np.float32(0.5)) * np.float32(np.sqrt(12.0))
    return tex


def _canvas(a: Anatomy, res: int, ctr: np.ndarray, tex: dict[str, np.ndarray]) -> _Canvas:
    """Lungs, heart and vessel markings of a batch of patients (``a`` and ``ctr`` stacked as (B, 1, 1))."""
    coords = ((np.arange(res) + 0.5) / res).astype(np.float32)
    u, v = coords[None, None, :], coords[None, :, None]
    edge = 1.0 / res
    d = np.abs(u - a.cx)
    heart = _heart_mask(a, ctr, u, v, edge)
    # Each lung is computed over the whole width (its mask is 0 beyond the midline).
    fields = [_lung_fields(a, s, u, v, edge) for s in _PATIENT_SIDES]
    shapes = [fields[s][0] for s in _PATIENT_SIDES]
    lung = (shapes[0] + shapes[1]) * (1.0 - heart)
    depth = np.where(u < a.cx, fields[0][1], fields[1][1])
    air = a.air_density * lung * (0.78 + 0.22 * depth)
    # Vessels radiate from the hila, branch (a second, finer set further out) and fade to the periphery.
    dd, dv = d - a.hilum_offset, v - a.hilum_y
    r = np.sqrt(dd * dd + dv * dv)
    theta = (0.5 * np.pi) * dv / (np.abs(dd) + np.abs(dv) + 1e-6)  # a monotone stand-in for the angle
    warp = 0.6 * tex["warp"]
    trunks = _rise(_wave(9.0 * theta + 5.0 * r + warp) - 0.5, 0.5)
    branches = _rise(_wave(17.0 * theta - 7.0 * r - warp) - 0.6, 0.4) * _rise(r - 0.07, 0.08)
    envelope = 1.0 / (1.0 + r * r * (1.0 / 0.1**2))
    hilum = _biweight(r * r * (1.0 / 0.05**2))
    vessels = (0.3 * trunks + 0.2 * branches) * _rise(r - 0.025, 0.06) + 0.08
    markings = a.marking_strength * (vessels * envelope + 0.3 * hilum)
    markings = (markings + 0.03 * tex["parenchyma"]) * lung
    return _Canvas(res, edge, u, v, u < a.cx, d, shapes, heart, lung, air, markings)


def _study_canvas(c: _Canvas, b: int) -> _Canvas:
    """Study ``b`` of a batch canvas, with 2-D grids (u: (1, R), v: (R, 1))."""
    return _Canvas(c.res, c.edge, c.u[0], c.v[0], c.left_half[b], c.d[b], [x[b] for x in c.lung_shape],
                   c.heart[b], c.lung[b], c.air[b], c.markings[b])


def _soft_tissue_and_core(a: Anatomy, c: _Canvas, tex: dict[str, np.ndarray]) -> np.ndarray:
    """Attenuation of the body without bones: soft tissue, dense core (mediastinum, heart, abdomen), lungs."""
    u, v, e = c.u, c.v, c.edge
    dist = np.abs(u - a.cx)
    rise = np.clip((v - a.apex_y + a.shoulder_rise) / 0.1, 0.0, 1.0)
    body_half = a.neck_halfwidth + (a.body_halfwidth - a.neck_halfwidth) * rise * rise * (3 - 2 * rise)
    ratio = dist / body_half
    body = _ramp(body_half - dist, 2.5 * e) * (1.0 - 0.35 * ratio * ratio)
    attenuation = a.soft_density * body * (1.0 + 0.06 * tex["soft"])
    # Breast shadows (about half of the patients): soft-tissue density over the lower zones, densest
    # towards a sharp inferior margin.
    breast = 0.25 * np.clip(2.0 * a.breast - 1.0, 0.0, 1.0)
    for s in _PATIENT_SIDES:
        bx = a.cx + (-1.0 if s == 0 else 1.0) * (a.thorax[s] - 0.09)
        by = a.costophrenic_y - 0.13 + a.breast_drop
        q = np.sqrt(((u - bx) * (1.0 / (1.15 * a.breast_size))) ** 2 + ((v - by) * (1.0 / a.breast_size)) ** 2)
        lower = _rise(v - by + a.breast_size, a.breast_size)
        attenuation = attenuation + breast * _ramp(1.0 - q, 0.12) * lower * body
    # The dense core (mediastinum, heart, abdomen) follows the lateral lung borders; the chest wall
    # outside them is soft tissue and ribs only.
    below_apex = [_rise(v - a.apex[s] + 0.03, 0.02) for s in _PATIENT_SIDES]
    reach = [a.mediastinum_halfwidth + (_lung_extent(a, s, v)[1] - a.mediastinum_halfwidth) * below_apex[s]
             for s in _PATIENT_SIDES]
    core = np.where(c.left_half, _ramp(reach[0] - c.d, e), _ramp(reach[1] - c.d, e))
    core = core * _rise(v - a.apex_y + 0.1, 0.14)
    core = np.maximum(core, c.lung_shape[0] + c.lung_shape[1])  # the lungs always sit inside the core
    # The superior mediastinum is less dense than the heart; the lower abdomen holds some bowel gas.
    abdomen = _rise(v - a.costophrenic_y - 0.03, 0.15)
    core = core * (1.0 - 0.3 * _rise(a.hilum_y - v, 0.2) - abdomen * (0.12 + 0.06 * tex["abdomen"]))
    # (A lifted dome, ``dome_lift``, moves neither the heart's floor nor the gastric bubble.)
    resting = [_dome_y(a, s, c.d) + a.dome_lift[s] for s in _PATIENT_SIDES]
    above_dome = _ramp(np.where(c.left_half, resting[0], resting[1]) + 0.01 - v, e)
    attenuation = attenuation + a.core_density * core + 0.08 * c.heart * above_dome
    return attenuation - c.air + c.markings


def _bones(a: Anatomy, c: _Canvas) -> np.ndarray:
    """Attenuation of spine, posterior and anterior ribs, clavicles; minus trachea and gastric air."""
    u, v, d, e = c.u, c.v, c.d, c.edge
    top = a.apex_y
    # Spine with darker disc spaces, and the air column of the trachea down to the carina; both shift
    # with ``rotation``, and ``scoliosis`` bows the spine (most at mid height).
    height = np.clip((v - top) * (1.0 / (a.costophrenic_y - top)), 0.0, 1.0)
    axis = a.cx + a.rotation
    dist = np.abs(u - axis - a.scoliosis * (4.0 * height * (1.0 - height)))
    disc = np.abs(((v - top) / 0.042) % 1.0 - 0.5)
    spine_col = 1.0 - 0.4 * _ramp(0.1 - disc, 0.08)
    bones = 0.4 * _ramp(0.033 - dist, 2 * e) * spine_col
    trachea = _ramp(0.014 - np.abs(u - axis - 0.004), 2 * e) * _ramp(top + a.carina_drop - v, 0.02)
    bones = bones - 0.45 * trachea
    # Posterior ribs: arcs rising from the spine, curving down to the lateral wall; lower ribs wider apart.
    tw_row = np.where(c.left_half, a.thorax[0], a.thorax[1])
    phase_row = np.where(c.left_half, a.rib_phase_right, a.rib_phase_left)
    span = a.costophrenic_y - top
    spacing = span / a.ribs_above_dome * (0.8 + 0.4 * np.clip((v - top) / span, 0.0, 1.3))
    arc = a.rib_curvature * ((d - 0.1) ** 2 - 0.01)
    phase = (v - top + 0.03 - arc) / spacing + phase_row
    frac = phase - np.floor(phase)
    rib = np.maximum(frac * (0.45 - frac), 0.0) * (1.0 / 0.05)
    walls = [_lung_extent(a, s, v)[1] for s in _PATIENT_SIDES]
    lateral = np.where(c.left_half, walls[0], walls[1])
    cage = (0.4 + 0.6 * _ramp(lateral - d, 0.03)) * _ramp(tw_row + 0.02 - d, 2 * e) * _rise(d - 0.03, 0.04)
    rows = _rise(v - top + 0.06, 0.03) * _rise(a.costophrenic_y + 0.12 - v, 0.08)
    bones = bones + a.rib_density * rib * cage * rows
    # Anterior ribs: fainter, sloping down towards the midline.
    phase_a = (v - top + 0.6 * (tw_row - d)) / (1.3 * spacing) + 0.5 * phase_row
    frac_a = phase_a - np.floor(phase_a)
    rib_a = np.maximum(frac_a * (0.35 - frac_a), 0.0) * (1.0 / 0.03)
    bones = bones + 0.45 * a.rib_density * rib_a * cage * _rise(d - 0.09, 0.05) * rows
    # Clavicles: S-shaped bars rising laterally from the sternal notch, thicker at the medial head.
    dc = d - 0.035
    clav_y = top + a.clavicle_drop - 0.22 * dc + 0.3 * dc * dc
    thick = 0.011 + 0.007 * _f64(np.exp, -dc / 0.04)
    clavicle = _ramp(thick - np.abs(v - clav_y), 1.5 * e) * _ramp(dc, 2 * e) * _ramp(0.33 - d, 0.03)
    bones = bones + 0.42 * clavicle
    # Gas in the stomach under the left dome (in about two thirds of patients).
    gd = 0.45 * a.thorax[1]
    gx, gy = a.cx + gd, _dome_y(a, 1, gd) + a.dome_lift[1] + 0.05
    q = ((u - gx) * (1.0 / 0.055)) ** 2 + ((v - gy) * (1.0 / 0.03)) ** 2
    under_dome = _rise(v - _dome_y(a, 1, u - a.cx) - 0.012, 0.01)
    bubble = 0.9 * np.maximum(a.gastric_bubble - 0.3, 0.0)
    return bones - bubble * _biweight(q) * under_dome


def _box_from_weight(weight: np.ndarray, factor: int, fallback: tuple[float, float], size: int) -> Box:
    """Bounding box (output pixels) of ``weight > _FOOTPRINT_WEIGHT`` at the render resolution."""
    mask = weight > _FOOTPRINT_WEIGHT
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        x = min(max(int(fallback[0] * size), 0), size - 1)
        y = min(max(int(fallback[1] * size), 0), size - 1)
        return Box(float(x), float(y), 1.0, 1.0)
    y0, y1 = rows[0] // factor, -(-(rows[-1] + 1) // factor)
    x0, x1 = cols[0] // factor, -(-(cols[-1] + 1) // factor)
    return Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def _pneumothorax(spec: FindingSpec, a: Anatomy, c: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation change (negative) and footprint weight of a pneumothorax (``_draft_pneumothorax``)."""
    g = spec.geometry
    side = SIDES.index(spec.side)
    u, v, e = c.u, c.v, c.edge
    ds = _side_rows(a, u, side)
    top, height = a.apex[side], a.costophrenic[side] - a.apex[side]
    medial, lateral = _lung_extent(a, side, v)
    t = (v - top) * (1.0 / height)
    rim = g["depth"] * np.clip(1.0 - np.abs(t - g["centre"]) * (1.0 / g["half"]), 0.0, 1.0)
    top_gap = g.get("top_gap", 0.0)
    tw = a.thorax[side]
    base_gap = g.get("base_gap", 0.0) * np.clip((ds - 0.45 * tw) * (1.0 / (0.55 * tw)), 0.0, 1.0)
    wall, apex = _ramp(lateral - rim - ds, e), _ramp(v - top - top_gap, e)
    floor = _ramp(_dome_y(a, side, ds) - base_gap - v, e)
    inner = _ramp(ds - medial, e) * (1.0 - c.heart)
    lung = c.lung_shape[side] * (1.0 - c.heart)
    gap = np.maximum(lung - wall * apex * floor * inner, 0.0)
    # The visceral pleural line: the edges of the collapsed lung that lie inside the thorax (none where
    # the lung still touches the wall, the apex or the dome).
    tent = lambda x: 1.0 - np.abs(2.0 * x - 1.0)  # noqa: E731
    line = tent(wall) * _rise(rim - e, e) * apex * floor
    if top_gap > 0.0:
        line = line + tent(apex) * wall * floor
    if g.get("base_gap", 0.0) > 0.0:
        line = line + tent(floor) * _rise(base_gap - e, e) * wall * apex
    line = np.minimum(line, 1.0) * inner * np.clip(2.0 * lung - 1.0, 0.0, 1.0)
    weight = g["strength"] * gap
    change = -weight * (c.markings + 0.15 * a.air_density) + 0.35 * line
    return change, np.maximum(weight, line)


def _lung_of(spec: FindingSpec, a: Anatomy, c: _Canvas, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where a finding of lung ``side`` can be drawn, and the air it replaces there. Findings behind the
    heart (``behind_heart``) fill the lung under the cardiac shadow too, which holds less air in view."""
    if not spec.geometry.get("behind_heart"):
        return c.lung, c.air
    shape = c.lung_shape[side]
    return shape, c.air + 0.7 * a.air_density * shape * c.heart


def _effusion(spec: FindingSpec, a: Anatomy, c: _Canvas) -> list[np.ndarray]:
    """Fluid fraction of each box: basal fluid under a meniscus rising laterally (per side when
    bilateral), or a lenticular loculated collection along the lateral chest wall or in the minor fissure."""
    g = spec.geometry
    v = c.v
    if spec.pattern == "fissural":
        ds = _side_rows(a, c.u, 0)
        dv = v - _zone_y(a, 0, g["t"])
        q = ((ds - g["d"]) * (1.0 / g["half_width"])) ** 2 + (dv * (1.0 / g["half_height"])) ** 2
        return [g["strength"] * _ramp(1.0 - q, 0.3) * c.lung]
    if spec.pattern == "loculated":
        side = SIDES.index(spec.side)
        ds = _side_rows(a, c.u, side)
        centre = _zone_y(a, side, g["centre"])
        lens = np.sqrt(np.maximum(1.0 - ((v - centre) * (1.0 / g["half"])) ** 2, 0.0))
        lateral = _lung_extent(a, side, v)[1]
        fluid = _ramp(ds - lateral + g["thickness"] * lens, 1.5 * c.edge) * (lens > 0)
        return [g["strength"] * fluid * c.lung_shape[side] * (1.0 - c.heart)]
    sides = _PATIENT_SIDES if spec.side == "bilateral" else (SIDES.index(spec.side),)
    weights = []
    for side in sides:
        ds = _side_rows(a, c.u, side)
        level = _zone_y(a, side, g["level"] if "level" in g else g[f"level_{SIDES[side]}"])
        tw = a.thorax[side]
        rise_to_wall = np.clip((tw - ds) / (tw - a.mediastinum_halfwidth), 0.0, 1.0)
        fluid = _rise(v - level - g["meniscus"] * rise_to_wall * rise_to_wall, g["fade"])
        weights.append(g["strength"] * fluid * c.lung_shape[side] * (1.0 - c.heart))
    return weights


def _consolidation(spec: FindingSpec, a: Anatomy, c: _Canvas) -> tuple[np.ndarray, list[np.ndarray]]:
    """Dense lobar or segmental opacity with an irregular fissural border and air bronchograms."""
    g = spec.geometry
    side = SIDES.index(spec.side)
    u, v = c.u, c.v
    rng = np.random.default_rng(spec.texture_seed)
    ds = _side_rows(a, u, side)
    top, bottom = _zone_y(a, side, g["top"]), _zone_y(a, side, g["bottom"])
    tw = a.thorax[side]
    border = 0.02 * _smooth_noise(rng, c.res, 6) + g["tilt"] * (ds - 0.5 * tw)
    region = _ramp(v - top - border, 0.025) * _ramp(bottom - v + border, 0.012)
    if g["bottom"] >= 1.0:  # lower lobe: the dome and the costophrenic angle stay visible
        region = region * _ramp(_dome_y(a, side, ds) - 0.015 - v, 0.01) * _ramp(0.9 * tw - ds, 0.03)
    if "reach" in g:  # the lingula / the lower lobe behind the heart: medial, up to the heart border
        heart = _heart_borders(a, a.heart_ctr, v)[1]
        region = region * _ramp(np.maximum(heart, _mediastinal_border(a, side, v)) + g["reach"] - ds, 0.03)
    region = region * (ds > 0)
    lung, air = _lung_of(spec, a, c, side)
    weight = g["strength"] * region * lung
    # Air bronchograms: dark tubes radiating from the hilum through the airless lobe.
    dd, dv = ds - a.hilum_offset, v - a.hilum_y
    r = np.sqrt(dd * dd + dv * dv)
    theta = _f64(np.arctan2, dv, dd)
    wiggle = 0.25 * _smooth_noise(rng, c.res, 5)
    tubes = _rise(_wave(10.0 * theta + wiggle) - 0.7, 0.3)
    forks = _rise(_wave(20.0 * theta + 2.0 * wiggle + 1.0) - 0.75, 0.25) * _rise(r - 0.14, 0.04)
    bronchi = np.maximum(tubes, forks) * _rise(r - 0.04, 0.04)
    return weight * (air + 0.1 - 0.55 * bronchi), [weight]


def _collapse(spec: FindingSpec, a: Anatomy, c: _Canvas) -> list[np.ndarray]:
    """A collapsed lobe: a dense wedge along the mediastinum, widening down to the (lifted) dome for a
    lower lobe (behind the heart on the left: a retrocardiac opacity), up to the apex for an upper lobe."""
    g = spec.geometry
    side = SIDES.index(spec.side)
    v = c.v
    ds = _side_rows(a, c.u, side)
    border = _mediastinal_border(a, side, v)
    if g.get("upper_lobe"):
        top, bottom = a.apex[side], _zone_y(a, side, g["bottom"])
        shrink = np.clip((v - top) * (1.0 / (bottom - top)), 0.0, 1.0)
        wedge = _ramp(bottom - v, 0.02) * _ramp(border + g["width"] * (1.0 - shrink * shrink) - ds, 0.025)
    else:
        top = _zone_y(a, side, g["top"])
        grow = np.clip((v - top) * (1.0 / max(a.costophrenic[side] - top, 1e-3)), 0.0, 1.0)
        wedge = _ramp(v - top, 0.03) * _ramp(border + g["width"] * grow - ds, 0.03)
    return [g["strength"] * wedge * (ds > 0) * c.lung_shape[side]]


def _edema(spec: FindingSpec, a: Anatomy, c: _Canvas) -> list[np.ndarray]:
    """Mottled haze per lung (perihilar, bibasilar or diffuse) with interstitial (Kerley B) lines: short
    horizontal septal lines at the lateral lung bases. One weight per lung."""
    g = spec.geometry
    u, v = c.u, c.v
    rng = np.random.default_rng(spec.texture_seed)
    mottle = np.clip(0.65 + 0.35 * _smooth_noise(rng, c.res, 30), 0.0, 1.0)
    weights = []
    for sd in _PATIENT_SIDES:
        dsd = _side_rows(a, u, sd)
        q = ((dsd - g["d"]) * (1.0 / g["rx"])) ** 2 + ((v - _zone_y(a, sd, g["t"])) * (1.0 / g["ry"])) ** 2
        haze = g["strength"] * np.sqrt(_biweight(q)) * mottle
        lateral = _lung_extent(a, sd, v)[1]
        septa = _rise(_wave((2.0 * np.pi / 0.03) * v + 2.0 * np.pi * g["line_phase"]) - 0.6, 0.3)
        septa = septa * _rise(_smooth_noise(rng, c.res, 12), 0.8)  # lines come and go
        near_wall = _ramp(0.03 - (lateral - dsd), 0.015) * _rise(v - _zone_y(a, sd, 0.6), 0.08)
        lines = 0.3 * g["septal_lines"] * septa * near_wall
        weights.append(np.maximum(haze, lines) * c.lung * (dsd > 0))
    return weights


def _focal(spec: FindingSpec, a: Anatomy, c: _Canvas) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Weights, replaced air and extra density of the point-like findings: a plate-like band, a
    patchy pneumonia cloud, a hazy or a rounded opacity."""
    g = spec.geometry
    side = SIDES.index(spec.side)
    u, v, e = c.u, c.v, c.edge
    x = _x_of(a, side, g["d"])
    lung, air = _lung_of(spec, a, c, side)
    if spec.label == "Atelectasis":
        cos_, sin_ = np.cos(g["angle"]), np.sin(g["angle"])
        along = (u - x) * cos_ + (v - g["y"]) * sin_
        across = (v - g["y"]) * cos_ - (u - x) * sin_
        taper = np.maximum(1.0 - (along * (2.0 / g["length"])) ** 2, 0.0)
        return [g["strength"] * _ramp(g["thickness"] - np.abs(across), e) * taper * lung], air, 0.15
    if spec.label == "Lung Opacity" and not g.get("hazy"):
        dist = np.sqrt((u - x) ** 2 + (v - g["y"]) ** 2)
        rad = g["radius"]
        return [g["strength"] * _ramp(rad - dist, 0.35 * rad) * lung], air, 0.1
    cloud = np.sqrt(_biweight(((u - x) * (1.0 / g["rx"])) ** 2 + ((v - g["y"]) * (1.0 / g["ry"])) ** 2))
    if spec.label == "Pneumonia":
        rng = np.random.default_rng(spec.texture_seed)
        patches = _rise(_smooth_noise(rng, c.res, 20) + g["patchiness"], 1.2)
        return [g["strength"] * cloud * (0.4 + 0.6 * patches) * lung], air, 0.0
    return [g["strength"] * cloud * lung], air, 0.05


def _opacity(spec: FindingSpec, a: Anatomy, c: _Canvas) -> tuple[np.ndarray, list[np.ndarray]]:
    """Attenuation added by an opacifying finding, and the footprint weight of each of its boxes.

    The weight is the fraction of the local air replaced by fluid or tissue (times the lung mask).
    """
    label, air, extra = spec.label, c.air, 0.0
    if label == "Pleural Effusion":
        weights, extra = _effusion(spec, a, c), 0.25
    elif label == "Consolidation":
        return _consolidation(spec, a, c)
    elif label == "Atelectasis" and spec.pattern in ("lower lobe", "upper lobe"):
        weights = _collapse(spec, a, c)
        return weights[0] * (0.8 * a.air_density + 0.3), weights
    elif label == "Edema":
        weights = _edema(spec, a, c)
    elif label in ("Atelectasis", "Pneumonia", "Lung Opacity"):
        weights, air, extra = _focal(spec, a, c)
    else:  # pragma: no cover - every drawable label is handled above
        raise DataError(f"finding label must be one of {FINDING_CLASSES}, but got {label!r}")
    total = weights[0] if len(weights) == 1 else weights[0] + weights[1]
    return total * (air + extra), weights


def _tube(c: _Canvas, start: tuple[float, float], tip: tuple[float, float], half_width: float) -> np.ndarray:
    """A line from ``start`` curving down to ``tip`` (x quadratic in y, vertical at the tip), 0..1."""
    u, v, e = c.u, c.v, c.edge
    (x0, y0), (xt, yt) = start, tip
    t = np.clip((v - y0) * (1.0 / (yt - y0)), 0.0, 1.0)
    x = xt + (x0 - xt) * (1.0 - t) ** 2
    slope = -2.0 * (x0 - xt) * (1.0 - t) * (1.0 / (yt - y0))
    dist = np.abs(u - x) / np.sqrt(1.0 + slope * slope)
    return _ramp(half_width - dist, e) * _ramp(v - y0, e) * _ramp(yt - v, e)


def _disc(c: _Canvas, x: float, y: float, rx: float, ry: float) -> np.ndarray:
    """A filled ellipse with a one-pixel soft edge, 0..1."""
    q = np.sqrt(((c.u - x) * (1.0 / rx)) ** 2 + ((c.v - y) * (1.0 / ry)) ** 2)
    return _ramp(1.0 - q, c.edge / min(rx, ry))


def _ecg_leads(g: dict[str, float], a: Anatomy, c: _Canvas) -> np.ndarray:
    out = np.zeros((c.res, c.res), dtype=np.float32)
    for i in range(int(g["count"])):
        dist = np.sqrt((c.u - g[f"x{i}"]) ** 2 + (c.v - g[f"y{i}"]) ** 2)
        out = out + 0.5 * _ramp(0.014 - dist, c.edge) + 0.4 * _ramp(0.005 - dist, c.edge)
    return out


def _central_line(g: dict[str, float], a: Anatomy, c: _Canvas) -> np.ndarray:
    """From the right internal jugular / subclavian region down to the superior vena cava."""
    return 0.45 * _tube(c, (a.cx - g["entry_d"], g["entry_y"]), (a.cx - 0.03, g["tip_y"]), 0.004)


def _endotracheal_tube(g: dict[str, float], a: Anatomy, c: _Canvas) -> np.ndarray:
    """Two walls along the trachea ending above the carina."""
    walls = _ramp(0.003 - np.abs(np.abs(c.u - a.cx - a.rotation - 0.004) - 0.008), c.edge)
    return 0.3 * walls * _ramp(g["tip_y"] - c.v, c.edge)


def _pacemaker(g: dict[str, float], a: Anatomy, c: _Canvas) -> np.ndarray:
    """A generator over the upper chest (``x``, ``y``) with leads to the right atrium and ventricle."""
    can = _disc(c, g["x"], g["y"], 0.035, 0.025)
    atrium = _tube(c, (g["x"], g["y"]), (a.cx - 0.035, a.hilum_y + g["atrial_drop"]), 0.003)
    ventricle = _tube(c, (g["x"], g["y"]), (a.cx + g["ventricle_d"], a.hilum_y + g["ventricle_drop"]), 0.003)
    return 0.9 * can + 0.5 * np.maximum(atrium, ventricle)


def _port(g: dict[str, float], a: Anatomy, c: _Canvas) -> np.ndarray:
    """A chest port: a round reservoir with a brighter rim and a catheter to the superior vena cava."""
    rim = _disc(c, g["x"], g["y"], g["radius"], g["radius"])
    chamber = _disc(c, g["x"], g["y"], 0.6 * g["radius"], 0.6 * g["radius"])
    catheter = _tube(c, (g["x"], g["y"]), (a.cx - 0.03, g["tip_y"]), 0.003)
    return 0.8 * rim - 0.3 * chamber + 0.35 * catheter


def _sternotomy(g: dict[str, float], a: Anatomy, c: _Canvas) -> np.ndarray:
    """Median sternotomy wires: small twisted loops in a column over the sternum."""
    out = np.zeros((c.res, c.res), dtype=np.float32)
    count = int(g["count"])
    for i in range(count):
        y = g["top"] + (g["bottom"] - g["top"]) * i / (count - 1)
        x = a.cx + g["offset"] + 0.004 * (i % 2)
        q = np.sqrt(((c.u - x) * (1.0 / 0.018)) ** 2 + ((c.v - y) * (1.0 / 0.008)) ** 2)
        loop = _ramp(0.35 - np.abs(q - 1.0), 2.5 * c.edge / 0.018)
        twist = _ramp(0.003 - np.abs(c.u - x), c.edge) * _ramp(0.013 - np.abs(c.v - y + 0.009), c.edge)
        out = out + np.maximum(loop, twist)
    return 1.6 * out


#: Device kind -> its drawing (attenuation of metal and radio-opaque plastic, so bright).
_DEVICE_DRAWINGS: dict[str, Callable[[dict[str, float], Anatomy, _Canvas], np.ndarray]] = {
    "ecg_leads": _ecg_leads, "central_line": _central_line, "endotracheal_tube": _endotracheal_tube,
    "pacemaker": _pacemaker, "port": _port, "sternotomy": _sternotomy,
}


def _device(device: DeviceSpec, a: Anatomy, c: _Canvas) -> np.ndarray:
    """Attenuation of one support device."""
    return _DEVICE_DRAWINGS[device.kind](device.geometry, a, c)


def _granuloma(lesion: LesionSpec, a: Anatomy, c: _Canvas) -> np.ndarray:
    """A calcified granuloma: a tiny, very dense, sharply marginated dot."""
    g = lesion.geometry
    x = _x_of(a, SIDES.index(lesion.side), g["d"])
    return 0.9 * _disc(c, x, g["y"], g["radius"], g["radius"])


def _bulla(lesion: LesionSpec, a: Anatomy, c: _Canvas) -> np.ndarray:
    """A bulla: a round lucency without vessel markings inside a thin bright wall."""
    g = lesion.geometry
    x = _x_of(a, SIDES.index(lesion.side), g["d"])
    dist = np.sqrt((c.u - x) ** 2 + (c.v - g["y"]) ** 2)
    inside = _ramp(g["radius"] - dist, c.edge)
    wall = _ramp(0.0035 - np.abs(dist - g["radius"]), c.edge)
    return -inside * (c.markings + 0.12 * a.air_density * c.lung) + 0.3 * wall * c.lung


def _scarring(lesion: LesionSpec, a: Anatomy, c: _Canvas) -> np.ndarray:
    """Apical scarring: a few thin strands fanning down from each apex named (``sides``)."""
    g = lesion.geometry
    out = np.zeros((c.res, c.res), dtype=np.float32)
    for side in (_PATIENT_SIDES if lesion.side == "bilateral" else (SIDES.index(lesion.side),)):
        ds = _side_rows(a, c.u, side)
        x0, y0 = a.apex_offset[side] + 0.01, a.apex[side] + 0.015
        for k in range(int(g["count"])):
            angle = g["spread"] * (k / max(g["count"] - 1.0, 1.0) - 0.5) + g["tilt"]
            along = (ds - x0) * np.sin(angle) + (c.v - y0) * np.cos(angle)
            across = (ds - x0) * np.cos(angle) - (c.v - y0) * np.sin(angle)
            strand = _ramp(0.0035 - np.abs(across), c.edge) * _ramp(along, c.edge)
            strand = strand * _ramp(g["length"] - along, 0.02)
            out = np.maximum(out, strand * c.lung_shape[side])
    return 0.4 * out


def _rib_fracture(lesion: LesionSpec, a: Anatomy, c: _Canvas) -> np.ndarray:
    """A healed rib fracture: a fusiform callus on a rib at the lateral chest wall."""
    g = lesion.geometry
    side = SIDES.index(lesion.side)
    lateral = float(_lung_extent(a, side, np.array([g["y"]]))[1][0])
    x = _x_of(a, side, lateral - g["inset"])
    return 0.3 * _disc(c, x, g["y"], 0.016, 0.009)


#: Incidental lesion kind (synthcxr-base) -> its drawing.
_LESION_DRAWINGS: dict[str, Callable[[LesionSpec, Anatomy, _Canvas], np.ndarray]] = {
    "granuloma": _granuloma, "bulla": _bulla, "scarring": _scarring, "rib_fracture": _rib_fracture,
}


def _draw_findings(spec: StudySpec, drawn: list[FindingSpec], c: _Canvas, attenuation: np.ndarray,
                   factor: int, size: int, a: Anatomy) -> dict[int, tuple[Box, ...]]:
    """Add the drawn findings of one study (anatomy ``a`` as drawn) to its ``attenuation`` (in place);
    returns their boxes by ``id()`` of the finding (a class may be drawn in both lungs)."""
    boxes: dict[int, tuple[Box, ...]] = {}
    for f in drawn:
        if f.label == "Cardiomegaly":
            dome_row = np.where(c.left_half, _dome_y(a, 0, c.d), _dome_y(a, 1, c.d))
            visible = c.heart * _ramp(dome_row + 0.01 - c.v, c.edge)
            boxes[id(f)] = (_box_from_weight(visible, factor, (a.cx, a.costophrenic_y - 0.1), size),)
        elif f.label == "Pneumothorax":
            change, weight = _pneumothorax(f, a, c)
            attenuation += change
            fallback = (_x_of(a, SIDES.index(f.side), 0.2), a.apex_y + 0.05)
            boxes[id(f)] = (_box_from_weight(weight, factor, fallback, size),)
        else:
            change, weights = _opacity(f, a, c)
            attenuation += change
            if f.anatomy:  # volume loss: the band the lifted dome moved through belongs to the finding too
                side = SIDES.index(f.side)
                ds = _side_rows(a, c.u, side)
                band = _ramp(_dome_y(spec.anatomy, side, ds) - c.v, c.edge) - _ramp(_dome_y(a, side, ds) - c.v, c.edge)
                band = band * _lung_fields(spec.anatomy, side, c.u, c.v, c.edge)[0]
                weights = [np.maximum(weights[0], band)] + list(weights[1:])
            boxes[id(f)] = tuple(_box_from_weight(w, factor, (a.cx, 0.5), size) for w in weights)
    return boxes


def _oversampling(size: int) -> int:
    """Render small images at twice the size and box-downsample, so thin structures keep their weight."""
    return 2 if size <= 32 else 1


def _drawn_anatomy(spec: StudySpec, drawn: list[FindingSpec]) -> Anatomy:
    """The patient's anatomy with the changes of the findings that are drawn (e.g. a lifted dome)."""
    changes = [f.anatomy for f in drawn if f.anatomy]
    if not changes:
        return spec.anatomy
    values = dict(spec.anatomy.values)
    for change in changes:
        for key, delta in change.items():
            values[key] = values[key] + delta
    return Anatomy(values)


def render_studies(specs: list[StudySpec], size: int, labels: Collection[str] | None = None
                   ) -> list[tuple[np.ndarray, list[tuple[Box, ...]]]]:
    """Render several studies at ``size`` x ``size`` in one vectorized pass; see ``render_study``.

    Every operation is elementwise per study (noise fields are made per study), so a study renders
    to the same bits whatever else is in the batch.
    """
    if not specs:
        return []
    factor = _oversampling(size)
    res = size * factor
    drawn = [[f for f in s.findings if labels is None or f.label in labels] for s in specs]
    ctr = np.array([
        next((f.geometry["ctr"] for f in fs if f.label == "Cardiomegaly"), s.anatomy.heart_ctr)
        for s, fs in zip(specs, drawn)
    ], dtype=np.float32).reshape(-1, 1, 1)
    anatomies = [_drawn_anatomy(s, fs) for s, fs in zip(specs, drawn)]
    a = Anatomy.stack(anatomies)
    tex = _textures(specs, res, size)
    c = _canvas(a, res, ctr, tex)
    attenuation = _soft_tissue_and_core(a, c, tex)
    boxes = [_draw_findings(s, fs, _study_canvas(c, b), attenuation[b], factor, size, anatomies[b]) if fs else {}
             for b, (s, fs) in enumerate(zip(specs, drawn))]
    attenuation = attenuation + _bones(a, c)
    for b, s in enumerate(specs):
        if s.devices or s.lesions:
            study = _study_canvas(c, b)
            for device in s.devices:
                attenuation[b] += _device(device, anatomies[b], study)
            for lesion in s.lesions:
                attenuation[b] += _LESION_DRAWINGS[lesion.kind](lesion, anatomies[b], study)
    image = 1.0 - np.exp(-a.exposure * np.maximum(attenuation, 0.0).astype(np.float64))
    image = np.clip((image - a.black) * (1.0 / (a.white - a.black)), 0.0, 1.0) ** a.gamma
    if factor == 2:
        top_pair = image[:, 0::2, 0::2] + image[:, 1::2, 0::2]
        image = 0.25 * (top_pair + (image[:, 0::2, 1::2] + image[:, 1::2, 1::2]))
    image = np.clip(image + a.noise_sigma * tex["noise"], 0.0, 1.0).astype(np.float32)
    return [(image[b], [boxes[b].get(id(f), ()) for f in s.findings]) for b, s in enumerate(specs)]


def render_study(spec: StudySpec, size: int, labels: Collection[str] | None = None
                 ) -> tuple[np.ndarray, list[tuple[Box, ...]]]:
    """Render ``spec`` at ``size`` x ``size``: the image in [0, 1] (float32) and each finding's boxes.

    ``labels`` restricts which of the study's findings are drawn (None: all). The patient, its
    textures and its noise are identical whatever is drawn, so the difference between two renders
    of one study is exactly the drawing of the findings that differ. Boxes of findings not drawn are
    empty.
    """
    return render_studies([spec], size, labels)[0]


# --------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------


def check_dataset_sizes(owner: str, n_train: object, n_test: object, image_size: object, seed: object) -> None:
    """Raise ``DataError`` naming ``owner`` unless the split sizes and seed are integers >= 0 and the
    image size an integer >= 16."""
    checks = (("n_train", n_train, 0), ("n_test", n_test, 0), ("image_size", image_size, 16), ("seed", seed, 0))
    for arg, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{owner} {arg} must be an integer >= {low}, but got {value!r}")


class StudySplits:
    """What the SynthCXR datasets share: ``n_train`` and ``n_test`` studies, study ``index`` of a split drawn
    from ``(seed, split, index)``, rendered once per split. A subclass gives its constructor arguments
    (``params``), the specification of a study (``spec``) and the samples of a split's specifications
    (``_samples``)."""

    n_train: int
    n_test: int
    _cache: dict[str, list[Sample]]

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def spec(self, split: str, index: int) -> StudySpec:
        raise NotImplementedError

    def _samples(self, split: str, specs: list[StudySpec]) -> list[Sample]:
        raise NotImplementedError

    def split(self, split: str) -> list[Sample]:
        """All samples of ``split`` ("train" or "test"), in index order; generated once and cached."""
        n = self._size_of(split)
        if split not in self._cache:
            self._cache[split] = self._samples(split, [self.spec(split, i) for i in range(n)])
        return self._cache[split]

    def _digest(self, header: str) -> str:
        """SHA-256 of ``header`` and both splits: ids, reports, findings (label, phrase, boxes) and images
        quantized to uint8."""
        digest = hashlib.sha256(header.encode())
        for split in SPLITS:
            for sample in self.split(split):
                digest.update(sample.id.encode())
                digest.update(sample.report.encode())
                for f in sample.findings:
                    digest.update(f"{f.label}|{f.phrase}|{[b.to_list() for b in f.boxes]}".encode())
                digest.update(np.rint(sample.image * 255.0).astype(np.uint8).tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{type(self).__name__}({arguments})"

    def _size_of(self, split: str) -> int:
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, but got {split!r}")
        return self.n_train if split == "train" else self.n_test

    def _check_index(self, split: str, index: int) -> None:
        n = self._size_of(split)
        if not 0 <= index < n:
            raise DataError(f"index must be in [0, {n}) for split {split!r}, but got {index!r}")


class SynthCXR(StudySplits):
    """SynthCXR v3: rendered PA chest radiographs, reports and boxes, deterministic from ``seed``.

    Args:
        n_train: number of training studies.
        n_test: number of test studies.
        image_size: side of the square images in pixels (16 or more; 32, 64, 128, 256 are typical).
        seed: dataset seed; study ``i`` of a split depends only on ``(seed, split, i)``.
        support_devices: draw support devices (ECG leads, central lines, endotracheal tubes) in the
            studies that have them; False gives the same studies without devices.

    Raises:
        DataError: for a negative size, an image size below 16 or a negative seed.

    Example:
        >>> ds = SynthCXR(n_train=4, n_test=2, image_size=32)
        >>> [s.id for s in ds.split("test")]
        ['synthcxr-test-000000', 'synthcxr-test-000001']
    """

    name = "synthcxr"
    version = "3"

    def __init__(self, n_train: int, n_test: int, image_size: int = 64, seed: int = 0,
                 support_devices: bool = True) -> None:
        check_dataset_sizes("SynthCXR", n_train, n_test, image_size, seed)
        self.n_train = int(n_train)
        self.n_test = int(n_test)
        self.image_size = int(image_size)
        self.seed = int(seed)
        if not isinstance(support_devices, bool):
            raise DataError(f"SynthCXR support_devices must be true or false, but got {support_devices!r}")
        self.support_devices = support_devices
        self._cache: dict[str, list[Sample]] = {}

    def params(self) -> dict[str, Any]:
        """The constructor arguments: ``SynthCXR(**ds.params())`` builds the same dataset."""
        return {"n_train": self.n_train, "n_test": self.n_test, "image_size": self.image_size,
                "seed": self.seed, "support_devices": self.support_devices}

    def spec(self, split: str, index: int) -> StudySpec:
        """The specification (anatomy, findings, report) of study ``index`` of ``split``."""
        self._check_index(split, index)
        return study_spec(self.seed, split, index, self.support_devices)

    def _samples(self, split: str, specs: list[StudySpec]) -> list[Sample]:
        chunk = max(1, _BATCH_PIXELS // (self.image_size * _oversampling(self.image_size)) ** 2)
        samples: list[Sample] = []
        for start in range(0, len(specs), chunk):
            batch = specs[start:start + chunk]
            for spec, (image, boxes) in zip(batch, render_studies(batch, self.image_size)):
                findings = tuple(Finding(f.label, f.phrase, b) for f, b in zip(spec.findings, boxes))
                samples.append(Sample(id=spec.id, image=image, report=spec.report, split=split,
                                      findings=findings))
        return samples

    def render(self, split: str, index: int, labels: Collection[str] | None = None) -> np.ndarray:
        """Study ``index`` drawn with only the findings in ``labels`` (None: all; (): the normal patient)."""
        image, _ = render_study(self.spec(split, index), self.image_size, labels)
        return image

    def fingerprint(self) -> str:
        """SHA-256 over both splits: ids, reports, labels, phrases, boxes and images quantized to uint8."""
        return self._digest(f"synthcxr-v{self.version}|{self.image_size}|{self.support_devices}")


__all__ = ["SynthCXR", "StudySplits", "StudySpec", "FindingSpec", "DeviceSpec", "DEVICE_KINDS", "PATTERNS", "Anatomy",
           "render_study", "render_studies", "study_spec", "SPLITS", "ZONES", "SIDES", "SEVERITIES"]
