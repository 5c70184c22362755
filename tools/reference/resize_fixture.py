#!/usr/bin/env python3
"""Reference for ember's image resizing (src/data/resize.rs): OpenCV's `cv2.resize(..., INTER_LINEAR)`, which
Ultralytics 8.4.190 resizes with (`load_image`, `LetterBox`), on coco8 photos at sizes up and down, including
non-integer ratios and Ultralytics' exact halving. Written: tests/fixtures/resize/opencv_linear.json, per case the
photo, the size, and a 64-bit FNV-1a hash of the RGB bytes (row-major) with their sum.

Usage: /opt/ultra/bin/python tools/reference/resize_fixture.py [DATASETS_DIR]   (run by hand, never by CI)
"""

import json
import random
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets").resolve()


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


random.seed(0)
cases = []
for path in sorted((DATASETS / "coco8" / "images").glob("*/*.jpg")):
    image = cv2.imread(str(path))[:, :, ::-1]
    h0, w0 = image.shape[:2]
    sizes = [(w0 // 2, h0 // 2), (round(w0 * 0.5), round(h0 * 0.5) + 1), (161, 97)]
    sizes += [(random.randint(16, 900), random.randint(16, 900)) for _ in range(2)]
    for w, h in sizes:
        out = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        raw = out.tobytes()
        cases.append({"path": str(path.relative_to(DATASETS)), "size": [w, h], "fnv1a64": f"{fnv1a64(raw):016x}",
                      "sum": int(out.sum())})
fixture = {"opencv": cv2.__version__, "cases": cases}
target = ROOT / "tests" / "fixtures" / "resize" / "opencv_linear.json"
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(json.dumps(fixture, indent=1))
print(f"wrote {len(cases)} cases to {target}")
