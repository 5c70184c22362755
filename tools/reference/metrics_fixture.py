#!/usr/bin/env python3
"""Build ember's metrics/post-processing parity fixture from Ultralytics' own code (not run by CI).

Inputs: real coco128 labels (converted to pixel corner boxes with each image's size) and synthetic detections made
from them with a fixed seed (jittered boxes, random scores, some wrong classes, duplicates, false positives, missed
objects). Everything is pushed through Ultralytics 8.4's metric code (`box_iou`, `BaseValidator.match_predictions`,
`DetMetrics`/`ap_per_class`, `ConfusionMatrix`) and NMS code (`non_max_suppression`, `Detect.postprocess`), and both
inputs and Ultralytics' outputs are written to tests/fixtures/metrics/ultralytics_parity.json.

Usage (offline):
    YOLO_OFFLINE=1 /work/venv/bin/python tools/reference/metrics_fixture.py \
        --data /work/shared/datasets/coco128 --out tests/fixtures/metrics/ultralytics_parity.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np
import torch
import torchvision  # noqa: F401  imported so that non_max_suppression uses torchvision.ops.nms, as in real runs
import yaml
from PIL import Image

import ultralytics
from ultralytics.models.yolo.detect.val import DetectionValidator
from ultralytics.nn.modules.head import Detect
from ultralytics.utils import nms as unms
from ultralytics.utils.metrics import ConfusionMatrix, DetMetrics, box_iou

SEED = 20260128
QUANT = 16.0  # predicted box coordinates are multiples of 1/16 px (exact in f32, short in JSON)
SCORE_DEN = float(2**20)  # scores are k / 2^20, all distinct


def f32_list(a) -> list[float]:
    """Float32 values as the float64 numbers they are exactly (round-trip safe through f64 -> f32)."""
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def load_names() -> list[str]:
    cfg = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco128.yaml"
    names = yaml.safe_load(cfg.read_text())["names"]
    return [names[i] for i in range(len(names))]


def load_images(data: Path, limit: int) -> list[dict]:
    images = []
    for lf in sorted((data / "labels" / "train2017").glob("*.txt"))[:limit]:
        im = data / "images" / "train2017" / (lf.stem + ".jpg")
        w, h = Image.open(im).size
        rows = [r.split() for r in lf.read_text().splitlines() if r.strip()]
        cls = np.array([int(r[0]) for r in rows], dtype=np.int64)
        xywh = np.array([[float(v) for v in r[1:5]] for r in rows], dtype=np.float32).reshape(-1, 4)
        # as the validator: xywh2xyxy on normalised boxes, then scale by (w, h, w, h), all in float32
        xyxy = np.empty_like(xywh)
        xyxy[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
        xyxy[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
        xyxy = xyxy * np.array([w, h, w, h], dtype=np.float32)
        images.append({"file": im.name, "width": w, "height": h, "gt_cls": cls, "gt_xyxy": xyxy.astype(np.float32)})
    return images


def make_predictions(images: list[dict], nc: int, rng: np.random.Generator) -> None:
    used_scores: set[int] = set()

    def score(lo: float, hi: float) -> float:
        while True:
            k = int(rng.integers(int(lo * SCORE_DEN), int(hi * SCORE_DEN)))
            if k not in used_scores:
                used_scores.add(k)
                return k / SCORE_DEN

    for im in images:
        w, h = im["width"], im["height"]
        boxes, scores, classes = [], [], []
        for b, c in zip(im["gt_xyxy"].astype(np.float64), im["gt_cls"]):
            if rng.random() < 0.12:  # missed object
                continue
            bw, bh = b[2] - b[0], b[3] - b[1]
            for dup in range(1 + (rng.random() < 0.15)):  # sometimes a duplicate
                jit = rng.normal(0, 0.06 + 0.06 * dup, 4) * np.array([bw, bh, bw, bh])
                nb = b + jit
                nb[[0, 2]] = np.clip(np.sort(nb[[0, 2]]), 0, w)
                nb[[1, 3]] = np.clip(np.sort(nb[[1, 3]]), 0, h)
                cc = int(c) if rng.random() < 0.9 else int(rng.integers(nc))
                boxes.append(nb)
                scores.append(score(0.05, 0.99) if dup == 0 else score(0.001, 0.6))
                classes.append(cc)
        for _ in range(int(rng.integers(0, 6))):  # false positives
            x1, y1 = rng.random() * w * 0.9, rng.random() * h * 0.9
            bw, bh = rng.uniform(8, w - x1), rng.uniform(8, h - y1)
            boxes.append(np.array([x1, y1, min(x1 + bw, w), min(y1 + bh, h)]))
            scores.append(score(0.001, 0.7))
            classes.append(int(rng.integers(nc)) if rng.random() < 0.5 else int(rng.choice(im["gt_cls"])) if len(im["gt_cls"]) else 0)
        boxes = np.round(np.array(boxes, dtype=np.float64).reshape(-1, 4) * QUANT) / QUANT
        order = np.argsort(-np.array(scores), kind="stable")  # NMS output order
        im["pred_xyxy"] = boxes[order].astype(np.float32)
        im["pred_conf"] = np.array(scores, dtype=np.float32)[order]
        im["pred_cls"] = np.array(classes, dtype=np.int64)[order]


def ultralytics_metrics(images: list[dict], names: list[str]) -> dict:
    v = DetectionValidator.__new__(DetectionValidator)  # only `iouv` is needed by match_predictions
    v.iouv = torch.linspace(0.5, 0.95, 10)
    metrics = DetMetrics(names={i: n for i, n in enumerate(names)})
    cms = {0.25: ConfusionMatrix(names={i: n for i, n in enumerate(names)}),
           0.001: ConfusionMatrix(names={i: n for i, n in enumerate(names)})}
    tps = []
    for im in images:
        gt_b, gt_c = torch.from_numpy(im["gt_xyxy"]), torch.from_numpy(im["gt_cls"]).float()
        pb, pc, pconf = torch.from_numpy(im["pred_xyxy"]), torch.from_numpy(im["pred_cls"]).float(), torch.from_numpy(im["pred_conf"])
        if gt_c.shape[0] == 0 or pc.shape[0] == 0:
            tp = np.zeros((pc.shape[0], 10), dtype=bool)
        else:
            tp = v.match_predictions(pc, gt_c, box_iou(gt_b, pb)).cpu().numpy()
        tps.append(tp)
        cls = gt_c.numpy()
        metrics.update_stats({
            "tp": tp, "target_cls": cls, "target_img": np.unique(cls),
            "conf": pconf.numpy() if len(pc) else np.zeros(0), "pred_cls": pc.numpy() if len(pc) else np.zeros(0),
            "im_name": im["file"],
        })
        for conf, cm in cms.items():
            cm.process_batch({"bboxes": pb, "conf": pconf, "cls": pc}, {"bboxes": gt_b, "cls": gt_c}, conf=conf)
    metrics.process()
    box = metrics.box
    pf = "%22s" + "%11i" * 2 + "%11.3g" * 4
    lines = [("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)")]
    lines.append(pf % ("all", len(images), metrics.nt_per_class.sum(), *metrics.mean_results()))
    for i, c in enumerate(metrics.ap_class_index if len(names) > 1 else []):  # as print_results: only if nc > 1
        lines.append(pf % (names[c], metrics.nt_per_image[c], metrics.nt_per_class[c], *metrics.class_result(i)))
    return {
        "tp": [t.astype(int).tolist() for t in tps],
        "mp": float(box.mp), "mr": float(box.mr), "map50": float(box.map50), "map75": float(box.map75),
        "map": float(box.map), "fitness": float(metrics.fitness),
        "ap_class_index": [int(c) for c in box.ap_class_index],
        "p": [float(x) for x in box.p], "r": [float(x) for x in box.r], "f1": [float(x) for x in box.f1],
        "all_ap": [[float(x) for x in row] for row in box.all_ap],
        "nt_per_class": [int(x) for x in metrics.nt_per_class], "nt_per_image": [int(x) for x in metrics.nt_per_image],
        "table": "\n".join(lines),
        "confusion_conf_0.25": cms[0.25].matrix.astype(int).tolist(),
        "confusion_conf_0.001": cms[0.001].matrix.astype(int).tolist(),
    }


def nms_cases(rng: np.random.Generator) -> dict:
    """Random clustered raw predictions (1, 4 + nc, anchors) through non_max_suppression and Detect.postprocess."""
    nc, anchors = 5, 600
    centers = rng.uniform(40, 600, (25, 2))
    k = rng.integers(0, 25, anchors)
    xy = centers[k] + rng.normal(0, 3, (anchors, 2))
    wh = rng.uniform(20, 120, (25, 2))[k] * rng.uniform(0.8, 1.25, (anchors, 2))
    boxes = np.round(np.concatenate([xy, wh], 1) * QUANT) / QUANT  # xywh
    # mostly low scores, all distinct: torch leaves the order of equal scores unspecified
    k = np.floor(rng.random(anchors * nc) ** 3 * SCORE_DEN).astype(np.int64)
    order = np.argsort(k, kind="stable")
    ks = k[order]
    for i in range(1, len(ks)):
        ks[i] = max(ks[i], ks[i - 1] + 1)
    k[order] = ks
    scores = (k / SCORE_DEN).reshape(anchors, nc)
    pred = torch.from_numpy(np.concatenate([boxes, scores], 1).T.astype(np.float32))[None]  # (1, 4+nc, A)
    out = {"nc": nc, "anchors": anchors, "preds": f32_list(pred[0]), "cases": []}
    settings = [
        dict(conf=0.001, iou=0.7, multi_label=True, agnostic=False, max_det=3000),
        dict(conf=0.25, iou=0.7, multi_label=False, agnostic=False, max_det=300),
        dict(conf=0.25, iou=0.45, multi_label=True, agnostic=False, max_det=300),
        dict(conf=0.25, iou=0.5, multi_label=False, agnostic=True, max_det=300),
        dict(conf=0.001, iou=0.7, multi_label=True, agnostic=False, max_det=40),
    ]
    for s in settings:
        r = unms.non_max_suppression(pred.clone(), s["conf"], s["iou"], multi_label=s["multi_label"],
                                     agnostic=s["agnostic"], max_det=s["max_det"])[0]
        out["cases"].append({**s, "kind": "nms", "result": [f32_list(row[:5]) + [int(row[5])] for row in r]})
    # end-to-end: Detect.postprocess (top-k) then the end2end branch of non_max_suppression (conf filter)
    # the one-to-one head decodes xyxy boxes, so reuse the same numbers as xyxy
    xyxy = pred.clone()
    xyxy[:, 2:4] = xyxy[:, 0:2] + pred[:, 2:4]
    out["e2e_preds"] = f32_list(xyxy[0])
    for conf, max_det, agnostic in [(0.001, 300, False), (0.25, 300, False), (0.25, 50, True), (0.001, 20, False)]:
        head = Detect(nc=nc, end2end=True, ch=(16,))
        head.max_det, head.agnostic_nms = max_det, agnostic
        y = head.postprocess(xyxy.permute(0, 2, 1))
        r = unms.non_max_suppression(y, conf, 0.7, max_det=max_det, end2end=True)[0]
        out["cases"].append({"kind": "e2e", "conf": conf, "max_det": max_det, "agnostic": agnostic,
                             "result": [f32_list(row[:5]) + [int(row[5])] for row in r]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/datasets/coco128")
    ap.add_argument("--out", default="tests/fixtures/metrics/ultralytics_parity.json")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--seed", type=int, default=SEED, help="other seeds: extra checks, not the committed fixture")
    ap.add_argument("--classes", type=int, default=0, help="fold classes to c %% K (0: keep the 80 COCO classes)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    names = load_names()
    images = load_images(Path(a.data), a.images)
    if a.classes:
        names = names[: a.classes]
        for im in images:
            im["gt_cls"] = im["gt_cls"] % a.classes
    make_predictions(images, len(names), rng)
    ref = ultralytics_metrics(images, names)
    fixture = {
        "about": "Generated by tools/reference/metrics_fixture.py from coco128 labels with Ultralytics "
        + ultralytics.__version__ + ", numpy " + np.__version__ + ", torch " + torch.__version__
        + f"; seed {a.seed}, images {a.images}, classes {a.classes or 80}.",
        "names": names,
        "images": [
            {
                "file": im["file"], "width": im["width"], "height": im["height"],
                "gt_cls": im["gt_cls"].tolist(), "gt_xyxy": f32_list(im["gt_xyxy"]),
                "pred_cls": im["pred_cls"].tolist(), "pred_conf": f32_list(im["pred_conf"]),
                "pred_xyxy": f32_list(im["pred_xyxy"]),
            }
            for im in images
        ],
        "ultralytics": ref,
        "nms": nms_cases(rng),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(fixture, separators=(",", ":")))
    n_pred = sum(len(im["pred_cls"]) for im in images)
    n_gt = sum(len(im["gt_cls"]) for im in images)
    print(f"wrote {a.out}: {len(images)} images, {n_gt} labels, {n_pred} predictions, {Path(a.out).stat().st_size} bytes")
    print(ref["table"].split("\n")[0]); print(ref["table"].split("\n")[1])
    print("fitness", ref["fitness"])


if __name__ == "__main__":
    main()
