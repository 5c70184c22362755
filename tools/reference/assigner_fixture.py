#!/usr/bin/env python3
"""What Ultralytics' TaskAlignedAssigner assigns on the loss fixtures' predictions, for ember's assigner tests.

Not run by CI. Needs Ultralytics 8.4.190 (CPU torch) and safetensors; reads the fixtures loss_fixtures.py wrote:

    YOLO_OFFLINE=1 /opt/ultra/bin/python tools/reference/assigner_fixture.py

For each fixture (yolov8n, yolo26n, synthetic_v8, synthetic_e2e), each case with labels and each head branch, the
stored raw predictions go through the criterion's own preprocessing and decoding (`preprocess`, `bbox_decode`)
and its assigner (topk 10, or 7 with topk2 1 for YOLO26's one-to-one branch), exactly as
`v8DetectionLoss.get_assigned_targets_and_loss` calls it. Output: tests/fixtures/loss/<name>_assigned.safetensors
with, per `<case>.<branch>`: `fg` (bool as u8, [b, A]), `gt_idx` (i64, [b, A]), `labels` (i64, [b, A]),
`scores` (the target score of each anchor, target_scores summed over classes, [b, A]) and `boxes` ([b, A, 4],
pixel xyxy).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch
from safetensors.torch import load_file, save_file

from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner, make_anchors

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "loss"


class _Head(torch.nn.Module):
    def __init__(self, nc, reg_max, strides):
        super().__init__()
        self.nc, self.reg_max, self.stride = nc, reg_max, torch.tensor(strides)


class _Model(torch.nn.Module):
    def __init__(self, nc, reg_max, strides):
        super().__init__()
        from ultralytics.cfg import get_cfg

        self.model = torch.nn.ModuleList([_Head(nc, reg_max, strides)])
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.args = get_cfg()


def batches(t, cases):
    batch_idx, cls, boxes = t["batch_idx"], t["cls"], t["bboxes"]
    out = {"full": dict(batch_idx=batch_idx, cls=cls.view(-1, 1), bboxes=boxes)}
    if "background" in cases:
        keep = batch_idx != 1
        out["background"] = dict(batch_idx=batch_idx[keep], cls=cls[keep].view(-1, 1), bboxes=boxes[keep])
    return out


def assign(crit, boxes, scores, feats_hw, batch):
    """The assignment `get_assigned_targets_and_loss` computes, from raw `[b, c, A]` predictions."""
    pred_distri, pred_scores = boxes.permute(0, 2, 1).contiguous(), scores.permute(0, 2, 1).contiguous()
    feats = [torch.zeros(1, 1, h, w) for h, w in feats_hw]
    anchor_points, stride_tensor = make_anchors(feats, crit.stride, 0.5)
    bs = pred_scores.shape[0]
    imgsz = torch.tensor(feats_hw[0], dtype=pred_scores.dtype) * crit.stride[0]
    targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
    targets = crit.preprocess(targets, bs, scale_tensor=imgsz[[1, 0, 1, 0]])
    gt_labels, gt_bboxes = targets.split((1, 4), 2)
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
    pred_bboxes = crit.bbox_decode(anchor_points, pred_distri)
    labels, tboxes, tscores, fg, gt_idx = crit.assigner(
        pred_scores.detach().sigmoid(),
        (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype),
        anchor_points * stride_tensor,
        gt_labels,
        gt_bboxes,
        mask_gt,
    )
    return {
        "fg": fg.to(torch.uint8).contiguous(),
        "gt_idx": gt_idx.to(torch.int64).contiguous(),
        "labels": labels.to(torch.int64).contiguous(),
        "scores": tscores.sum(-1).float().contiguous(),
        "boxes": tboxes.float().contiguous(),
    }


def main():
    for name in ("yolov8n", "yolo26n", "synthetic_v8", "synthetic_e2e"):
        meta = json.loads((FIXTURES / f"{name}.json").read_text())
        t = load_file(str(FIXTURES / f"{name}.safetensors"))
        crit = v8DetectionLoss(_Model(meta["nc"], meta["reg_max"], meta["strides"]))
        e2e = "one2one.boxes" in t
        branch_topk = {"one2many": (10, None), "one2one": (7, 1)} if e2e else {"main": (10, None)}
        out = {}
        for cname, batch in batches(t, meta["cases"]).items():
            for branch, (topk, topk2) in branch_topk.items():
                crit.assigner = TaskAlignedAssigner(
                    topk=topk, num_classes=meta["nc"], alpha=0.5, beta=6.0, stride=crit.stride.tolist(), topk2=topk2
                )
                got = assign(crit, t[f"{branch}.boxes"], t[f"{branch}.scores"], meta["feature_sizes"], batch)
                for key, v in got.items():
                    out[f"{cname}.{branch}.{key}"] = v
                print(name, cname, branch, "fg", int(got["fg"].sum()), "score sum", float(got["scores"].sum()))
        save_file(out, str(FIXTURES / f"{name}_assigned.safetensors"))
    print("wrote", FIXTURES)


if __name__ == "__main__":
    sys.exit(main())
