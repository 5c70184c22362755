#!/usr/bin/env python3
"""Record how Ultralytics 8.4.190 makes detection boxes from polygon label files, for ember's polygon test
(not run by CI).

Everything runs through the installed package's own code:
- `resample`: `utils/ops.py:resample_segments` on a triangle, a heptagon and a 1003-point circle;
- `segment2box`: `utils/ops.py:segment2box` on polygons inside, outside, across edges and around corners;
- `affine`: label files read by `data/utils.py:verify_image_label`, resampled by `YOLODataset.update_labels_info`,
  then `RandomPerspective` (`apply_segments`, `Instances.clip`, `box_candidates` with area_thr 0.01) with its
  matrix drawn from a seeded `random`; the matrix and scale are recorded, as are the boxes and classes it keeps;
- `mosaic`: four such tiles through `Mosaic._update_labels` and `Mosaic._cat_labels` at recorded pads (one tile
  has a polygon of more than 1000 points, so `Instances.concatenate` resamples the others), then the affine;
- `cutmix`: `CutMix` with one fixed cut area, pasting with and without polygons (ioa 0.01 vs 0.1);
- `datasets`: `YOLODataset` on small folders: all polygons, box and polygon files mixed (`verify_labels` drops
  every polygon), and one file mixing both kinds of line (`verify_image_label` rejects it).

Usage (offline, a few seconds):
    /opt/ultra/bin/python tools/reference/polygon_fixture.py --out tests/fixtures/polygon/polygon.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import random
import tempfile
from pathlib import Path
from types import SimpleNamespace

ULTRALYTICS_VERSION = "8.4.190"

WORK = Path(tempfile.mkdtemp(prefix="ember-polygon-"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = str(WORK / "config")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import ultralytics  # noqa: E402
from ultralytics.data.augment import CutMix, Format, Mosaic, RandomPerspective  # noqa: E402
from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.data.utils import verify_image_label  # noqa: E402
from ultralytics.utils.instance import Instances  # noqa: E402
from ultralytics.utils.ops import resample_segments, segment2box  # noqa: E402

NC = 3


def f32(a) -> list:
    """A float32 array as nested lists of the shortest decimals that read back as the same float32 values."""
    return [f32(x) for x in a] if np.ndim(a) else float(repr(np.float32(a)).removeprefix("np.float32(").rstrip(")"))


def polygon_line(cls: int, points) -> str:
    return " ".join([str(cls)] + [f"{v:.6f}" for p in points for v in p])


def circle(cx: float, cy: float, r: float, n: int, squash: float = 1.0):
    return [(cx + r * math.cos(2 * math.pi * k / n), cy + squash * r * math.sin(2 * math.pi * k / n)) for k in range(n)]


# Label files (normalised): objects near the middle, across the borders, small, concave, and duplicates.
LABELS = {
    "star": "\n".join(
        [
            polygon_line(0, [(0.5 + (0.3 if k % 2 == 0 else 0.12) * math.cos(k * math.pi / 5),
                              0.45 + (0.3 if k % 2 == 0 else 0.12) * math.sin(k * math.pi / 5)) for k in range(10)]),
            polygon_line(1, [(0.02, 0.05), (0.3, 0.02), (0.12, 0.4)]),
            polygon_line(2, circle(0.85, 0.8, 0.14, 24, 0.6)),
        ]
    ),
    "edges": "\n".join(
        [
            polygon_line(1, [(0.0, 0.3), (0.4, 0.0), (1.0, 0.6), (0.6, 1.0), (0.0, 0.9)]),
            polygon_line(0, [(0.7, 0.1), (0.98, 0.12), (0.95, 0.35), (0.8, 0.3), (0.72, 0.2)]),
            polygon_line(2, [(0.1, 0.7), (0.2, 0.72), (0.15, 0.8)]),
            polygon_line(2, [(0.1, 0.7), (0.2, 0.72), (0.15, 0.8)]),  # duplicate line: dropped
        ]
    ),
    "tiny": "\n".join(
        [
            polygon_line(0, [(0.45, 0.45), (0.47, 0.45), (0.47, 0.48), (0.45, 0.47)]),
            polygon_line(1, circle(0.3, 0.6, 0.25, 60)),
        ]
    ),
    "big": "\n".join([polygon_line(2, circle(0.5, 0.5, 0.45, 1100, 0.8)), polygon_line(0, [(0.1, 0.1), (0.3, 0.12), (0.2, 0.3)])]),
}
SIZES = {"star": (200, 150), "edges": (160, 220), "tiny": (240, 240), "big": (180, 120)}


def load_label(root: Path, stem: str) -> dict:
    """`verify_image_label` on a written image/label pair, then `update_labels_info` as a detect dataset."""
    w, h = SIZES[stem]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    im_file, lb_file = root / "images" / f"{stem}.png", root / "labels" / f"{stem}.txt"
    Image.new("RGB", (w, h)).save(im_file)
    lb_file.write_text(LABELS[stem] + "\n")
    im, lb, shape, segments, kpts, nm, nf, ne, nc, msg = verify_image_label(
        (str(im_file), str(lb_file), "", False, NC, 0, 0, False)
    )
    assert im is not None, msg
    label = {
        "im_file": im,
        "ori_shape": shape,
        "cls": lb[:, 0:1],
        "bboxes": lb[:, 1:],
        "segments": segments,
        "keypoints": None,
        "normalized": True,
        "bbox_format": "xywh",
    }
    detect = SimpleNamespace(use_obb=False, use_segments=False, format_class=Format)
    label = YOLODataset.update_labels_info(detect, label)
    label["img"] = np.zeros((h, w, 3), np.uint8)
    return label


def run_affine(labels: dict, seed: int, hyp: dict, size: int) -> dict:
    """`RandomPerspective` on `labels` with `random.seed(seed)`; returns the matrix, scale and kept labels."""
    rp = RandomPerspective(size=(size, size), **hyp)
    drawn = {}
    compute = rp._compute_affine_matrix

    def recording(img, sz):
        m, s = compute(img, sz)
        drawn["M"], drawn["scale"] = m, s
        return m, s

    rp._compute_affine_matrix = recording
    random.seed(seed)
    out = rp(labels)
    inst = out["instances"]
    inst.convert_bbox("xyxy")
    return {
        "seed": seed,
        "hyp": hyp,
        "M": f32(drawn["M"]),
        "scale": drawn["scale"],
        "cls": out["cls"][:, 0].astype(int).tolist(),
        "boxes": f32(inst.bboxes),
    }


HYPS = [
    {"degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0, "perspective": 0.0},
    {"degrees": 30.0, "translate": 0.3, "scale": 0.5, "shear": 10.0, "perspective": 0.0},
    {"degrees": 10.0, "translate": 0.4, "scale": 0.9, "shear": 5.0, "perspective": 0.0005},
]


def affine_cases(root: Path) -> list[dict]:
    cases = []
    for stem in LABELS:
        for k, hyp in enumerate(HYPS):
            for seed in range(4):
                case = run_affine(load_label(root, stem), 100 * k + seed, hyp, 160)
                case.update(stem=stem, image=list(SIZES[stem]))
                cases.append(case)
    return cases


def mosaic_cases(root: Path) -> list[dict]:
    imgsz = 160
    mosaic = Mosaic.__new__(Mosaic)  # only the label steps are used: no dataset needed
    mosaic.imgsz, mosaic.preserve_obb, mosaic.n = imgsz, False, 4
    cases = []
    for k, (xc, yc) in enumerate([(100, 130), (200, 90), (160, 160), (85, 230)]):
        stems = ["star", "edges", "big", "tiny"] if k % 2 == 0 else ["tiny", "star", "edges", "star"]
        tiles, pads = [], []
        for i, stem in enumerate(stems):
            w, h = SIZES[stem]
            s = imgsz
            # Mosaic.get_params' n=4 layout, so the pads are those the canvas really uses.
            if i == 0:
                x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
                x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
            elif i == 1:
                x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s * 2), yc
                x1b, y1b = 0, h - (y2a - y1a)
            elif i == 2:
                x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s * 2, yc + h)
                x1b, y1b = w - (x2a - x1a), 0
            else:
                x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s * 2), min(s * 2, yc + h)
                x1b, y1b = 0, 0
            padw, padh = x1a - x1b, y1a - y1b
            tiles.append(Mosaic._update_labels(load_label(root, stem), padw, padh, (h, w)))
            pads.append([padw, padh])
        final = mosaic._cat_labels(tiles)
        final["img"] = np.zeros((2 * imgsz, 2 * imgsz, 3), np.uint8)
        mosaic_boxes = f32(final["instances"].bboxes)
        for j, hyp in enumerate(HYPS):
            case = run_affine(copy.deepcopy(final), 1000 + 10 * k + j, hyp, imgsz)
            case.update(stems=stems, images=[list(SIZES[s]) for s in stems], pads=pads, imgsz=imgsz)
            case["mosaic_boxes"] = mosaic_boxes
            case["mosaic_cls"] = final["cls"][:, 0].astype(int).tolist()
            case["mosaic_points"] = int(final["instances"].segments.shape[1])
            cases.append(case)
    return cases


class OneImage:
    """The dataset CutMix draws its partner from: always the same labels."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return 1

    def get_image_and_label(self, index):
        return copy.deepcopy(self.labels)


def cutmix_cases() -> list[dict]:
    w = h = 100
    area = (40, 40, 80, 80)
    # Partner boxes inside the area by 50%, 7.5% and 0.5% of their area.
    other_boxes = np.array([[60, 60, 100, 80], [77, 60, 117, 80], [79.8, 40, 119.8, 80]], np.float32)
    cases = []
    for with_polygons in (True, False):
        def make(boxes):
            segs = (
                np.stack([resample_segments([np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32)])[0] for b in boxes])
                if with_polygons
                else np.zeros((0, 1000, 2), np.float32)
            )
            return {
                "img": np.zeros((h, w, 3), np.uint8),
                "cls": np.arange(len(boxes), dtype=np.float32)[:, None] % NC,
                "instances": Instances(boxes.copy(), segs, None, bbox_format="xyxy", normalized=False),
            }

        main_boxes = np.array([[0, 0, 20, 20]], np.float32)
        cutmix = CutMix(OneImage(make(other_boxes)), p=1.0, num_areas=1)
        cutmix._rand_bbox = lambda width, height: area
        out = cutmix(make(main_boxes))
        cases.append(
            {
                "polygons": with_polygons,
                "size": [w, h],
                "area": list(area),
                "main": f32(main_boxes),
                "other": f32(other_boxes),
                "cls": out["cls"][:, 0].astype(int).tolist(),
                "boxes": f32(out["instances"].bboxes),
            }
        )
    return cases


def resample_cases() -> list[dict]:
    shapes = [
        [(0.1, 0.1), (0.9, 0.2), (0.4, 0.8)],
        [(0.5 + 0.3 * math.cos(k), 0.5 + 0.2 * math.sin(k)) for k in range(7)],
        circle(0.5, 0.5, 0.4, 1003),  # more than 1000 points: resampled to 1004
    ]
    cases = []
    for pts in shapes:
        seg = np.array(pts, np.float32)
        n = 1000 if len(pts) <= 1000 else len(pts) + 1
        out = resample_segments([seg.copy()], n)[0]
        cases.append({"points": f32(seg), "n": n, "out": f32(out)})
    return cases


def segment2box_cases() -> list[dict]:
    w, h = 100, 80
    polys = [
        [(10, 10), (50, 12), (30, 60)],  # inside
        [(-30, -20), (-5, -10), (-20, -2)],  # outside
        [(-20, 10), (40, 20), (30, 50)],  # across the left border
        [(-20, -20), (30, -10), (10, 30)],  # around the top-left corner
        [(-10, -10), (110, -10), (110, 90), (-10, 90)],  # the whole image
        [(50, -30), (130, 40), (50, 110), (-30, 40)],  # a diamond cut by every border, corners outside
        [(20, 70), (60, 95), (90, 70), (60, 75)],  # concave, across the bottom
        [(0, 0), (40, 0), (40, 30), (0, 30)],  # on the borders
        [(60, 60), (140, 60), (140, 120), (60, 120)],  # around the bottom-right corner
        [(-5.5, 20.25), (30.75, -3.5), (45.125, 40.5)],  # fractional crossings
    ]
    out = []
    for p in polys:
        seg = np.array(p, np.float32)
        out.append({"points": f32(seg), "w": w, "h": h, "box": f32(segment2box(seg, w, h))})
    return out


def dataset_cases(root: Path) -> list[dict]:
    tri = polygon_line(1, [(0.1, 0.1), (0.5, 0.15), (0.3, 0.6)])
    quad = polygon_line(0, [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)])
    layouts = {
        "all_polygons": {"a": tri + "\n" + quad, "b": quad, "c": ""},
        "mixed_files": {"a": tri + "\n" + quad, "b": "2 0.5 0.5 0.2 0.2", "c": quad},
        "mixed_lines": {"a": tri + "\n2 0.5 0.5 0.2 0.2", "b": quad, "c": tri},
    }
    cases = []
    for name, files in layouts.items():
        folder = root / name
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir(parents=True)
        for stem, text in files.items():
            Image.new("RGB", (64, 48)).save(folder / "images" / f"{stem}.png")
            (folder / "labels" / f"{stem}.txt").write_text(text + "\n")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ds = YOLODataset(
                img_path=str(folder / "images"),
                imgsz=64,
                augment=False,
                data={"names": {i: str(i) for i in range(NC)}, "channels": 3},
                task="detect",
            )
        kept = {Path(lb["im_file"]).stem: [len(lb["cls"]), len(lb["segments"])] for lb in ds.labels}
        cases.append({"name": name, "files": files, "kept": kept})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    assert ultralytics.__version__ == ULTRALYTICS_VERSION, ultralytics.__version__
    fixture = {
        "ultralytics": ULTRALYTICS_VERSION,
        "labels": LABELS,
        "resample": resample_cases(),
        "segment2box": segment2box_cases(),
        "affine": affine_cases(WORK / "affine"),
        "mosaic": mosaic_cases(WORK / "mosaic"),
        "cutmix": cutmix_cases(),
        "datasets": dataset_cases(WORK / "datasets"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture))
    kept = sum(len(c["boxes"]) for c in fixture["affine"] + fixture["mosaic"])
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB): {kept} boxes after the affine")


if __name__ == "__main__":
    main()
