#!/usr/bin/env python3
"""Convert an Ultralytics detection checkpoint (.pt) into a SafeTensors file for `ember train --weights`.

ember reads `.pt` files itself (src/model/pt/); this script remains for checking that reader against torch's
own unpickling, and for checkpoints the reader refuses.

The tensor names stay Ultralytics' state_dict keys (`model.0.conv.weight`, ...), which is what ember's
loader expects. Tensors keep the checkpoint's precision (Ultralytics saves fp16) unless --float32; ember
reads f16/bf16/f32 alike. Needs torch, safetensors and ultralytics (to unpickle the model object).

Usage: python tools/reference/model_convert.py yolo26n.pt [yolo26n.safetensors] [--float32]
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--float32", action="store_true", help="store every float tensor as f32")
    args = ap.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]) if isinstance(ckpt, dict) else ckpt
    sd = model.state_dict()
    if args.float32:
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    sd = {k: v.detach().contiguous() for k, v in sd.items()}
    nc = getattr(model.model[-1], "nc", None) if hasattr(model, "model") else None
    meta = {"nc": str(nc or ""), "source": Path(args.checkpoint).name}
    yaml = getattr(model, "yaml", None)
    if isinstance(yaml, dict) and yaml.get("yaml_file"):
        meta["yaml_file"] = str(yaml["yaml_file"])
    out = args.output or str(Path(args.checkpoint).with_suffix(".safetensors"))
    save_file(sd, out, metadata=meta)
    print(f"{args.checkpoint} -> {out}: {len(sd)} tensors, nc={meta['nc']}")


if __name__ == "__main__":
    main()
