#!/usr/bin/env python3
"""Reference for `ember predict`: Ultralytics 8.4.190's predictor on real photos, for tests/it/predict_coco8.rs.

The weights are tests/fixtures/val/yolo26n_coco8_160.safetensors (yolo26n trained by Ultralytics on coco8, see
val_fixture.py), loaded into Ultralytics' own DetectionModel and run through `YOLO.predict` as a user runs it
(`rect=True`, so each batch is letterboxed to the smallest stride rectangle when its images share one shape, else to
the square). Three runs:
  * one image at a time (8.4.190's predict default, batch=1): every image gets its own rectangle;
  * batch=2 over two photos of one shape (a rectangle), then two of different shapes (the square);
  * one at a time with nms=False: the NMS-free one-to-one branch.
Written: tests/fixtures/predict/yolo26n_coco8_320.json, per run and image the network input shape (h, w) and every
detection `[x1, y1, x2, y2, score, class]` in original-image pixels, in the predictor's order.

Usage: /opt/ultra/bin/python tools/reference/predict_fixture.py [DATASETS_DIR]   (offline; run by hand, never by CI)
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TMP = Path(tempfile.mkdtemp(prefix="ember_predict_"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = str(TMP / "config")
(TMP / "config" / "Ultralytics").mkdir(parents=True)
import matplotlib  # noqa: E402

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
shutil.copy(FONT, TMP / "config" / "Ultralytics" / "Arial.ttf")

from safetensors.torch import load_file  # noqa: E402

import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.engine.predictor import BasePredictor  # noqa: E402

assert ultralytics.__version__ == "8.4.190", ultralytics.__version__

IMGSZ = 320
CONF = 0.25
WEIGHTS = "tests/fixtures/val/yolo26n_coco8_160.safetensors"
DATASETS = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets").resolve()
ONE_AT_A_TIME = [
    "coco8/images/train/000000000009.jpg",
    "coco8/images/train/000000000025.jpg",
    "coco8/images/val/000000000036.jpg",
    "coco8/images/val/000000000042.jpg",
    "coco8/images/val/000000000049.jpg",
    "coco8/images/val/000000000061.jpg",
]
# Two 480x640 photos (one rectangle), then 640x481 and 478x640 (the square).
BATCHED = [
    "coco128/images/train2017/000000000009.jpg",
    "coco128/images/train2017/000000000089.jpg",
    "coco8/images/val/000000000036.jpg",
    "coco8/images/val/000000000042.jpg",
]

# The network input of every batch, as the predictor preprocessed it.
inputs = []
preprocess = BasePredictor.preprocess


def recording_preprocess(self, im):
    out = preprocess(self, im)
    inputs.append(list(out.shape[2:]))
    return out


BasePredictor.preprocess = recording_preprocess

model = YOLO("yolo26n.yaml")
state = {k: v.float() for k, v in load_file(str(ROOT / WEIGHTS)).items()}
model.model.load_state_dict(state, strict=True)


def run(name, images, batch, nms):
    # A .txt list, as `ember predict --source list.txt` takes it (a Python list would be decoded by PIL and predicted
    # as one batch).
    listing = TMP / f"{name}.txt"
    listing.write_text("".join(f"{DATASETS / p}\n" for p in images))
    inputs.clear()
    results = model.predict(str(listing), imgsz=IMGSZ, conf=CONF, batch=batch, nms=nms, device="cpu", verbose=False,
                            save=False)
    per_batch = [shape for shape in inputs for _ in range(batch)]
    assert len(results) == len(images) == len(per_batch), (len(results), len(images), len(per_batch))
    out = []
    for path, r, shape in zip(images, results, per_batch):
        boxes = r.boxes
        rows = [[*b, float(c), float(k)] for b, c, k in zip(boxes.xyxy.tolist(), boxes.conf, boxes.cls)]
        out.append({"path": path, "input": shape, "detections": rows})
        scores = [row[4] for row in rows]
        margin = min((abs(s - CONF) for s in scores), default=1.0)
        print(f"{name}: {path} input {shape}: {len(rows)} detections, closest score to conf {margin:.4f}")
    return {"name": name, "batch": batch, "nms": nms, "images": out}


runs = [run("one_at_a_time", ONE_AT_A_TIME, 1, True), run("batched", BATCHED, 2, True),
        run("nms_free", ONE_AT_A_TIME[:3], 1, False)]
fixture = {"ultralytics": ultralytics.__version__, "weights": WEIGHTS, "imgsz": IMGSZ, "conf": CONF, "runs": runs}
target = ROOT / "tests" / "fixtures" / "predict" / "yolo26n_coco8_320.json"
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(json.dumps(fixture, indent=1))
print(f"wrote {target}")
shutil.rmtree(TMP, ignore_errors=True)
