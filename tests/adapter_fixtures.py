"""Small copies of the real datasets' files, written into a temporary directory by the adapter tests.

The headers are those of the real releases; the images are tiny (a dark field with bright rectangles
where the boxes are, so a test can check that image and boxes moved together). The real box tables that
torchxrayvision ships are found as files (``xrv_table``), without importing torchxrayvision.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DARK, BRIGHT = 10, 245


def xrv_table(name: str) -> Path:
    """A data file of the installed torchxrayvision package; skips the test when it is not there."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchxrayvision is not installed: its real tables (data/" + name + ") are not available")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        pytest.skip(f"torchxrayvision has no data/{name} in this version")
    return path


def read_real_rows(name: str) -> tuple[list[str], list[list[str]]]:
    """Header fields and rows of one of torchxrayvision's gzipped CSV tables."""
    with gzip.open(xrv_table(name), "rt", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def real_header_line(name: str) -> str:
    """The first line of one of torchxrayvision's gzipped CSV tables, exactly as written."""
    with gzip.open(xrv_table(name), "rt", newline="") as f:
        return f.readline().rstrip("\r\n")


def write_image(path: Path, width: int, height: int, rects: Iterable[Sequence[float]] = (),
                bits: int = 8) -> Path:
    """A ``width x height`` image (format from the suffix) with bright rectangles ``(x, y, w, h)``."""
    top = BRIGHT if bits == 8 else 4000
    arr = np.full((height, width), DARK if bits == 8 else 100, dtype=np.uint8 if bits == 8 else np.uint16)
    for x, y, w, h in rects:
        arr[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))] = top
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95)
    else:
        image.save(path)
    return path


def write_csv(path: Path, header: Sequence[str] | str, rows: Iterable[Sequence[object]]) -> Path:
    """A CSV file (gzipped when the name ends in .gz); ``header`` as fields or as the raw first line."""
    buf = io.StringIO()
    if isinstance(header, str):
        buf.write(header + "\n")
    else:
        csv.writer(buf, lineterminator="\n").writerow(header)
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    path.parent.mkdir(parents=True, exist_ok=True)
    data = buf.getvalue().encode()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def region_mean(image: np.ndarray, box: Sequence[float], inset: float = 1.0) -> float:
    """Mean of the pixels well inside a box (``inset`` pixels from each edge)."""
    x, y, w, h = box
    r0, r1 = int(np.ceil(y + inset)), int(np.floor(y + h - inset))
    c0, c1 = int(np.ceil(x + inset)), int(np.floor(x + w - inset))
    return float(image[r0:r1, c0:c1].mean())


# -- MIMIC-CXR-JPG + MS-CXR ------------------------------------------------------------------------

CHEXPERT_LABELS = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
]
MIMIC_METADATA_HEADER = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
MIMIC_SPLIT_HEADER = ["dicom_id", "study_id", "subject_id", "split"]
MS_CXR_HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                 "image_height"]

# (dicom_id, subject, study, view, mimic split, file width, file height)
MIMIC_IMAGES = [
    ("0a1b2c3d-11111111-aaaaaaaa-00000001", "10000032", "50414267", "PA", "train", 40, 32),
    ("0a1b2c3d-11111111-aaaaaaaa-00000002", "10000032", "50414267", "LATERAL", "train", 32, 40),
    ("0b1b2c3d-22222222-bbbbbbbb-00000001", "10000764", "57375967", "AP", "train", 32, 32),
    ("0c1b2c3d-33333333-cccccccc-00000001", "10000898", "50771383", "PA", "train", 32, 32),
    ("0d1b2c3d-44444444-dddddddd-00000001", "10001122", "51133456", "PA", "test", 64, 32),
    ("0e1b2c3d-55555555-eeeeeeee-00000001", "10001122", "52222222", "PA", "train", 32, 32),
    ("0f1b2c3d-66666666-ffffffff-00000001", "10002013", "53333333", "PA", "train", 32, 24),
]
DICOM_A, DICOM_A_LAT, DICOM_B, DICOM_C, DICOM_D, DICOM_E, DICOM_F = (m[0] for m in MIMIC_IMAGES)

REPORT_A = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // ?pna

 COMPARISON:  None.

 FINDINGS:

 There is a small left pleural effusion.  No pneumothorax.  Heart size is normal.

 IMPRESSION:

 Small left pleural
 effusion.  No pneumothorax.
"""
REPORT_B = """                                 FINAL REPORT
 INDICATION:  Dyspnea.

 FINDINGS:  The heart is enlarged.  Lungs are clear.
"""
REPORT_C = """                                 FINAL REPORT
 INDICATION:  Line placement.

 COMPARISON:  ___
"""
REPORT_OTHER = """ FINDINGS:  No change.

 IMPRESSION:  No acute cardiopulmonary process.
"""

# MS-CXR boxes in the frame image_width x image_height (D: 64 x 32 like its file; F: 64 x 48, its file
# is a copy at half size).
MS_CXR_ROWS = [
    [DICOM_D, "Pneumothorax", "Small left apical pneumothorax", "", 40, 8, 16, 12, 64, 32],
    [DICOM_D, "Pneumothorax", "Small left apical pneumothorax", "", 12, 4, 8, 8, 64, 32],
    [DICOM_D, "Pleural Effusion", "Right pleural effusion", "", 4, 4, 8, 8, 64, 32],
    [DICOM_F, "Cardiomegaly", "Enlarged cardiac silhouette", "", 24, 12, 24, 18, 64, 48],
]


def mimic_image_path(root: Path, dicom: str) -> Path:
    m = next(m for m in MIMIC_IMAGES if m[0] == dicom)
    return root / "files" / f"p{m[1][:2]}" / f"p{m[1]}" / f"s{m[2]}" / f"{dicom}.jpg"


def write_ms_cxr(root: Path, rows: Sequence[Sequence[object]] = MS_CXR_ROWS, header: Sequence[str] = MS_CXR_HEADER,
                 version: str = "1.0.0") -> Path:
    rows = [list(r) for r in rows]
    if "path" in header:
        col = list(header).index("path")
        for r in rows:
            if r[col] == "" and r[0] in {m[0] for m in MIMIC_IMAGES}:
                m = next(m for m in MIMIC_IMAGES if m[0] == r[0])
                r[col] = f"files/p{m[1][:2]}/p{m[1]}/s{m[2]}/{m[0]}.dcm"
    return write_csv(root / f"MS_CXR_Local_Alignment_v{version}.csv", header, rows)


def make_mimic(root: Path) -> Path:
    """A MIMIC-CXR-JPG root with seven images, five reports and an MS-CXR v1.0.0 table."""
    for dicom, subject, study, view, _, w, h in MIMIC_IMAGES:
        rects = []
        if dicom == DICOM_D:
            rects = [(40, 8, 16, 12)]
        elif dicom == DICOM_F:
            rects = [(12, 6, 12, 9)]  # the frame's box (24, 12, 24, 18) at half size
        write_image(mimic_image_path(root, dicom), w, h, rects)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", MIMIC_METADATA_HEADER, [
        [d, s, st, "CHEST (PA AND LAT)", v, h, w, "21800506", "213014.531", "CHEST (PA AND LAT)",
         "postero-anterior", "Erect"] for d, s, st, v, _, w, h in MIMIC_IMAGES])
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", MIMIC_SPLIT_HEADER,
              [[d, st, s, sp] for d, s, st, _, sp, _, _ in MIMIC_IMAGES])
    labels = {"50414267": {"Pleural Effusion": "1.0", "Pneumothorax": "0.0"},
              "57375967": {"Cardiomegaly": "1.0", "Edema": "-1.0", "Support Devices": "1.0"},
              "52222222": {"No Finding": "1.0"}}
    chex_rows = []
    for _, s, st, *_ in MIMIC_IMAGES:
        if [s, st] not in [r[:2] for r in chex_rows]:
            chex_rows.append([s, st, *(labels.get(st, {}).get(c, "") for c in CHEXPERT_LABELS)])
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *CHEXPERT_LABELS], chex_rows)
    reports = {"50414267": REPORT_A, "57375967": REPORT_B, "50771383": REPORT_C}
    for _, s, st, *_ in MIMIC_IMAGES:
        path = root / "reports" / "files" / f"p{s[:2]}" / f"p{s}" / f"s{st}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reports.get(st, REPORT_OTHER))
    write_ms_cxr(root)
    return root


# -- NIH ChestX-ray14 --------------------------------------------------------------------------------

DATA_ENTRY_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                     "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"


def data_entry_row(image: str, labels: str) -> list[object]:
    patient = int(image.split("_")[0])
    return [image, labels, int(image.split("_")[1][:3]), patient, 58, "M", "PA", 2682, 2749, 0.143, 0.143]


# image, labels, split, boxes in the 1024 frame (label, x, y, w, h)
NIH_IMAGES = [
    ("00000001_000.png", "Cardiomegaly|Emphysema", "train", []),
    ("00000002_000.png", "No Finding", "train", []),
    ("00000003_001.png", "Hernia", "train", []),
    ("00000004_000.png", "Effusion|Infiltration|Mass", "test",
     [("Effusion", 640, 512, 256, 128), ("Infiltrate", 128, 256, 192, 256), ("Mass", 700, 100, 100, 100)]),
    ("00000005_002.png", "Atelectasis", "test", [("Atelectasis", 0, 900, 300, 100)]),
]


def make_nih(root: Path, size: int = 64) -> Path:
    """A ChestX-ray14 root with five images (``size`` px squares) in images_001/images/ and images/."""
    for i, (image, _, _, boxes) in enumerate(NIH_IMAGES):
        folder = root / ("images_001/images" if i < 3 else "images")
        rects = [(x * size / 1024, y * size / 1024, w * size / 1024, h * size / 1024) for _, x, y, w, h in boxes]
        write_image(folder / image, size, size, rects)
    write_csv(root / "Data_Entry_2017_v2020.csv", DATA_ENTRY_HEADER,
              [data_entry_row(image, labels) for image, labels, _, _ in NIH_IMAGES])
    write_csv(root / "BBox_List_2017.csv", BBOX_HEADER,
              [[image, *box] for image, _, _, boxes in NIH_IMAGES for box in boxes])
    (root / "train_val_list.txt").write_text("".join(f"{i}\n" for i, _, s, _ in NIH_IMAGES if s == "train"))
    (root / "test_list.txt").write_text("".join(f"{i}\n" for i, _, s, _ in NIH_IMAGES if s == "test"))
    return root


# -- VinDr-CXR ---------------------------------------------------------------------------------------

VINDR_HEADER = ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
VINDR_PHYSIONET_HEADER = ["image_id", "rad_id", "x_min", "y_min", "x_max", "y_max", "class_name"]
VINDR_LABELS_HEADER = ["image_id", "rad_ID", "Aortic enlargement", "Atelectasis", "Cardiomegaly", "Lung Opacity",
                       "Pleural effusion", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "COPD",
                       "No finding"]


def make_vindr_kaggle(root: Path) -> dict[str, str]:
    """A Kaggle-layout VinDr-CXR root; returns image_id -> split (by the id hash)."""
    from cxrbench.data.adapters.vindr import kaggle_split

    ids = {}
    n = 0
    while len({kaggle_split(i) for i in ids}) < 2 or len(ids) < 4:  # ids that land in both splits
        ids[f"{n:032x}"] = None
        n += 1
    names = list(ids)
    a, b, c, d = names[:4]
    rows = [
        [a, "Cardiomegaly", 3, "R10", 20, 40, 60, 56],   # 80 x 60 image
        [a, "Cardiomegaly", 3, "R8", 22, 42, 62, 58],
        [a, "Pleural effusion", 10, "R9", 60, 30, 76, 58],
        [a, "Aortic enlargement", 0, "R9", 35, 10, 45, 20],
        [b, "No finding", 14, "R10", "", "", "", ""],
        [b, "No finding", 14, "R8", "", "", "", ""],
        [c, "Nodule/Mass", 8, "R9", 10, 10, 20, 20],
        [d, "Infiltration", 6, "R9", 8, 8, 24, 24],
    ]
    write_image(root / "train" / f"{a}.png", 80, 60, [(20, 40, 40, 16), (60, 30, 16, 28)])
    write_image(root / "train" / f"{b}.png", 40, 40)
    write_image(root / "train" / f"{c}.jpg", 40, 40)
    write_image(root / "train" / f"{d}.png", 32, 32, [(8, 8, 16, 16)], bits=16)
    write_csv(root / "train.csv", VINDR_HEADER, rows)
    return {i: kaggle_split(i) for i in (a, b, c, d)}


def make_vindr_physionet(root: Path) -> Path:
    """A PhysioNet-layout VinDr-CXR root: two training and two test images, image labels."""
    ann = root / "annotations"
    write_csv(ann / "annotations_train.csv", VINDR_PHYSIONET_HEADER, [
        ["t1", "R1", 4, 4, 20, 12, "Pneumothorax"],
        ["t1", "R2", "", "", "", "", "No finding"],
        ["t2", "R3", "", "", "", "", "No finding"],
    ])
    write_csv(ann / "annotations_test.csv", VINDR_PHYSIONET_HEADER, [
        ["s1", "R8", 2, 2, 30, 30, "Edema"],
        ["s2", "R9", "", "", "", "", "No finding"],
    ])
    write_csv(ann / "image_labels_train.csv", VINDR_LABELS_HEADER, [
        ["t1", "R1", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ["t2", "R3", 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
    ])
    for split, image, w, h in (("train", "t1", 32, 16), ("train", "t2", 32, 32), ("test", "s1", 32, 32),
                               ("test", "s2", 32, 32)):
        write_image(root / split / f"{image}.png", w, h)
    return root


# -- CheXpert ----------------------------------------------------------------------------------------

CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]


def chexpert_row(path: str, view: str = "Frontal", **labels: str) -> list[str]:
    values = {k.replace("_", " "): v for k, v in labels.items()}
    return [path, "Female", "68", view, "AP" if view == "Frontal" else "", *(values.get(c, "") for c in CHEXPERT_LABELS)]


def make_chexpert(root: Path) -> Path:
    """CheXpert-v1.0-small (the root: it holds train.csv and valid.csv) inside ``root``, images included."""
    base = root / "CheXpert-v1.0-small"
    train = [
        chexpert_row("CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg", Cardiomegaly="1.0",
                     Pleural_Effusion="1.0", Edema="-1.0"),
        chexpert_row("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", No_Finding="1.0",
                     Support_Devices="1.0"),
        chexpert_row("CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg", "Lateral", No_Finding="1.0"),
        chexpert_row("CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg", Fracture="1.0",
                     Atelectasis="-1.0"),
    ]
    valid = [chexpert_row("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", Lung_Opacity="1.0",
                          Pneumonia="0.0")]
    write_csv(base / "train.csv", CHEXPERT_HEADER, train)
    write_csv(base / "valid.csv", CHEXPERT_HEADER, valid)
    for row in train + valid:
        write_image(root / row[0], 32, 40)
    return base
