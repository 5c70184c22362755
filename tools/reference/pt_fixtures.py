#!/usr/bin/env python3
"""Make the `.pt` fixtures of tests/it/pt_checkpoint.rs with Ultralytics itself (run by hand, never by CI).

Written to tests/fixtures/pt/:
  * yolo26n_coco.pt: the forward-parity weights of tests/fixtures/model/yolo26n.safetensors (nc=80) in a
    DetectionModel built from yolo26n.yaml, saved as BaseTrainer.save_model saves an epoch (FP16 `ema`,
    `model: None`, FP16 SGD momentum buffers: zeros, from a zero-gradient step, so git stores them small).
    Its tensors equal that SafeTensors file exactly (the f8/f16 values are all FP16-representable), so the
    forward fixture applies unchanged.
  * yolov8n_coco.pt: the same for yolov8n (tests/fixtures/model/yolov8n.safetensors in a yolov8n.yaml model).
  * yolo26n_nc1_last.pt: `last.pt` of a real one-epoch Ultralytics training run of yolo26n.yaml on a generated
    one-class dataset (imgsz 64), stripped by the trainer itself at the end (`model: <module>`, `ema: None`,
    no optimizer), `names = {0: 'item'}` (a one-class dict: integer-key SETITEM).
    yolo26n_nc1_last.json holds, per tensor of `torch.load(...)['model'].state_dict()`, its shape, its sum and
    16 values sampled at fixed flat positions, for the tensor-equality test without a second copy of the weights.
  * yolo26n_state_dict.pt: `torch.save(state_dict)` of the parity weights in their fixture precision (4-D conv
    weights float8 e4m3, which torch pickles with `_rebuild_tensor_v3` and an untyped storage; the rest FP16).
  * segment.pt, pose.pt, classify.pt: tiny models of other tasks (a two-layer YAML), saved as stripped
    checkpoints; not_a_checkpoint.pt: `torch.save({'a': 1, 'b': [2, 3]})`.

Usage: /opt/ultra/bin/python tools/reference/pt_fixtures.py [--no-train] [GROUP ...]
  (Ultralytics 8.4.190; works offline). GROUPs name what to write, all of them by default: yolo26n (yolo26n_coco.pt
  and yolo26n_state_dict.pt), yolov8n (yolov8n_coco.pt), tasks (the other-task and not-a-checkpoint files), trained
  (yolo26n_nc1_last.pt/.json; also left out by --no-train). Each group's files do not depend on the others'.
  The yolo26n and yolov8n groups rewrite their files byte for byte (checked: yolo26n_coco.pt and
  yolo26n_state_dict.pt as committed); `tasks` initialises its tiny models at random, so its bytes change.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "pt"
TMP = Path(tempfile.mkdtemp(prefix="ember_pt_"))

# Keep Ultralytics off the network: offline mode and a local font where it would download Arial.
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = str(TMP / "config")
(TMP / "config" / "Ultralytics").mkdir(parents=True)
import matplotlib  # noqa: E402

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
for name in ("Arial.ttf", "Arial.Unicode.ttf"):
    shutil.copy(FONT, TMP / "config" / "Ultralytics" / name)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.nn.tasks import ClassificationModel, DetectionModel, PoseModel, SegmentationModel  # noqa: E402
from ultralytics.utils.torch_utils import convert_optimizer_state_dict_to_fp16  # noqa: E402

assert ultralytics.__version__ == "8.4.190", ultralytics.__version__
COCO_NAMES = {i: f"class{i}" for i in range(80)}


def parity_model(arch):
    """DetectionModel(<arch>.yaml) holding the forward-parity fixture weights (as float32)."""
    model = DetectionModel(f"{arch}.yaml", nc=80, verbose=False)
    sd = {k: v.float() for k, v in load_file(ROOT / f"tests/fixtures/model/{arch}.safetensors").items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    model.names = COCO_NAMES
    return model.eval()


def trainer_dict(model, optimizer, arch):
    """The dict BaseTrainer.save_model writes (8.4.190), with the fields of a first epoch."""
    ema = model.half()
    # train_args names the model's own yaml_file str: pickle then memo-references it (byte-stable output).
    assert model.yaml["yaml_file"] == f"{arch}.yaml"
    return {
        "epoch": 0,
        "best_fitness": None,
        "stopper": {"best_fitness": None, "best_epoch": 0},
        "model": None,
        "ema": ema,
        "updates": 1,
        "modelopt": None,
        "optimizer": convert_optimizer_state_dict_to_fp16(optimizer.state_dict()),
        "scaler": {},
        "train_args": {"model": model.yaml["yaml_file"], "data": "coco8.yaml", "epochs": 1, "imgsz": 160},
        "train_metrics": {"fitness": 0.0},
        "train_results": {},
        "date": "2026-12-01T00:00:00+00:00",
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
    }


def coco_fixture(arch, state_dict=False):
    model = parity_model(arch)
    # An SGD step with zero gradients: momentum buffers of the right shapes (zeros, so git stores them small).
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.save(trainer_dict(model, opt, arch), OUT / f"{arch}_coco.pt")
    ckpt = torch.load(OUT / f"{arch}_coco.pt", weights_only=False)
    assert ckpt["model"] is None and isinstance(ckpt["ema"], DetectionModel)
    ref = load_file(ROOT / f"tests/fixtures/model/{arch}.safetensors")
    for k, v in ckpt["ema"].state_dict().items():
        if k in ref:
            assert torch.equal(v.float(), ref[k].float()), k
    if state_dict:
        torch.save(dict(ref), OUT / f"{arch}_state_dict.pt")


def make_dataset(root: Path, n=4, size=64):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        x0, y0 = rng.integers(4, 24, 2)
        w, h = rng.integers(16, 36, 2)
        img[y0 : y0 + h, x0 : x0 + w] = (200, 180, 40)
        cv2.imwrite(str(root / "images" / f"im{i}.jpg"), img)
        cx, cy = (x0 + w / 2) / size, (y0 + h / 2) / size
        (root / "labels" / f"im{i}.txt").write_text(f"0 {cx:.6f} {cy:.6f} {w / size:.6f} {h / size:.6f}\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images\nval: images\nnames:\n  0: item\n")
    return yaml


def trained_fixture():
    data = make_dataset(TMP / "one_class")
    model = YOLO("yolo26n.yaml")
    model.train(data=str(data), epochs=1, imgsz=64, batch=4, workers=0, device="cpu", plots=False, seed=0,
                project=str(TMP / "runs"), name="nc1", amp=False, verbose=False)
    copied = OUT / "yolo26n_nc1_last.pt"
    shutil.copy(TMP / "runs" / "nc1" / "weights" / "last.pt", copied)
    ckpt = torch.load(copied, weights_only=False)
    assert ckpt["ema"] is None and ckpt["optimizer"] is None and isinstance(ckpt["model"], DetectionModel)
    assert ckpt["model"].names == {0: "item"}, ckpt["model"].names
    reference = {}
    for k, v in ckpt["model"].state_dict().items():
        flat = v.float().flatten()
        at = np.linspace(0, flat.numel() - 1, num=min(16, flat.numel())).round().astype(int).tolist()
        reference[k] = {
            "shape": list(v.shape),
            "dtype": str(v.dtype),
            "sum": float(flat.double().sum()),
            "at": at,
            "values": [float(flat[i]) for i in at],
        }
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in reference.items()]  # one tensor a line
    (OUT / "yolo26n_nc1_last.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


TINY = {
    "segment": (SegmentationModel, "Segment", [1, 4, 8]),
    "pose": (PoseModel, "Pose", [1, [5, 3]]),
    "classify": (ClassificationModel, "Classify", [1]),
}


def other_tasks():
    for task, (cls, head, args) in TINY.items():
        if task == "classify":
            cfg = {"nc": 1, "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[-1, 1, head, args]]}
        else:
            cfg = {
                "nc": 1,
                "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]]],
                "head": [[[0, 1, 2], 1, head, args]],
            }
            if task == "pose":
                cfg["kpt_shape"] = [5, 3]
        model = cls(cfg, ch=3, nc=1, verbose=False)
        model.names = {0: "item"}
        torch.save({"model": model.half(), "ema": None, "version": ultralytics.__version__}, OUT / f"{task}.pt")
    torch.save({"a": 1, "b": [2, 3]}, OUT / "not_a_checkpoint.pt")


GROUPS = {
    "yolo26n": lambda: coco_fixture("yolo26n", state_dict=True),
    "yolov8n": lambda: coco_fixture("yolov8n"),
    "tasks": other_tasks,
    "trained": trained_fixture,
}


def main():
    args = [a for a in sys.argv[1:] if a != "--no-train"]
    unknown = [a for a in args if a not in GROUPS]
    assert not unknown, f"unknown groups {unknown}; known: {list(GROUPS)}"
    chosen = args or [g for g in GROUPS if not (g == "trained" and "--no-train" in sys.argv)]
    OUT.mkdir(parents=True, exist_ok=True)
    for group in chosen:
        GROUPS[group]()
    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size / 1e6:.2f} MB")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
