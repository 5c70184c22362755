#!/usr/bin/env python3
"""Build ember's MuSGD parity fixture from Ultralytics' own optimizer (not run by CI).

A conv-shaped weight [4, 2, 3, 3], a tall matrix [6, 3] and a bias [4] take three steps of Ultralytics'
`MuSGD(muon=0.2, sgd=1.0)` with the groups its trainer builds (matrices and filters in a Muon group with weight
decay, the bias in a plain Nesterov-SGD group without). The gradients are those of loss = sum(p * c) for fixed
c, so they are the same at every step and ember can recompute them exactly.

Ultralytics runs the Newton-Schulz iteration in bfloat16 on the GPU; ember runs it in float32. To compare the
algorithm rather than bfloat16 rounding, the reference is computed with `Tensor.bfloat16` mapped to float32.

Usage (offline):
    YOLO_OFFLINE=1 /work/venv/bin/python tools/reference/musgd_fixture.py --out tests/fixtures/optim/musgd.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch

import ultralytics
from ultralytics.optim import MuSGD


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.Tensor.bfloat16 = lambda self: self.float()  # the algorithm in float32, see the docstring
    gen = torch.Generator().manual_seed(0)
    shapes = {"weight": (4, 2, 3, 3), "proj": (6, 3), "bias": (4,)}
    params = {k: torch.randn(s, generator=gen).mul(0.5).requires_grad_() for k, s in shapes.items()}
    coeffs = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    initial = {k: p.detach().clone() for k, p in params.items()}

    lr, momentum, decay = 0.01, 0.9, 5e-4
    common = {"lr": lr, "momentum": momentum, "nesterov": True}
    groups = [
        {"params": [params["weight"], params["proj"]], **common, "weight_decay": decay, "use_muon": True},
        {"params": [params["bias"]], **common, "weight_decay": 0.0},
    ]
    opt = MuSGD(groups, muon=0.2, sgd=1.0)
    steps = []
    for _ in range(3):
        opt.zero_grad()
        sum((params[k] * coeffs[k]).sum() for k in shapes).backward()
        opt.step()
        steps.append({k: p.detach().flatten().tolist() for k, p in params.items()})

    out = {
        "ultralytics": ultralytics.__version__,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": decay,
        "shapes": {k: list(s) for k, s in shapes.items()},
        "initial": {k: v.flatten().tolist() for k, v in initial.items()},
        "grad": {k: v.flatten().tolist() for k, v in coeffs.items()},
        "steps": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
