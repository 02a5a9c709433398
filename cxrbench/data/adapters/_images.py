"""Images of the real datasets: read with PIL, made square, and boxes moved exactly the same way.

The square ``size x size`` image is made from an image of ``W x H`` pixels by scaling it by
``s = size / min(W, H)`` (the shorter side becomes ``size``) and cropping the centre: the crop starts at
``ox = (W * s - size) / 2``, ``oy = (H * s - size) / 2`` of the scaled image. A box ``(x, y, w, h)`` becomes
``(x * s - ox, y * s - oy, w * s, h * s)``, clipped to ``[0, size]``; a box that the crop removes entirely is
dropped. The image is resampled through the same continuous map (PIL's ``resize(box=...)``), so image and
boxes stay aligned to a fraction of a pixel; nothing is rounded to whole pixels first.

The *frame* is the ``W x H`` a box table's boxes refer to. The adapters refuse a file of another size
(``RealDataset._check_frame``) unless the dataset is declared a resized copy (``resized_copy``); the
file is then mapped onto the frame (its aspect ratio must agree within 1 %).

Grey levels: 8-bit images (and colour images, converted to grey) are divided by 255; 16- and 32-bit
images (PNGs converted from DICOM with 12-16 bits) are stretched from their own minimum to maximum.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import numpy as np

from cxrbench.data.schema import Box, Finding, Sample
from cxrbench.errors import DataError

#: A box may stick out of its image by this fraction of the image's side (rounding in the tools that
#: drew it) before it counts as outside the image.
BOX_TOLERANCE = 0.01
#: A clipped box thinner than this (pixels of the returned image) has vanished and is dropped.
_MIN_EXTENT = 1e-6


def crop_transform(width: float, height: float, size: int) -> tuple[float, float, float]:
    """``(s, ox, oy)``: scale and crop offset that map a ``width x height`` frame onto ``size x size``."""
    s = size / min(width, height)
    return s, (width * s - size) / 2.0, (height * s - size) / 2.0


def transform_boxes(boxes: list[tuple[float, float, float, float]], frame: tuple[float, float],
                    size: int) -> tuple[Box, ...]:
    """Boxes ``(x, y, w, h)`` in ``frame`` pixels to ``Box`` es of the ``size x size`` image (clipped;
    vanished ones dropped)."""
    s, ox, oy = crop_transform(frame[0], frame[1], size)
    out = []
    for x, y, w, h in boxes:
        x0, y0 = x * s - ox, y * s - oy
        x1, y1 = x0 + w * s, y0 + h * s
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(size)), min(y1, float(size))
        if x1 - x0 > _MIN_EXTENT and y1 - y0 > _MIN_EXTENT:
            out.append(Box(x0, y0, x1 - x0, y1 - y0))
    return tuple(out)


def box_problem(x: float, y: float, w: float, h: float, width: float, height: float) -> str | None:
    """What is wrong with a box in a ``width x height`` image, or None: a size that is not positive, or a
    box that reaches outside the image by more than ``BOX_TOLERANCE`` of the image's side."""
    if not (w > 0 and h > 0):
        return f"the box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] has a width or height that is not positive"
    tx, ty = BOX_TOLERANCE * width, BOX_TOLERANCE * height
    if x < -tx or y < -ty or x + w > width + tx or y + h > height + ty:
        return (f"the box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] lies outside the {width:g} x {height:g} "
                f"image")
    return None


def _open(path: Path, context: str):  # noqa: ANN202 - a PIL image
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found (referenced by {context})") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: cannot read image ({exc}) (referenced by {context})") from None


def image_dims(path: Path, context: str) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header only."""
    im = _open(path, context)
    try:
        return im.size
    finally:
        im.close()


def check_image_files(samples: Iterable[Sample]) -> int:
    """Open the image file of every sample that has one (``LazySample``) and read its header (format and
    size; the pixels are not decoded); returns how many were checked.

    Raises:
        DataError: for the first file that is missing or that PIL cannot identify, naming the file and
            the table row that refers to it.
    """
    checked = 0
    for sample in samples:
        ref = getattr(sample, "ref", None)
        if ref is not None and sample.__dict__.get("_image") is None:
            image_dims(ref.path, ref.context)
            checked += 1
    return checked


def load_image(path: Path, size: int, frame: tuple[float, float] | None = None,
               context: str = "") -> np.ndarray:
    """The ``size x size`` float32 image in [0, 1] made from ``path`` (see the module docstring).

    Args:
        frame: the ``(W, H)`` the sample's boxes refer to; None: the file's own size.
        context: what refers to the image (``table, line N``), for error messages.
    """
    from PIL import Image

    src = _open(path, context)
    try:
        im = src
        width, height = im.size
        fw, fh = frame if frame is not None else (width, height)
        if abs((width / height) / (fw / fh) - 1.0) > BOX_TOLERANCE:
            raise DataError(f"{path}: the image is {width} x {height} pixels, but its boxes refer to a "
                            f"{fw:g} x {fh:g} image (other aspect ratio; referenced by {context})")
        s, ox, oy = crop_transform(fw, fh, size)
        kx, ky = width / fw, height / fh  # frame -> file pixels
        dx = dy = 1.0  # file -> decoded pixels
        if im.format == "JPEG" and im.mode in ("L", "RGB"):
            # Decode at a reduced scale (DCT scaling, 1/2 to 1/8) when the target is much smaller.
            im.draft("L", (math.ceil(width * s / kx), math.ceil(height * s / ky)))
            if im.size != (width, height):
                dx = dy = 1.0 / round(width / im.size[0])
        stretch = im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
        if im.mode.startswith("I;16"):
            im = im.convert("I")
        elif not stretch and im.mode != "L":
            im = im.convert("L")
        im = im.convert("F")
        w2, h2 = im.size
        box = (
            min(max(ox / s * kx * dx, 0.0), w2), min(max(oy / s * ky * dy, 0.0), h2),
            min(max((ox + size) / s * kx * dx, 0.0), w2), min(max((oy + size) / s * ky * dy, 0.0), h2),
        )
        arr = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, box=box), dtype=np.float32)
        if stretch:
            full = np.asarray(im, dtype=np.float32)
            lo, hi = float(full.min()), float(full.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        else:
            arr = arr / 255.0
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}) (referenced by {context})") from None
    finally:
        src.close()


@dataclass(frozen=True)
class ImageRef:
    """Where a sample's image is and how to make it: file, its path relative to the dataset root, its
    size in bytes, the box frame (None: the file's own size) and the table row that refers to it."""

    path: Path
    relpath: str
    nbytes: int
    frame: tuple[float, float] | None
    context: str


class _ImageCache:
    """The last few images made (phrases of one MS-CXR image share it); copies go out."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def get(self, ref: ImageRef, size: int) -> np.ndarray:
        key = (str(ref.path), ref.frame, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key].copy()
        image = load_image(ref.path, size, ref.frame, ref.context)
        with self._lock:
            self._items[key] = image
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return image.copy()


_CACHE = _ImageCache()


class LazySample(Sample):
    """A ``Sample`` whose image is read from disk when ``.image`` is used (not kept by the sample, so a
    split of a real dataset costs memory only for the images in use). Assigning ``.image`` stores an
    array as on any Sample."""

    def __init__(self, id: str, image: np.ndarray | None, report: str, split: str,  # noqa: A002
                 findings: tuple[Finding, ...] = (), *, ref: ImageRef | None = None, size: int = 0) -> None:
        # Same leading arguments as Sample, so dataclasses.replace() works (it yields a stored image).
        self.ref = ref
        self.size = size
        super().__init__(id=id, image=image, report=report, split=split,  # type: ignore[arg-type]
                         findings=findings)

    @property  # type: ignore[override]
    def image(self) -> np.ndarray:
        stored = self.__dict__.get("_image")
        if stored is not None or self.ref is None:
            return stored  # type: ignore[return-value]
        return _CACHE.get(self.ref, self.size)

    @image.setter
    def image(self, value: np.ndarray | None) -> None:
        self.__dict__["_image"] = value

    def __repr__(self) -> str:
        where = self.ref.relpath if self.ref is not None else "stored"
        return (f"LazySample(id={self.id!r}, image={where!r} -> {self.size}x{self.size}, "
                f"report={self.report!r}, split={self.split!r}, labels={self.labels!r})")


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (the form that goes into fingerprints)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


__all__ = ["crop_transform", "transform_boxes", "box_problem", "image_dims", "check_image_files",
           "load_image", "ImageRef", "LazySample", "relpath", "BOX_TOLERANCE"]
