#!/usr/bin/env python3
"""Ultralytics 8.4.190 as a client of ember's files (run by hand, never by CI).

1. `ember export --format onnx` output run by Ultralytics: `YOLO(best.onnx).val(...)` and `.predict(...)`.
2. `ember export --format safetensors` output loaded into Ultralytics' own DetectionModel with a strict
   `load_state_dict`, then validated by Ultralytics.
Prints both tools' mAP50-95 on the same weights. ember's val uses rectangular batches; an ONNX model has a fixed
square input, so Ultralytics validates it on square letterboxed images: small differences come from that.

Usage:
  ember export --weights best.safetensors --format onnx --imgsz 640
  ember export --weights best.safetensors --format safetensors
  YOLO_OFFLINE=1 python tools/reference/ultralytics_reads_ember.py --onnx best.onnx \
      --safetensors best.safetensors --model yolo26n.yaml --data coco8.yaml --imgsz 640 [--source images/]
"""

import argparse
import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx")
    ap.add_argument("--safetensors")
    ap.add_argument("--model", default="yolo26n.yaml", help="the architecture of the SafeTensors weights")
    ap.add_argument("--data", default="coco8.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--source", help="images for a predict run of the ONNX model")
    args = ap.parse_args()
    results = {}
    if args.onnx:
        onnx = YOLO(args.onnx, task="detect")
        metrics = onnx.val(data=args.data, imgsz=args.imgsz, batch=1, device="cpu", plots=False)
        results["ultralytics val of ember's ONNX"] = metrics.box.map
        if args.source:
            for r in onnx.predict(args.source, imgsz=args.imgsz, device="cpu", save=False):
                print(r.path, len(r.boxes), "boxes")
    if args.safetensors:
        with safe_open(args.safetensors, "pt") as f:
            meta = f.metadata() or {}
        header = json.loads(meta.get("ember", "{}"))
        sd = {k: v for k, v in load_file(args.safetensors).items() if not k.startswith("train.")}
        nc = sd["model.23.cv3.0.2.weight"].shape[0] if "model.23.cv3.0.2.weight" in sd else header.get("nc", 80)
        model = DetectionModel(args.model, nc=nc, verbose=False)
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        model.names = dict(enumerate(header.get("names", [f"class{i}" for i in range(nc)])))
        yolo = YOLO(args.model, task="detect")
        yolo.model = model
        metrics = yolo.val(data=args.data, imgsz=args.imgsz, batch=16, device="cpu", plots=False)
        results["ultralytics val of ember's SafeTensors"] = metrics.box.map
    for k, v in results.items():
        print(f"{k}: mAP50-95 {v:.4f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
