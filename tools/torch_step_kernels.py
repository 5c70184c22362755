#!/usr/bin/env python3
"""Count the aten "kernels" PyTorch eager mode launches for one Ultralytics yolo26n training step.

Reference figure for ember's kernel-count work. Not run by CI. Runs on CPU (no GPU needed) with Ultralytics 8.4.190 and a torch build that has
CUDA kernels compiled in (e.g. 2.15.0+cu132; the cuda_model count reads its dispatcher table):

    YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ultra-cfg \\
        /opt/ultra/bin/python tools/torch_step_kernels.py [--imgsz 64] [--batch 4] [--foreach] [--json OUT]

What it does:
  * builds yolo26n from `yolo26n.yaml` (80 classes, random init, FP32, train mode) and prepares it the way
    `BaseTrainer._setup_train` does: `.dfl` parameters frozen, criterion from `model.init_criterion()` (E2ELoss:
    one-to-many + one-to-one v8DetectionLoss with the task-aligned assigner), SGD from the same grouping as
    `BaseTrainer.build_optimizer(name="SGD", lr=0.01, momentum=0.937)` (3 groups: decayed weights, norm weights,
    biases; nesterov), `ModelEMA`, and a disabled GradScaler (CPU/FP32 trains without AMP);
  * builds one real batch: `--batch` images from coco8 train (cycled), letterboxed to `--imgsz`, labels in the
    collate format the loss expects (batch_idx, cls (n,1), bboxes normalised xywh, img float 0-1);
  * runs one warm-up step (SGD momentum buffers and the EMA's tensor pairs are created on the first step), then
    profiles the second step with torch.profiler (CPU activity), each phase inside a record_function range:
      forward   preds = model(img)
      loss      loss, items = model.loss(batch, preds); loss = loss.sum()      (the trainer's compile path;
                the eager path `model(batch)` runs the same ops)
      backward  scaler.scale(loss).backward()
      optim     BaseTrainer.optimizer_step: unscale_, clip_grad_norm_(max_norm=10), step, update,
                zero_grad, ema.update
    Events are attributed to a phase by time containment (any thread, so autograd-thread work counts too).

Counting (per phase):
  all_aten    every profiler event named aten::*
  leaf        aten::* events with no aten::* child event at all (literal leaves, nothing excluded)
  kernels     the count issue 20 asks for: leaf ops minus ops that launch nothing on CUDA (NO_LAUNCH: views, metadata,
              allocation; aten::to / aten::contiguous leaves are no-ops) minus host reads. "Leaf" here ignores
              NO_LAUNCH descendants: CPU aten::mkldnn_convolution calls aten::empty/resize_ internally and would
              otherwise vanish (leaving the convolutions uncounted).
  cuda_model  a closer model of CUDA dispatch: the outermost aten op on each call path that has a CUDA kernel
              registered (torch._C._dispatch_get_registrations_for_dispatch_key("CUDA")) counts as ONE kernel
              and its CPU-side helpers are not counted (e.g. native_batch_norm's internal zeros/zero_,
              mul(tensor, python scalar)'s scalar-wrapping to/_to_copy/copy_, convolution_backward's casts,
              the per-tensor children of the CPU fallback of an aten::_foreach_* op); ops without a CUDA kernel
              (composites such as clone/_to_copy, or CPU-only ones such as mkldnn_convolution) are counted by the
              `kernels` rule. A real GPU may launch more than one kernel for some of these (conv backward:
              data + weight grads; sort/unique/nonzero; foreach ops: one launch per tensor-list chunk).
  host_reads  aten::item / aten::_local_scalar_dense not under an aten::item (device->host sync on a GPU)
  syncing     cuda_model kernels that also force a host sync on CUDA (nonzero, unique, masked_select)

Caveats: CPU dispatch is not CUDA dispatch. Conv/BN map to mkldnn/native CPU kernels (1:1 with cuDNN calls
in count, roughly). On CPU SGD defaults to its per-tensor (for-loop) path while on CUDA it defaults to foreach;
`--foreach` forces foreach=True for SGD and clip_grad_norm_ to mimic CUDA (clip_grad_norm_'s norms and
ModelEMA.update already use _foreach_* ops on CPU). Host syncs that do not dispatch an aten op (Tensor.tolist(),
used in the one-to-one assigner's topk2 path) are not in host_reads. The real trainer with batch 4 accumulates
round(nbs/batch)=16 batches per optimizer step; here every profiled step includes the optimizer phase.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", "/tmp/ultra-cfg")

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import ModelEMA

DATA = Path(os.environ.get("COCO8", "/work/shared/datasets/coco8"))
PHASES = ("forward", "loss", "backward", "optim")

# Leaf aten ops that launch no device kernel (views, metadata, allocation). The first block is the brief's list;
# the second adds ops of the same nature seen in the profile (all of them no-ops when they are leaves).
NO_LAUNCH = {
    "aten::view", "aten::reshape", "aten::as_strided", "aten::expand", "aten::permute", "aten::transpose",
    "aten::t", "aten::squeeze", "aten::unsqueeze", "aten::slice", "aten::select", "aten::alias", "aten::detach",
    "aten::_unsafe_view", "aten::empty", "aten::empty_strided", "aten::resize_", "aten::lift_fresh",
    "aten::split", "aten::chunk", "aten::unbind", "aten::narrow",
    # same nature, beyond the brief's list
    "aten::split_with_sizes", "aten::_reshape_alias", "aten::view_as", "aten::expand_as", "aten::flatten",
    "aten::unflatten", "aten::to", "aten::contiguous", "aten::empty_like", "aten::new_empty",
    "aten::new_empty_strided", "aten::detach_", "aten::requires_grad_", "aten::set_", "aten::result_type",
    "aten::squeeze_", "aten::unsqueeze_", "aten::as_strided_", "aten::_nested_tensor_from_mask_left_aligned",
    "aten::numpy_T", "aten::broadcast_tensors", "aten::_has_compatible_shallow_copy_type", "aten::is_same_size",
    "aten::retain_grad", "aten::lift", "aten::lift_fresh_copy", "aten::align_as", "aten::is_nonzero",
    "aten::resolve_conj", "aten::resolve_neg", "aten::conj", "aten::_conj", "aten::_neg_view",
}
HOST_READS = {"aten::item", "aten::_local_scalar_dense"}
SYNCING = {"aten::nonzero", "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::masked_select"}


# ----------------------------------------------------------------------------------------------------------- data
def letterbox(path: Path, size: int):
    """Resize keeping the aspect ratio, pad to size x size with grey 114, centred. Returns CHW uint8 and geometry."""
    im = Image.open(path).convert("RGB")
    w0, h0 = im.size
    r = min(size / w0, size / h0)
    w, h = max(1, round(w0 * r)), max(1, round(h0 * r))
    im = im.resize((w, h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    px, py = (size - w) // 2, (size - h) // 2
    canvas.paste(im, (px, py))
    return np.asarray(canvas, dtype=np.uint8).transpose(2, 0, 1), (w0, h0, r, px, py)


def load_batch(imgsz: int, batch: int) -> dict[str, torch.Tensor]:
    """A collated batch as YOLODataset.collate_fn + DetectionTrainer.preprocess_batch would hand the loss."""
    files = sorted((DATA / "images" / "train").glob("*.jpg"))
    imgs, batch_idx, cls, boxes = [], [], [], []
    for i in range(batch):
        f = files[i % len(files)]
        arr, (w0, h0, r, px, py) = letterbox(f, imgsz)
        imgs.append(arr)
        for line in (DATA / "labels" / "train" / (f.stem + ".txt")).read_text().splitlines():
            if not line.strip():
                continue
            c, x, y, w, h = map(float, line.split())
            batch_idx.append(i)
            cls.append(c)
            # normalised xywh on the letterboxed canvas
            boxes.append([(x * w0 * r + px) / imgsz, (y * h0 * r + py) / imgsz, w * w0 * r / imgsz, h * h0 * r / imgsz])
    return {
        "img": torch.from_numpy(np.stack(imgs)).float() / 255,  # preprocess_batch: uint8 -> float 0-1
        "batch_idx": torch.tensor(batch_idx, dtype=torch.float32),
        "cls": torch.tensor(cls, dtype=torch.float32).view(-1, 1),
        "bboxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
    }


# ---------------------------------------------------------------------------------------------- trainer set-up
def build_model() -> DetectionModel:
    torch.manual_seed(0)
    model = DetectionModel("yolo26n.yaml", nc=80, verbose=False)
    model.args = get_cfg()  # DetectionTrainer.set_model_attributes: hyperparameters (box/cls/dfl gains, epochs)
    for k, v in model.named_parameters():  # BaseTrainer._setup_train: always_freeze_names = [".dfl"]
        if ".dfl" in k:
            v.requires_grad = False
    return model.train()


def build_optimizer(model: nn.Module, lr: float, momentum: float, decay: float, foreach: bool | None):
    """BaseTrainer.build_optimizer for name='SGD' (no MuSGD): 3 groups, nesterov."""
    g = [{}, {}, {}]
    bn = tuple(v for k, v in nn.__dict__.items() if "Norm" in k)
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            fullname = f"{module_name}.{param_name}" if module_name else param_name
            if "bias" in fullname:
                g[2][fullname] = param
            elif isinstance(module, bn) or "logit_scale" in fullname:
                g[1][fullname] = param
            else:
                g[0][fullname] = param
    g = [list(x.values()) for x in g]
    args = {"lr": lr, "momentum": momentum, "nesterov": True, "foreach": foreach}
    groups = [
        {"params": g[0], **args, "weight_decay": decay, "param_group": "weight"},
        {"params": g[1], **args, "weight_decay": 0.0, "param_group": "bn"},
        {"params": g[2], **args, "param_group": "bias"},  # SGD default weight_decay=0
    ]
    return torch.optim.SGD(params=groups), [len(x) for x in g]


# ------------------------------------------------------------------------------------------------- one step
def train_step(model, batch, optimizer, scaler, ema, clip_foreach, profiled: bool):
    """BaseTrainer._do_train's per-batch work (single device, no AMP), phase by phase."""

    def phase(name):
        return record_function(f"phase::{name}") if profiled else _Null()

    with phase("forward"):
        preds = model(batch["img"])
    with phase("loss"):
        loss, loss_items = model.loss(batch, preds)  # model.criterion = model.init_criterion() on first call
        loss = loss.sum()
    with phase("backward"):
        scaler.scale(loss).backward()
    with phase("optim"):  # BaseTrainer.optimizer_step
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0, foreach=clip_foreach)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        ema.update(model)
    return loss.detach(), loss_items


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ------------------------------------------------------------------------------------------------- counting
def cuda_registered_ops() -> set[str]:
    """aten op names (any overload) with a CUDA kernel in this torch build's dispatcher (a +cu build has them)."""
    regs = torch._C._dispatch_get_registrations_for_dispatch_key("CUDA")
    return {n.split(".")[0] for n in regs if n.startswith("aten::")}


def analyse(events) -> dict:
    """Attribute aten events to phases by time containment (any thread) and count them."""
    ranges = {}
    for e in events:
        if e.name.startswith("phase::"):
            ranges[e.name[len("phase::") :]] = (e.time_range.start, e.time_range.end)
    missing = [p for p in PHASES if p not in ranges]
    if missing:
        sys.exit(f"phase ranges not found in profile: {missing}")
    cuda_ops = cuda_registered_ops()
    if not cuda_ops:
        sys.exit("this torch build registers no CUDA kernels: cuda_model cannot be computed")

    def is_aten(ev):
        return ev.name.startswith("aten::")

    def launches(ev):
        return is_aten(ev) and ev.name not in NO_LAUNCH and ev.name not in HOST_READS

    memo: dict[int, bool] = {}

    def launching_below(ev) -> bool:
        """Does ev have a descendant that is a launching aten op (metadata-only subtrees do not count)?"""
        k = id(ev)
        if k not in memo:
            memo[k] = any(launches(c) or launching_below(c) for c in ev.cpu_children)
        return memo[k]

    def covered(ev) -> bool:
        """Is ev inside an outer aten op that cuda_model already counts as one kernel?"""
        p = ev.cpu_parent
        while p is not None:
            if launches(p) and p.name in cuda_ops:
                return True
            p = p.cpu_parent
        return False

    out = {}
    for ph in PHASES:
        lo, hi = ranges[ph]
        c_all, c_leaf, c_kern, c_cuda = (collections.Counter() for _ in range(4))
        host = 0
        threads = set()
        for e in events:
            if not is_aten(e) or not (lo <= e.time_range.start <= hi):
                continue
            name = e.name
            threads.add(e.thread)
            c_all[name] += 1
            if name == "aten::item" or (
                name == "aten::_local_scalar_dense" and not (e.cpu_parent and e.cpu_parent.name == "aten::item")
            ):
                host += 1
            if not any(is_aten(c) for c in e.cpu_children):
                c_leaf[name] += 1
            if not launches(e):
                continue
            if not launching_below(e):
                c_kern[name] += 1
            if not covered(e) and (name in cuda_ops or not launching_below(e)):
                c_cuda[name] += 1
        out[ph] = {
            "all_aten": sum(c_all.values()),
            "leaf": sum(c_leaf.values()),
            "kernels": sum(c_kern.values()),
            "cuda_model": sum(c_cuda.values()),
            "host_reads": host,
            "syncing": sum(v for k, v in c_cuda.items() if k in SYNCING),
            "threads": len(threads),
            "top_kernels": c_kern.most_common(15),
            "top_cuda_model": c_cuda.most_common(15),
            "kernels_by_name": dict(c_kern.most_common()),
            "cuda_model_by_name": dict(c_cuda.most_common()),
            "leaf_by_name": dict(c_leaf.most_common()),
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--foreach", action="store_true", help="force foreach=True for SGD and clip_grad_norm_ (CUDA-like)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the full counts (incl. every leaf op name) here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")

    model = build_model()
    batch = load_batch(a.imgsz, a.batch)
    hyp = model.args
    nbs_acc = max(round(hyp.nbs / a.batch), 1)  # BaseTrainer: accumulate and weight-decay scaling
    decay = hyp.weight_decay * a.batch * nbs_acc / hyp.nbs
    fe = True if a.foreach else None  # None = torch's default (per-tensor on CPU, foreach on CUDA)
    optimizer, group_sizes = build_optimizer(model, lr=0.01, momentum=0.937, decay=decay, foreach=fe)
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # what the trainer gets on CPU (AMP off)
    trainable = [p for p in model.parameters() if p.requires_grad]

    t0 = time.time()
    train_step(model, batch, optimizer, scaler, ema, fe, profiled=False)  # warm-up: momentum buffers, EMA pairs
    t1 = time.time()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        loss, items = train_step(model, batch, optimizer, scaler, ema, fe, profiled=True)
    t2 = time.time()
    res = analyse(prof.events())

    print(f"yolo26n train step  imgsz={a.imgsz} batch={a.batch} FP32 CPU  torch {torch.__version__}  "
          f"foreach={'forced' if a.foreach else 'default(CPU: per-tensor)'}")
    print(f"labels={len(batch['cls'])}  loss={float(loss):.4f}  warm-up {t1 - t0:.1f}s  profiled step {t2 - t1:.1f}s")
    print(f"parameter tensors: {len(list(model.parameters()))} total, {len(trainable)} trainable "
          f"({sum(p.numel() for p in trainable)} values); SGD groups (decay, norm, bias) = "
          f"{group_sizes[0]}, {group_sizes[1]}, {group_sizes[2]}; EMA tensors = {len(ema._pairs[0])}")
    cols = ("kernels", "cuda_model", "leaf", "all_aten", "host_reads", "syncing")
    print(f"{'phase':<9}" + "".join(f"{c:>11}" for c in cols))
    tot = collections.Counter()
    for ph in PHASES:
        tot.update({c: res[ph][c] for c in cols})
        print(f"{ph:<9}" + "".join(f"{res[ph][c]:>11}" for c in cols))
    print(f"{'total':<9}" + "".join(f"{tot[c]:>11}" for c in cols))
    for key in ("top_kernels", "top_cuda_model"):
        for ph in PHASES:
            top = ", ".join(f"{k[6:]} {v}" for k, v in res[ph][key])
            print(f"{key[4:]}[{ph}]: {top}")
    if a.json:
        a.json.write_text(json.dumps({"args": vars(a) | {"json": str(a.json)}, "phases": res}, indent=1))


if __name__ == "__main__":
    main()
