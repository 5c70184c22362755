#!/usr/bin/env python3
"""Fingerprints of the pixels OpenCV (libjpeg-turbo, as Ultralytics loads images) decodes from the coco8 photos,
for ember's test that its JPEG decoding matches bit for bit (not run by CI).

Each image: width, height, the sum of its RGB bytes and their 64-bit FNV-1a hash (row-major RGB, upright).

Usage:
    /work/venv/bin/python tools/reference/jpeg_fixture.py --data /work/shared/datasets/coco8 \
        --out tests/fixtures/jpeg/opencv_coco8.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    arr = np.frombuffer(data, dtype=np.uint8)
    # Python loop over ~1M bytes per image is slow but fine for 8 images.
    for b in arr.tolist():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = {"opencv": cv2.__version__, "images": {}}
    for path in sorted(args.data.glob("images/*/*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        data = np.ascontiguousarray(rgb).tobytes()
        rel = path.relative_to(args.data).as_posix()
        out["images"][rel] = {"width": rgb.shape[1], "height": rgb.shape[0], "sum": int(rgb.sum()), "fnv1a64": f"{fnv1a64(data):016x}"}
        print(rel, out["images"][rel])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
