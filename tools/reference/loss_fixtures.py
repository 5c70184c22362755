#!/usr/bin/env python3
"""Reference loss values from Ultralytics for ember's loss parity tests.

Not run by CI. Needs Ultralytics 8.4.190 (CPU torch) and safetensors:

    YOLO_OFFLINE=1 /work/venv/bin/python tools/reference/loss_fixtures.py

For yolov8n and yolo26n built from their YAML with a fixed seed (no pretrained weights needed), this runs one
real coco8 training batch (the 4 train images, letterboxed to a small square) through the model in train mode,
stores the raw head outputs the loss consumes plus the batch targets, and records Ultralytics' loss components.
Output (tests/fixtures/loss/):
  <model>.safetensors  fp32 predictions + targets
  <model>.json         scalars: imgsz, strides, feature sizes, reg_max, o2m weight, expected losses per case
Cases: "full" (all labels), "background" (image 1's labels dropped: a background image in the batch),
"empty" (no labels at all in the batch).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from ultralytics import __version__ as ULTRA_VERSION
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "loss"
DATA = Path(os.environ.get("COCO8", "/work/shared/datasets/coco8"))
IMGSZ = 160
EPOCHS = 10  # schedule horizon for the end-to-end o2m weight
EPOCH = 3  # the epoch (0-based) whose o2m weight the fixture uses


def letterbox(path: Path, size: int):
    """Resize keeping the aspect ratio, pad to size x size with grey 114, centred. Returns CHW float and (r, pad)."""
    im = Image.open(path).convert("RGB")
    w0, h0 = im.size
    r = min(size / w0, size / h0)
    w, h = round(w0 * r), round(h0 * r)
    im = im.resize((w, h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    px, py = (size - w) // 2, (size - h) // 2
    canvas.paste(im, (px, py))
    arr = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return arr, (w0, h0, r, px, py)


def load_batch():
    imgs, batch_idx, cls, boxes = [], [], [], []
    files = sorted((DATA / "images" / "train").glob("*.jpg"))
    for i, f in enumerate(files):
        arr, (w0, h0, r, px, py) = letterbox(f, IMGSZ)
        imgs.append(arr)
        lab = DATA / "labels" / "train" / (f.stem + ".txt")
        for line in lab.read_text().splitlines():
            if not line.strip():
                continue
            c, x, y, w, h = map(float, line.split())
            # normalised to the letterboxed canvas
            batch_idx.append(i)
            cls.append(c)
            boxes.append([(x * w0 * r + px) / IMGSZ, (y * h0 * r + py) / IMGSZ, w * w0 * r / IMGSZ, h * h0 * r / IMGSZ])
    return (
        torch.from_numpy(np.stack(imgs)),
        torch.tensor(batch_idx, dtype=torch.float32),
        torch.tensor(cls, dtype=torch.float32),
        torch.tensor(boxes, dtype=torch.float32),
    )


def build(cfg: str):
    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=80, verbose=False)
    args = get_cfg()
    args.epochs = EPOCHS
    model.args = args
    model.train()
    return model


def case_batches(batch_idx, cls, boxes):
    full = dict(batch_idx=batch_idx, cls=cls.view(-1, 1), bboxes=boxes)
    keep = batch_idx != 1
    bg = dict(batch_idx=batch_idx[keep], cls=cls[keep].view(-1, 1), bboxes=boxes[keep])
    empty = dict(batch_idx=batch_idx[:0], cls=cls[:0].view(-1, 1), bboxes=boxes[:0])
    return {"full": full, "background": bg, "empty": empty}


def items(d):
    return [float(v) for v in d.values()], list(d.keys())


def diag(crit, preds, batch):
    """Foreground count and target score sum of one v8DetectionLoss call (for debugging parity)."""
    (fg, *_), loss, _ = crit.get_assigned_targets_and_loss(preds, batch)
    return int(fg.sum()), [float(x) for x in loss]


def grad_reference(crit, branches, wrap, batch, k=48):
    """Gradients of the summed loss (what the trainer backpropagates) w.r.t. each stored prediction tensor: the L2
    norm, the sum, and the k entries of largest magnitude (flat index, value)."""
    leaves = {}
    preds = {}
    for bname, p in branches.items():
        b = p["boxes"].detach().clone().requires_grad_(True)
        s = p["scores"].detach().clone().requires_grad_(True)
        leaves[f"{bname}.boxes"], leaves[f"{bname}.scores"] = b, s
        preds[bname] = {"boxes": b, "scores": s, "feats": p["feats"]}
    total, _ = crit(wrap(preds), batch)
    total.sum().backward()
    out = {}
    for key, t in leaves.items():
        g = t.grad.flatten()
        top = g.abs().topk(k).indices
        out[key] = {
            "norm": float(g.norm()),
            "sum": float(g.sum()),
            "index": [int(i) for i in top],
            "value": [float(g[i]) for i in top],
        }
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    img, batch_idx, cls, boxes = load_batch()
    print(f"ultralytics {ULTRA_VERSION}, {img.shape[0]} images, {len(cls)} boxes, imgsz {IMGSZ}")
    cases = case_batches(batch_idx, cls, boxes)

    for name, cfg in (("yolov8n", "yolov8n.yaml"), ("yolo26n", "yolo26n.yaml")):
        model = build(cfg)
        with torch.no_grad():
            preds = model(img)
        head = model.model[-1]
        strides = [float(s) for s in head.stride]
        tensors = {"batch_idx": batch_idx, "cls": cls, "bboxes": boxes}
        meta = {
            "ultralytics": ULTRA_VERSION,
            "model": name,
            "imgsz": [IMGSZ, IMGSZ],
            "batch_size": int(img.shape[0]),
            "nc": 80,
            "reg_max": int(head.reg_max),
            "strides": strides,
            "hyp": {"box": model.args.box, "cls": model.args.cls, "dfl": model.args.dfl},
            "background_image": 1,
            "cases": {},
        }
        crit = model.init_criterion()
        if "one2many" in preds:
            branches = {"one2many": preds["one2many"], "one2one": preds["one2one"]}
            # advance the o2m schedule as the trainer does at the end of each epoch
            for _ in range(EPOCH):
                crit.update()
            meta.update(epoch=EPOCH, epochs=EPOCHS, o2m=crit.o2m, o2o=crit.o2o)
        else:
            branches = {"main": preds}
        feats = next(iter(branches.values()))["feats"]
        meta["feature_sizes"] = [list(f.shape[2:]) for f in feats]
        for bname, p in branches.items():
            tensors[f"{bname}.boxes"] = p["boxes"].float().contiguous()
            tensors[f"{bname}.scores"] = p["scores"].float().contiguous()
        for cname, batch in cases.items():
            total, loss_items = crit(preds, batch)
            vals, names = items(loss_items)
            case = {"total": [float(x) for x in total], "items": vals, "names": names}
            # per-branch components for debugging
            if "one2many" in preds:
                for bname, sub in (("one2many", crit.one2many), ("one2one", crit.one2one)):
                    fg, comp = diag(sub, preds[bname], batch)
                    case[bname] = {"fg": fg, "components": comp}
            else:
                fg, comp = diag(crit, preds, batch)
                case["main"] = {"fg": fg, "components": comp}
            meta["cases"][cname] = case
            print(name, cname, json.dumps(case))
        wrap = (lambda p: p["main"]) if "main" in branches else (lambda p: p)
        meta["grads_background"] = grad_reference(crit, branches, wrap, cases["background"])
        save_file(tensors, str(OUT / f"{name}.safetensors"))
        (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    synthetic()
    print("wrote", OUT)


class _Head(torch.nn.Module):
    def __init__(self, nc, reg_max, strides):
        super().__init__()
        self.nc, self.reg_max, self.stride = nc, reg_max, torch.tensor(strides)


class _Model(torch.nn.Module):
    """The minimum v8DetectionLoss/E2ELoss read from a model: args, parameters (for the device), model[-1]."""

    def __init__(self, nc, reg_max, strides):
        super().__init__()
        self.model = torch.nn.ModuleList([_Head(nc, reg_max, strides)])
        self.p = torch.nn.Parameter(torch.zeros(1))
        args = get_cfg()
        args.epochs = EPOCHS
        self.args = args


def synthetic():
    """Stress case without a model: random predictions on a non-square input (h 96, w 160), 8 classes, crowded,
    nested and tiny boxes (STAL, conflicts between boxes), a background image; yolov8-style DFL and a YOLO26-style
    end-to-end pair."""
    g = torch.Generator().manual_seed(1)
    h, w, nc, bs = 96, 160, 8, 3
    strides = [8.0, 16.0, 32.0]
    sizes = [[h // int(s), w // int(s)] for s in strides]
    na = sum(a * b for a, b in sizes)
    # boxes as pixel cx, cy, w, h, then normalised
    px = [
        (0, 1, 40, 40, 50, 50), (0, 2, 45, 42, 40, 44), (0, 1, 42, 38, 12, 10),  # overlapping + tiny inside
        (0, 3, 120, 50, 60, 70), (0, 4, 118, 52, 20, 30), (0, 5, 10, 88, 6, 6),  # nested, tiny at the border
        (0, 0, 80, 48, 150, 90), (0, 6, 100, 20, 14, 40), (0, 7, 60, 70, 30, 8),
        (2, 0, 30, 30, 20, 20), (2, 3, 130, 60, 50, 30), (2, 3, 135, 62, 44, 28),
    ]
    batch_idx = torch.tensor([b for b, *_ in px], dtype=torch.float32)
    cls = torch.tensor([c for _, c, *_ in px], dtype=torch.float32)
    boxes = torch.tensor([[x / w, y / h, bw / w, bh / h] for *_, x, y, bw, bh in px], dtype=torch.float32)
    cases = case_batches(batch_idx, cls, boxes)
    cases.pop("background")  # image 1 is background in every case here
    feats = [torch.zeros(bs, 1, a, b) for a, b in sizes]
    for name, reg_max in (("synthetic_v8", 16), ("synthetic_e2e", 1)):
        model = _Model(nc, reg_max, strides)
        if reg_max > 1:
            mk = lambda: {  # noqa: E731
                "boxes": torch.randn(bs, 4 * reg_max, na, generator=g) * 2.0,
                "scores": torch.randn(bs, nc, na, generator=g) * 2.0 - 2.0,
                "feats": feats,
            }
            preds = mk()
            crit = __import__("ultralytics.utils.loss", fromlist=["x"]).v8DetectionLoss(model)
            branches = {"main": preds}
        else:
            mk = lambda: {  # noqa: E731
                "boxes": torch.rand(bs, 4, na, generator=g) * 4.0,
                "scores": torch.randn(bs, nc, na, generator=g) * 2.0 - 2.0,
                "feats": feats,
            }
            preds = {"one2many": mk(), "one2one": mk()}
            crit = __import__("ultralytics.utils.loss", fromlist=["x"]).E2ELoss(model)
            for _ in range(EPOCH):
                crit.update()
            branches = preds
        tensors = {"batch_idx": batch_idx, "cls": cls, "bboxes": boxes}
        for bname, p in branches.items():
            tensors[f"{bname}.boxes"] = p["boxes"].contiguous()
            tensors[f"{bname}.scores"] = p["scores"].contiguous()
        meta = {
            "ultralytics": ULTRA_VERSION,
            "model": name,
            "imgsz": [h, w],
            "batch_size": bs,
            "nc": nc,
            "reg_max": reg_max,
            "strides": strides,
            "feature_sizes": sizes,
            "hyp": {"box": model.args.box, "cls": model.args.cls, "dfl": model.args.dfl},
            "background_image": 1,
            "cases": {},
        }
        if reg_max == 1:
            meta.update(epoch=EPOCH, epochs=EPOCHS, o2m=crit.o2m, o2o=crit.o2o)
        for cname, batch in cases.items():
            total, loss_items = crit(preds, batch)
            vals, names = items(loss_items)
            case = {"total": [float(x) for x in total], "items": vals, "names": names}
            subs = (("one2many", crit.one2many), ("one2one", crit.one2one)) if reg_max == 1 else (("main", crit),)
            for bname, sub in subs:
                fg, comp = diag(sub, branches[bname], batch)
                case[bname] = {"fg": fg, "components": comp}
            meta["cases"][cname] = case
            print(name, cname, json.dumps(case))
        wrap = (lambda p: p["main"]) if "main" in branches else (lambda p: p)
        meta["grads_full"] = grad_reference(crit, branches, wrap, cases["full"])
        # Class weights (cls_pw 1.0) from the labels of image 2 only, so most classes have no count and get the
        # mean weight: Ultralytics' DetectionTrainer.compute_class_weights, then normalised to mean 1.
        from types import SimpleNamespace

        from ultralytics.models.yolo.detect.train import DetectionTrainer

        counts = np.bincount(cls[batch_idx == 2].numpy().astype(int), minlength=nc).astype(np.float32)
        cw = DetectionTrainer.compute_class_weights(SimpleNamespace(args=SimpleNamespace(cls_pw=1.0)), counts)
        cw = cw / cw.mean()
        model.class_weights = torch.from_numpy(cw)
        crit_cw = type(crit)(model)
        if reg_max == 1:
            for _ in range(EPOCH):
                crit_cw.update()
        total, loss_items = crit_cw(preds, cases["full"])
        vals, names = items(loss_items)
        meta["class_weights"] = {"counts": counts.tolist(), "cls_pw": 1.0, "weights": [float(x) for x in cw]}
        meta["cases"]["full_cw"] = {"total": [float(x) for x in total], "items": vals, "names": names}
        print(name, "full_cw", json.dumps(meta["cases"]["full_cw"]))
        save_file(tensors, str(OUT / f"{name}.safetensors"))
        (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
