"""SynthCXR-OpenI: SynthCXR patients drawn to match real Open-i (Indiana University) reports.

The reports are the 3,955 Open-i chest X-ray reports that the ``torchxrayvision`` package ships as
``data/NLMCXR_reports.tgz`` (one XML file per report: FINDINGS and IMPRESSION sections and the manual
MeSH tags, e.g. ``Pleural Effusion/right/small``). The archive is read in place; torchxrayvision is
never imported. Every usable report becomes a study: a SynthCXR patient with one finding drawn per
tagged site (side, zone, severity from the tag's qualifiers), the cleaned IMPRESSION as the report,
and, for each finding, the report sentence that states it as its phrase.

Pipeline (docs/data_openi.md has the tables and the measured counts):

1. ``load_reports``: read the archive's members in order (tarfile), parse each XML (xml.etree) into an
   ``OpenIReport``; about a second, once per process.
2. ``map_mesh_tag`` / ``tag_role``: a MeSH tag is a finding of one of the eight classes (with side,
   zone and severity from its qualifiers), ``normal``, a tag that only supports a finding of the
   report (``Costophrenic Angle/blunted`` with an effusion), an incidental tag that SynthCXR does not
   draw and that is not a lung, pleural or cardiac abnormality (spine, aorta, devices, lung volumes,
   calcified granulomas), or another tag; a report with another tag, or a supporting tag without its
   finding, is left out.
3. ``usable_study``: the report's sentences (XXXX de-identification tokens removed), the stating
   sentence of every finding (a sentence with a query word of the class, not negated), and the prompt:
   the IMPRESSION sentences in order within ``MAX_PROMPT_WORDS`` (stating sentences always kept),
   plus the FINDINGS sentence of a finding the IMPRESSION does not state. A report is left out when a
   finding has no stating sentence, when its prompt states a finding it is not tagged with, or when the
   prompt would exceed ``MAX_PROMPT_CHARS``.
4. ``OpenISynthCXR``: a fixed, stratified split of the usable reports into train and test pools, a
   seeded class-balanced order of each pool, and one rendered SynthCXR patient per study.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import re
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.data import synthcxr
from cxrbench.data.schema import ALL_LABELS, FINDING_CLASSES, NO_FINDING, QUERY_WORDS, Box, Finding, Sample
from cxrbench.data.synthcxr import (
    SIDES,
    SPLITS,
    FindingSpec,
    StudySpec,
    StudySplits,
    check_dataset_sizes,
    render_studies,
)
from cxrbench.errors import AssetUnavailable, DataError

ARCHIVE_NAME = "NLMCXR_reports.tgz"
INSTALL_HINT = "pip install torchxrayvision   (or: pip install 'cxrbench[xrv]')"
#: Prompt budget: sentences after the IMPRESSION's first ones are dropped past this many words ...
MAX_PROMPT_WORDS = 40
#: ... and a report whose stating sentences alone make a longer prompt than this is left out.
MAX_PROMPT_CHARS = 320

# --------------------------------------------------------------------------------------------------
# Reading the archive
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenIReport:
    """One Open-i report as stored: id (``CXR<n>``), raw FINDINGS and IMPRESSION text, MeSH tags.

    ``major`` are the manually assigned MeSH terms (``Head/qualifier/...``); ``automatic`` the terms
    the MeSH indexer found in the text (kept for reference; the mapping uses ``major`` only).
    """

    uid: str
    findings: str
    impression: str
    major: tuple[str, ...]
    automatic: tuple[str, ...] = ()


def archive_path() -> Path:
    """Path of ``NLMCXR_reports.tgz`` inside the installed torchxrayvision package (not imported).

    Raises:
        AssetUnavailable: torchxrayvision is not installed, or its copy lacks the archive.
    """
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise AssetUnavailable(
            f"the Open-i reports ({ARCHIVE_NAME}) come with the torchxrayvision package, which is not "
            f"installed; install it with: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / ARCHIVE_NAME
    if not path.is_file():
        raise AssetUnavailable(
            f"torchxrayvision is installed but {path} is missing; reinstall it with: {INSTALL_HINT}")
    return path


def _text(element: ET.Element | None) -> str:
    return "" if element is None or element.text is None else element.text


def _element(data: bytes, start: bytes, end: bytes) -> bytes | None:
    """The bytes of the first element that opens with ``start`` and closes with ``end`` (or self-closes)."""
    i = data.find(start)
    if i < 0:
        return None
    j = data.find(end, i)
    close = data.find(b"/>", i)
    if j < 0 or (0 <= close < data.find(b">", i) + 1 and close < j):
        return data[i:data.find(b">", i) + 1] if close >= 0 else None
    return data[i:j + len(end)]


def parse_report(data: bytes, name: str = "<report>") -> OpenIReport:
    """Parse one Open-i XML report (bytes of the file) into an ``OpenIReport``.

    Only the ``uId``, ``Abstract`` and ``MeSH`` elements are parsed (the image records that make up
    most of a file are skipped); a file where they cannot be cut out is parsed whole.

    Raises:
        DataError: the XML is malformed or has no ``uId``.
    """
    parts = [_element(data, b"<uId", b"</uId>"), _element(data, b"<Abstract>", b"</Abstract>"),
             _element(data, b"<MeSH>", b"</MeSH>")]
    root = None
    if all(p is not None for p in parts):
        try:
            root = ET.fromstring(b"<eCitation>" + b"".join(p for p in parts if p) + b"</eCitation>")
        except ET.ParseError:
            root = None
    if root is None:
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            raise DataError(f"{name}: malformed Open-i report XML ({exc})") from None
    uid_el = root.find("uId")
    if uid_el is None or not uid_el.get("id"):
        raise DataError(f"{name}: Open-i report without a <uId id=...> element")
    sections = {el.get("Label", ""): _text(el) for el in root.iter("AbstractText")}
    mesh = root.find("MeSH")
    major = tuple(_text(el).strip() for el in mesh.findall("major")) if mesh is not None else ()
    auto = tuple(_text(el).strip() for el in mesh.findall("automatic")) if mesh is not None else ()
    return OpenIReport(uid=uid_el.get("id", ""), findings=sections.get("FINDINGS", ""),
                       impression=sections.get("IMPRESSION", ""), major=tuple(t for t in major if t),
                       automatic=tuple(t for t in auto if t))


def read_reports(path: str | Path) -> tuple[OpenIReport, ...]:
    """All reports of an Open-i archive (``.tgz`` of XML files), ordered by report number.

    The archive (24 MB uncompressed) is decompressed in memory and its members read in order.
    """
    reports = []
    try:
        with open(path, "rb") as handle:
            data = gzip.decompress(handle.read())
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".xml"):
                    stream = archive.extractfile(member)
                    if stream is not None:
                        reports.append(parse_report(stream.read(), f"{path}:{member.name}"))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the Open-i archive ({exc})") from None
    return tuple(sorted(reports, key=lambda r: (len(r.uid), r.uid)))


@lru_cache(maxsize=4)
def _reports_at(path: str) -> tuple[OpenIReport, ...]:
    return read_reports(path)


def load_reports(path: str | Path | None = None) -> tuple[OpenIReport, ...]:
    """The Open-i reports of ``path`` (default: torchxrayvision's archive), parsed once per process."""
    return _reports_at(str(archive_path() if path is None else path))


# --------------------------------------------------------------------------------------------------
# MeSH tags -> benchmark findings
# --------------------------------------------------------------------------------------------------

#: MeSH heading -> benchmark class. ``Density`` counts only inside the lung (qualifier ``lung`` or
#: ``retrocardiac``), ``Cardiac Shadow`` only when ``enlarged``.
MESH_CLASSES: dict[str, str] = {
    "Pulmonary Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Cardiac Shadow": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Pulmonary Edema": "Edema",
    "Opacity": "Lung Opacity",
    "Airspace Disease": "Lung Opacity",
    "Infiltrate": "Lung Opacity",
    "Density": "Lung Opacity",
    "Pleural Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
_CONDITIONAL = {"Density": ("lung", "retrocardiac"), "Cardiac Shadow": ("enlarged",)}
#: Incidental headings that are incidental only with one of these qualifiers (``Lung/hypoinflation``
#: is; ``Lung/interstitial/prominent`` is not).
_INCIDENTAL_WITH = {"Lung": ("hypoinflation", "hyperdistention")}
#: Headings that describe a finding of the report without being one: allowed only with that finding.
MESH_SUPPORTING: dict[str, str] = {
    "Costophrenic Angle": "Pleural Effusion",
    "Pulmonary Congestion": "Edema",
    "Heart Failure": "Edema",
}
#: Headings SynthCXR does not draw that are no lung, pleural or cardiac abnormality: bones, vessels,
#: devices, lung volumes and diaphragm position, healed granulomas, image quality. A report with them
#: is kept; the image simply does not show them.
MESH_INCIDENTAL: frozenset[str] = frozenset({
    "Thoracic Vertebrae", "Thoracic vertebrae", "Lumbar Vertebrae", "Cervical Vertebrae", "Spine",
    "Osteophyte", "Spondylosis", "Scoliosis", "Kyphosis", "Deformity", "Fractures, Bone",
    "Bone Diseases, Metabolic", "Osteoporosis", "Arthritis", "Spinal Fusion", "Shoulder", "Humerus",
    "Ribs", "Bone and Bones", "Hyperostosis, Diffuse Idiopathic Skeletal", "Sclerosis", "Dislocations",
    "Aorta", "Aorta, Thoracic", "Atherosclerosis", "Calcinosis", "Calcified Granuloma",
    "Granulomatous Disease", "Catheters, Indwelling", "Implanted Medical Device", "Surgical Instruments",
    "Medical Device", "Tube, Inserted", "Stents", "Sutures", "Foreign Bodies", "Lung", "Diaphragm",
    "Diaphragmatic Eventration", "Hernia, Hiatal", "Emphysema", "Pulmonary Emphysema",
    "Pulmonary Disease, Chronic Obstructive", "Technical Quality of Image Unsatisfactory",
})
#: Tag qualifiers: side, zone and severity words.
_SIDE_QUALIFIERS = {"right": "right", "left": "left", "bilateral": "bilateral"}
_ZONE_QUALIFIERS = {
    "upper lobe": "upper", "apex": "upper", "middle lobe": "middle", "lingula": "middle", "hilum": "middle",
    "lower lobe": "lower", "base": "lower", "retrocardiac": "lower", "costophrenic angle": "lower",
}
#: The side a qualifier implies when no side is given (the lingula is left, the middle lobe right).
_ZONE_SIDES = {"lingula": "left", "middle lobe": "right", "retrocardiac": "left"}
SEVERITY_ORDER: tuple[str, ...] = ("small", "mild", "moderate", "large", "severe")
_SEVERITY_QUALIFIERS = {"small": "small", "mild": "mild", "borderline": "mild", "moderate": "moderate",
                        "large": "large", "severe": "severe"}
#: Classes drawn once (no side): the heart, and edema (always both lungs).
_UNSIDED = frozenset({"Cardiomegaly", "Edema"})


@dataclass(frozen=True)
class TagFinding:
    """What one MeSH tag states: class (or No Finding), side, zone and severity (None: not given)."""

    label: str
    side: str | None = None  # right | left | bilateral
    zone: str | None = None  # upper | middle | lower
    severity: str | None = None  # one of SEVERITY_ORDER
    tag: str = ""


def _split_tag(tag: str) -> tuple[str, list[str]]:
    parts = [p.strip() for p in tag.split("/")]
    return parts[0], [p.lower() for p in parts[1:] if p]


def tag_role(tag: str) -> str:
    """``finding``, ``normal``, ``supporting``, ``incidental`` or ``other`` (see the module docstring)."""
    head, qualifiers = _split_tag(tag)
    if head.lower() == "normal":
        return "normal"
    if head in MESH_CLASSES:
        required = _CONDITIONAL.get(head)
        return "finding" if required is None or any(q in qualifiers for q in required) else "other"
    if head in MESH_SUPPORTING:
        return "supporting"
    if head in MESH_INCIDENTAL:
        required = _INCIDENTAL_WITH.get(head)
        return "incidental" if required is None or any(q in qualifiers for q in required) else "other"
    return "other"


def map_mesh_tag(tag: str) -> TagFinding | None:
    """The benchmark finding a MeSH tag states, or None for a tag outside the eight classes.

    ``normal`` maps to No Finding. Side, zone and severity come from the qualifiers (``base`` is the
    lower zone, ``lingula`` the left middle zone, ``borderline`` counts as mild).

    Example:
        >>> f = map_mesh_tag("Pleural Effusion/right/small")
        >>> f.label, f.side, f.zone, f.severity
        ('Pleural Effusion', 'right', None, 'small')
        >>> map_mesh_tag("Opacity/lung/base/left/streaky").zone
        'lower'
    """
    role = tag_role(tag)
    if role == "normal":
        return TagFinding(NO_FINDING, tag=tag)
    if role != "finding":
        return None
    head, qualifiers = _split_tag(tag)
    side = next((_SIDE_QUALIFIERS[q] for q in qualifiers if q in _SIDE_QUALIFIERS), None)
    zone = next((_ZONE_QUALIFIERS[q] for q in qualifiers if q in _ZONE_QUALIFIERS), None)
    if side is None:
        side = next((_ZONE_SIDES[q] for q in qualifiers if q in _ZONE_SIDES), None)
    levels = [_SEVERITY_QUALIFIERS[q] for q in qualifiers if q in _SEVERITY_QUALIFIERS]
    severity = max(levels, key=SEVERITY_ORDER.index) if levels else None
    label = MESH_CLASSES[head]
    if label in _UNSIDED:
        side, zone = None, None
    if label in ("Pleural Effusion", "Pneumothorax", "Cardiomegaly", "Edema"):
        zone = None  # drawn by severity, not by zone
    return TagFinding(label, side, zone, severity, tag)


# --------------------------------------------------------------------------------------------------
# Report text: cleaning, sentences, the sentence that states a finding
# --------------------------------------------------------------------------------------------------

_LIST_NUMBER = re.compile(r"(?:^|(?<=\s))\d{1,2}[.)](?=\s+\S)")
#: Cleaning steps after whitespace normalization, in order: (pattern, replacement, needed character).
_CLEANING = tuple((re.compile(p), r, c) for p, r, c in (
    (r" ?X{3,}", "", "XXX"),  # de-identification tokens
    (r"([a-z]{2}[.?!])(?=[A-Z])", r"\1 ", ""),  # "normal.No change" -> two sentences
    (r"(\w)-(?= |$)", r"\1", "-"),  # "x-XXXX" -> "x"
    (r"^ | (?=[.,;:?!)])", "", " "),
    (r"\( ?\)", "", "("),
    (r"([,;:])(?: ?[,;:])+", r"\1", ""),
    (r"[,;:] ?([.?!])", r"\1", ""),
    (r"([.?!])(?: ?[.,;:?!])+", r"\1", ""),
))
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_LETTERS = re.compile(r"[A-Za-z]{2}")


def clean_text(text: str) -> str:
    """``text`` without XXXX de-identification tokens, whitespace and punctuation runs normalized."""
    text = " ".join(text.split())
    for pattern, replacement, needed in _CLEANING:
        if needed in text:
            text = pattern.sub(replacement, text)
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Cleaned sentences of a report section; numbered items are sentences; each ends with a period."""
    sentences: list[str] = []
    for item in _LIST_NUMBER.split(clean_text(text)):
        for piece in _SENTENCE_END.split(item):
            piece = piece.strip(" ,;:-")
            if not _LETTERS.search(piece):
                continue
            if piece[-1] not in ".?!":
                piece += "."
            sentences.append(piece[0].upper() + piece[1:])
    return sentences


#: Negation cues before the finding word within its clause, and after it.
_NEG_BEFORE = re.compile(
    r"\b(no|not|without|negative|free of|resolved|resolution of|cleared|clearing of|absence of|"
    r"removal of|removed|rather than|instead of|never)\b", re.I)
_NEG_AFTER = re.compile(
    r"\b(not|resolved|has cleared|have cleared|excluded|ruled out|removed|absent)\b", re.I)
_CLAUSE = re.compile(r"[;,:]|\bbut\b|\bhowever\b|\bwith\b|\band\b(?= there)", re.I)
#: What else a stating sentence must say, per class: the heart must be enlarged (``cardiac`` alone
#: is also the word of "normal cardiac silhouette"), an effusion must be named as such.
_REQUIRED = {
    "Cardiomegaly": re.compile(r"cardiomegaly|enlarg|large|prominen|increased", re.I),
    "Pleural Effusion": re.compile(r"effusion|pleural fluid", re.I),
}
_NORMAL_CUE = re.compile(r"\b(normal|unremarkable|within normal limits|upper limits? of normal)\b", re.I)


_QUERY = {label: re.compile("|".join(re.escape(q) for q in words), re.I)
          for label, words in QUERY_WORDS.items()}


def _query_positions(sentence: str, label: str) -> list[int]:
    return [m.start() for m in _QUERY[label].finditer(sentence)]


def stating_clause(sentence: str, label: str) -> str | None:
    """The clause of ``sentence`` with its first non-negated mention of ``label`` (see ``states``)."""
    if label not in QUERY_WORDS:
        return None
    required = _REQUIRED.get(label)
    if required is not None and not required.search(sentence):
        return None
    for pos in _query_positions(sentence, label):
        starts = [m.end() for m in _CLAUSE.finditer(sentence, 0, pos)]
        clause_start = starts[-1] if starts else 0
        following = _CLAUSE.search(sentence, pos)
        clause_end = following.start() if following else len(sentence)
        before, after = sentence[clause_start:pos], sentence[pos:clause_end]
        if _NEG_BEFORE.search(before) or _NEG_AFTER.search(after):
            continue
        if label == "Cardiomegaly" and _NORMAL_CUE.search(sentence[clause_start:clause_end]):
            continue
        return sentence[clause_start:clause_end]
    return None


def states(sentence: str, label: str) -> bool:
    """Whether ``sentence`` states ``label``: it has a query word of the class that is not negated.

    A mention is negated when a negation cue ("no", "without", "negative for", "resolved", ...)
    precedes it in its clause, or follows it ("... is not seen", "... has resolved"). Cardiomegaly
    also needs an enlargement word and no "normal"; Pleural Effusion needs "effusion" or "pleural fluid".

    Example:
        >>> states("Small right pleural effusion.", "Pleural Effusion")
        True
        >>> states("No pleural effusion.", "Pleural Effusion")
        False
    """
    return stating_clause(sentence, label) is not None


_SIDE_WORDS = (("bilateral", re.compile(r"\b(bilateral(ly)?|bibasilar|bibasal|both)\b", re.I)),
               ("right", re.compile(r"\bright\b", re.I)),
               ("left", re.compile(r"\b(left|lingula\w*)\b", re.I)))
_ZONE_WORDS = (("upper", re.compile(r"\b(upper|apex|apical|apices)\b", re.I)),
               ("middle", re.compile(r"\b(middle|mid|midlung|lingula\w*|perihilar|hilar)\b", re.I)),
               ("lower", re.compile(r"\b(lower|bases?|(bi)?basilar|(bi)?basal|retrocardiac)\b", re.I)))
_SEVERITY_WORDS = (("small", re.compile(r"\b(small|trace|tiny|minimal)\b", re.I)),
                   ("mild", re.compile(r"\b(mild|mildly|borderline|slight|slightly)\b", re.I)),
                   ("moderate", re.compile(r"\b(moderate|moderately)\b", re.I)),
                   ("large", re.compile(r"\b(large|marked|markedly|massive)\b", re.I)),
                   ("severe", re.compile(r"\b(severe|severely)\b", re.I)))


def sentence_side(sentence: str) -> str | None:
    """right, left or bilateral as the sentence says (both right and left: bilateral), else None."""
    found = {name for name, pattern in _SIDE_WORDS if pattern.search(sentence)}
    if "bilateral" in found or {"right", "left"} <= found:
        return "bilateral"
    return next(iter(found), None)


def sentence_zone(sentence: str) -> str | None:
    return next((name for name, pattern in _ZONE_WORDS if pattern.search(sentence)), None)


def sentence_severity(sentence: str) -> str | None:
    found = [name for name, pattern in _SEVERITY_WORDS if pattern.search(sentence)]
    return max(found, key=SEVERITY_ORDER.index) if found else None


def find_phrase(label: str, sentences: Iterable[str], side: str | None = None) -> str | None:
    """The first sentence that ``states`` ``label``, preferring one that names ``side``; else None."""
    stating = [s for s in sentences if states(s, label)]
    if side in ("right", "left", "bilateral"):
        named = [s for s in stating if sentence_side(s) in (side, "bilateral")]
        stating = named or stating
    return stating[0] if stating else None


# --------------------------------------------------------------------------------------------------
# Usable reports
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatedFinding:
    """One benchmark finding of a report: its phrase and the sites to draw.

    ``sites`` has one ``TagFinding`` per lung to draw in (side ``right`` or ``left``; side None for
    Cardiomegaly and Edema, or where neither tag nor phrase names a side: then the renderer picks).
    """

    label: str
    phrase: str
    sites: tuple[TagFinding, ...]


@dataclass(frozen=True)
class OpenIStudy:
    """A usable report: its id, the prompt (the report text of the samples) and its findings."""

    uid: str
    report: str
    findings: tuple[StatedFinding, ...]
    tags: tuple[str, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f.label for f in self.findings) or (NO_FINDING,)


def _sites(label: str, tags: list[TagFinding], phrase: str) -> tuple[TagFinding, ...]:
    """Merge a class's tags into one site per side; what no tag says comes from the phrase's clause
    that states the finding (not the whole sentence, which may grade another finding)."""
    phrase = stating_clause(phrase, label) or ""
    levels = [t.severity for t in tags if t.severity] or [sentence_severity(phrase)]
    levels = [s for s in levels if s]
    severity = max(levels, key=SEVERITY_ORDER.index) if levels else None
    if label in _UNSIDED:
        return (TagFinding(label, None, None, severity, tags[0].tag),)
    sides: list[str] = []
    for t in tags:
        for s in (("right", "left") if t.side == "bilateral" else (t.side,)):
            if s and s not in sides:
                sides.append(s)
    if not sides:
        said = sentence_side(phrase)
        sides = ["right", "left"] if said == "bilateral" else ([said] if said else [])
    zoned = label not in ("Pleural Effusion", "Pneumothorax")
    phrase_zone = sentence_zone(phrase) if zoned else None
    sites = []
    for s in sides or [None]:
        zone = next((t.zone for t in tags if t.zone and t.side in (s, "bilateral", None)), None)
        sites.append(TagFinding(label, s, zone or phrase_zone, severity, tags[0].tag))
    return tuple(sites)


def _prompt(impression: list[str], findings: list[str], stating: set[str]) -> list[str]:
    """IMPRESSION sentences in order within ``MAX_PROMPT_WORDS`` (stating ones always), then the
    FINDINGS sentences of findings the IMPRESSION does not state."""
    kept: list[str] = []
    words = 0
    full = False
    for s in impression:
        n = len(s.split())
        if s in stating or (not full and words + n <= MAX_PROMPT_WORDS):
            kept.append(s)
            words += n
        else:
            full = True
    kept += [s for s in findings if s in stating and s not in kept]
    return kept


def usable_study(report: OpenIReport) -> tuple[OpenIStudy | None, str]:
    """The study of ``report``, or None and the reason it is left out (see the module docstring)."""
    roles = [tag_role(t) for t in report.major]
    if not roles:
        return None, "no MeSH tags"
    if "other" in roles:
        return None, "tag outside the mapping"
    mapped = [map_mesh_tag(t) for t, r in zip(report.major, roles) if r in ("finding", "normal")]
    labels = {m.label for m in mapped if m is not None}
    if NO_FINDING in labels and len(labels) > 1:
        return None, "normal with findings"
    if not labels:
        return None, "incidental tags only"
    for tag, role in zip(report.major, roles):
        if role == "supporting" and MESH_SUPPORTING[_split_tag(tag)[0]] not in labels:
            return None, "supporting tag without its finding"
    impression = split_sentences(report.impression)
    findings_text = split_sentences(report.findings)
    if not impression and not findings_text:
        return None, "no report text"
    main = impression or findings_text
    rest = findings_text if impression else []
    stated: list[tuple[str, str, list[TagFinding]]] = []
    for label in FINDING_CLASSES:
        tags = [m for m in mapped if m is not None and m.label == label]
        if not tags:
            continue
        sides = {t.side for t in tags if t.side}
        side = "bilateral" if len(sides) > 1 else next(iter(sides), None)
        phrase = find_phrase(label, main, side) or find_phrase(label, rest, side)
        if phrase is None:
            return None, "finding without a stating sentence"
        stated.append((label, phrase, tags))
    sentences = _prompt(main, rest, {p for _, p, _ in stated})
    if not sentences:
        return None, "no report text"
    own = {p for _, p, _ in stated}
    for s in sentences:
        if s not in own and any(states(s, c) for c in FINDING_CLASSES if c not in labels):
            return None, "prompt states an untagged finding"
    prompt = " ".join(sentences)
    if len(prompt) > MAX_PROMPT_CHARS:
        return None, "prompt too long"
    findings = tuple(StatedFinding(label, phrase, _sites(label, tags, phrase))
                     for label, phrase, tags in stated)
    return OpenIStudy(report.uid, prompt, findings, report.major), "usable"


@lru_cache(maxsize=4)
def _usable_at(path: str) -> tuple[tuple[OpenIStudy, ...], tuple[tuple[str, int], ...]]:
    studies, reasons = [], {}
    for report in _reports_at(path):
        study, reason = usable_study(report)
        reasons[reason] = reasons.get(reason, 0) + 1
        if study is not None:
            studies.append(study)
    return tuple(studies), tuple(sorted(reasons.items(), key=lambda kv: -kv[1]))


def usable_studies(path: str | Path | None = None) -> tuple[OpenIStudy, ...]:
    """All usable reports of the archive as studies, in report order (cached per process)."""
    return _usable_at(str(archive_path() if path is None else path))[0]


def selection_summary(path: str | Path | None = None) -> dict[str, Any]:
    """Counts for the documentation: reports, reasons for leaving reports out, usable reports per
    label, and train/test pool sizes per label."""
    key = str(archive_path() if path is None else path)
    studies, reasons = _usable_at(key)
    pools = _pools(key)
    per_label = {label: sum(label in s.labels for s in studies) for label in ALL_LABELS}
    return {
        "reports": len(_reports_at(key)),
        "reasons": dict(reasons),
        "usable": len(studies),
        "usable_per_label": per_label,
        "pool_sizes": {split: len(sum(pools[split].values(), ())) for split in SPLITS},
        "pool_per_label": {split: {label: sum(label in s.labels for s in sum(pools[split].values(), ()))
                                   for label in ALL_LABELS} for split in SPLITS},
    }


# --------------------------------------------------------------------------------------------------
# Selection: a fixed train/test split of the reports, a seeded class-balanced order
# --------------------------------------------------------------------------------------------------

#: One usable report in ``TEST_EVERY`` goes to the test pool (stratified by primary class).
TEST_EVERY = 5


def _hash_key(uid: str) -> str:
    return hashlib.sha256(f"openi-split|{uid}".encode()).hexdigest()


@lru_cache(maxsize=4)
def _pools(path: str) -> dict[str, dict[str, tuple[OpenIStudy, ...]]]:
    """Train and test pools, by primary class (the rarest of a report's labels), fixed for the archive.

    Within each primary class the reports are ordered by a hash of their id and every ``TEST_EVERY``-th
    goes to test, so each class is split in the same proportion and the split never depends on the seed.
    """
    studies = _usable_at(path)[0]
    frequency = {label: sum(label in s.labels for s in studies) for label in ALL_LABELS}
    by_class: dict[str, list[OpenIStudy]] = {label: [] for label in ALL_LABELS}
    for s in studies:
        by_class[min(s.labels, key=lambda lab: (frequency[lab], ALL_LABELS.index(lab)))].append(s)
    pools: dict[str, dict[str, tuple[OpenIStudy, ...]]] = {split: {} for split in SPLITS}
    for label, members in by_class.items():
        ordered = sorted(members, key=lambda s: _hash_key(s.uid))
        pools["test"][label] = tuple(s for k, s in enumerate(ordered) if k % TEST_EVERY == TEST_EVERY - 1)
        pools["train"][label] = tuple(s for k, s in enumerate(ordered) if k % TEST_EVERY != TEST_EVERY - 1)
    return pools


_SPLIT_CODES = {"train": 1, "test": 2}
#: Random streams of this dataset (distinct from SynthCXR's).
_ORDER_STREAM, _ANATOMY_STREAM, _FINDING_STREAM, _TEXTURE_STREAM = 11, 12, 13, 14
#: Uses of each report with findings per pass over a pool (each with its own patient); normal: 1.
FINDING_REPEATS = 3


class _Order:
    """The seeded order in which a split's pool is used.

    A pass is a sequence of rounds; each round takes the next report of every class that has any left
    (classes in a seeded order). A class's queue holds its reports ``FINDING_REPEATS`` times (No
    Finding: once), each time in a new seeded order, so rare classes keep coming until they run out
    and a report's uses lie far apart. When every queue is empty, the next pass starts. Study ``i``
    depends only on ``(seed, split, i)``.
    """

    def __init__(self, pools: dict[str, tuple[OpenIStudy, ...]], seed: int, split: str) -> None:
        self.pools = pools
        self.seed = seed
        self.code = _SPLIT_CODES[split]
        self.sequence: list[OpenIStudy] = []
        self.passes = 0

    def _extend(self) -> None:
        rng = np.random.default_rng([self.seed, self.code, _ORDER_STREAM, self.passes])
        queues: dict[str, list[OpenIStudy]] = {}
        for label in ALL_LABELS:
            members = self.pools.get(label, ())
            for _ in range(1 if label == NO_FINDING else FINDING_REPEATS):
                queues.setdefault(label, []).extend(members[k] for k in rng.permutation(len(members)))
        queues = {label: q[::-1] for label, q in queues.items() if q}
        if not queues:
            raise DataError("no usable Open-i reports in this split")
        while queues:
            for k in rng.permutation(len(ALL_LABELS)):
                label = ALL_LABELS[k]
                if label in queues:
                    self.sequence.append(queues[label].pop())
                    if not queues[label]:
                        del queues[label]
        self.passes += 1

    def __getitem__(self, index: int) -> OpenIStudy:
        while len(self.sequence) <= index:
            self._extend()
        return self.sequence[index]


# --------------------------------------------------------------------------------------------------
# Drawing a report's findings on a SynthCXR patient
# --------------------------------------------------------------------------------------------------

#: Tag severity -> the SynthCXR severity word of each graded class (None: any).
_RENDER_SEVERITY = {
    "Cardiomegaly": dict(zip(SEVERITY_ORDER, ("mild", "mild", "moderate", "marked", "marked"))),
    "Pleural Effusion": dict(zip(SEVERITY_ORDER, ("small", "small", "moderate", "large", "large"))),
    "Pneumothorax": dict(zip(SEVERITY_ORDER, ("small", "small", "moderate", "large", "large"))),
    "Edema": dict(zip(SEVERITY_ORDER, ("mild", "mild", "moderate", "moderate", "moderate"))),
    "Lung Opacity": {"small": "small"},  # a small rounded opacity; otherwise any size
}
#: Drawing patterns used for a site (``synthcxr.PATTERNS``; other classes: any). A site is one side, so
#: an effusion is drawn as free fluid at that lung's base (SynthCXR's bilateral pattern would be one
#: finding over both); a pneumothorax and edema take their common form, as the tags do not say more.
_RENDER_PATTERNS = {"Pleural Effusion": ("basal",), "Pneumothorax": ("apical",), "Edema": ("perihilar",)}
_MAX_TRIES = 64


def _matches(spec: FindingSpec, zone: str | None, severity: str | None) -> bool:
    zone_ok = zone is None or spec.zone is None or spec.zone == zone
    return zone_ok and (severity is None or spec.severity == severity)


def draw_site(site: TagFinding, anatomy: synthcxr.Anatomy, entropy: list[int], phrase: str) -> FindingSpec:
    """A SynthCXR finding for ``site`` on ``anatomy``: side, zone and severity as the site says.

    Draws ``synthcxr._draw_finding`` with the site's side from one seeded stream until the zone and
    severity match (at most ``_MAX_TRIES``), with the class's patterns limited to ``_RENDER_PATTERNS``.
    A point-like finding (geometry ``d``, ``y``) whose zone never comes up in those tries is moved into
    the zone with ``synthcxr._sample_point``.
    """
    label = site.label
    rng = np.random.default_rng(entropy)
    side = SIDES.index(site.side) if site.side in SIDES else int(rng.integers(2))
    severity = _RENDER_SEVERITY.get(label, {}).get(site.severity or "")
    spec: FindingSpec | None = None
    movable: FindingSpec | None = None
    zones_seen: set[str | None] = set()
    for attempt in range(1, _MAX_TRIES + 1):
        spec = synthcxr._draw_finding(rng, anatomy, label, side, patterns=_RENDER_PATTERNS.get(label))
        if _matches(spec, site.zone, severity):
            return replace(spec, phrase=phrase)
        zones_seen.add(spec.zone)
        if movable is None and _matches(spec, None, severity) and {"d", "y"} <= set(spec.geometry):
            movable = spec
        if attempt >= 8 and len(zones_seen) == 1 and movable is not None:
            break  # the class is always drawn in another zone: move a point-like drawing
    assert spec is not None
    sample_point = getattr(synthcxr, "_sample_point", None)
    if movable is not None and sample_point is not None and site.zone not in (None, movable.zone):
        margin = movable.geometry.get("radius", 0.05) + 0.01
        d, y = sample_point(anatomy, side, site.zone, rng, margin)
        spec = replace(movable, zone=site.zone, geometry={**movable.geometry, "d": d, "y": y})
    return replace(spec, phrase=phrase)


class OpenISynthCXR(StudySplits):
    """SynthCXR-OpenI: real Open-i report text, SynthCXR images drawn to match each report's tags.

    Args:
        n_train: number of training studies.
        n_test: number of test studies.
        image_size: side of the square images in pixels (16 or more).
        seed: selection and rendering seed; study ``i`` of a split depends only on ``(seed, split, i)``
            (and the archive). Train and test reports come from disjoint, seed-independent pools.

    Raises:
        DataError: for a negative size, an image size below 16 or a negative seed.
        AssetUnavailable: torchxrayvision (which ships the reports) is not installed.

    Example:
        >>> ds = OpenISynthCXR(n_train=4, n_test=2, image_size=32)
        >>> sample = ds.split("test")[0]
        >>> all(f.phrase in sample.report for f in sample.findings)
        True
    """

    name = "synthcxr-openi"
    version = "1"

    def __init__(self, n_train: int, n_test: int, image_size: int = 64, seed: int = 0) -> None:
        check_dataset_sizes("OpenISynthCXR", n_train, n_test, image_size, seed)
        self.n_train = int(n_train)
        self.n_test = int(n_test)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.archive = archive_path()
        self._cache: dict[str, list[Sample]] = {}
        self._orders: dict[str, _Order] = {}
        self._specs: dict[tuple[str, int], StudySpec] = {}

    def params(self) -> dict[str, Any]:
        """The constructor arguments: ``OpenISynthCXR(**ds.params())`` builds the same dataset."""
        return {"n_train": self.n_train, "n_test": self.n_test, "image_size": self.image_size,
                "seed": self.seed}

    def study(self, split: str, index: int) -> OpenIStudy:
        """The Open-i report (id, prompt, findings and sites) behind study ``index`` of ``split``."""
        self._check_index(split, index)
        if split not in self._orders:
            self._orders[split] = _Order(_pools(str(self.archive))[split], self.seed, split)
        return self._orders[split][index]

    def spec(self, split: str, index: int) -> StudySpec:
        """The SynthCXR specification of study ``index``: its patient, drawn findings and report."""
        study = self.study(split, index)
        if (split, index) in self._specs:
            return self._specs[split, index]
        code = _SPLIT_CODES[split]
        rng = np.random.default_rng([self.seed, code, _ANATOMY_STREAM, index])
        anatomy = synthcxr._draw_anatomy(rng)
        drawn = []
        for k, finding in enumerate(study.findings):
            for j, site in enumerate(finding.sites):
                entropy = [self.seed, code, _FINDING_STREAM, index, k, j]
                drawn.append(draw_site(site, anatomy, entropy, finding.phrase))
        spec = StudySpec(id=f"{self.name}-{split}-{index:06d}-{study.uid}", split=split, index=index,
                         anatomy=anatomy, findings=tuple(drawn), report=study.report,
                         texture_entropy=(self.seed, code, _TEXTURE_STREAM, index))
        self._specs[split, index] = spec
        return spec

    def _render(self, specs: list[StudySpec], labels: Collection[str] | None = None
                ) -> list[tuple[np.ndarray, list[tuple[Box, ...]]]]:
        """Images and per-FindingSpec boxes (a class drawn on both sides has a FindingSpec, and its boxes,
        per side), rendered in batches of bounded size."""
        oversample = 2 if self.image_size <= 32 else 1  # as SynthCXR renders small images
        chunk = max(1, getattr(synthcxr, "_BATCH_PIXELS", 2**18) // (self.image_size * oversample) ** 2)
        rendered = []
        for start in range(0, len(specs), chunk):
            rendered += render_studies(specs[start:start + chunk], self.image_size, labels)
        return [(image, list(boxes)) for image, boxes in rendered]

    def _samples(self, split: str, specs: list[StudySpec]) -> list[Sample]:
        return [Sample(id=spec.id, image=image, report=spec.report, split=split,
                       findings=_merge(spec.findings, boxes))
                for spec, (image, boxes) in zip(specs, self._render(specs))]

    def render(self, split: str, index: int, labels: Collection[str] | None = None) -> np.ndarray:
        """Study ``index`` drawn with only the findings in ``labels`` (None: all; (): the normal patient)."""
        return self._render([self.spec(split, index)], labels)[0][0]

    def fingerprint(self) -> str:
        """SHA-256 over both splits: ids, reports, labels, phrases, boxes and images quantized to uint8."""
        return self._digest(f"{self.name}-v{self.version}|synthcxr-v{synthcxr.SynthCXR.version}|{self.image_size}")


def _merge(drawn: tuple[FindingSpec, ...], boxes: list[tuple[Box, ...]]) -> tuple[Finding, ...]:
    """One ``Finding`` per class: the phrase, and the boxes of all its drawn sites."""
    merged: dict[str, tuple[str, tuple[Box, ...]]] = {}
    for f, b in zip(drawn, boxes):
        phrase, previous = merged.get(f.label, (f.phrase, ()))
        merged[f.label] = (phrase, previous + tuple(b))
    return tuple(Finding(label, phrase, b) for label, (phrase, b) in merged.items())


__all__ = ["OpenISynthCXR", "OpenIReport", "OpenIStudy", "StatedFinding", "TagFinding", "archive_path",
           "load_reports", "read_reports", "parse_report", "map_mesh_tag", "tag_role", "clean_text",
           "split_sentences", "states", "find_phrase", "usable_study", "usable_studies", "selection_summary",
           "MESH_CLASSES", "MESH_SUPPORTING", "MESH_INCIDENTAL", "MAX_PROMPT_WORDS", "TEST_EVERY"]
