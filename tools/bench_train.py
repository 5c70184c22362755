#!/usr/bin/env python3
"""Training and validation throughput and peak memory: ember against Ultralytics, run the same way, one
after the other, on the same images.

    tools/bench_train.py [--ember /tmp/ember-augment] [--data ../shared/datasets/coco128.yaml]
                         [--images 32] [--models yolo26n yolov8n] [--imgsz 320 640] [--batch 8]

For each (model, imgsz) row: one epoch from scratch (no pretrained weights), then one validation, on the
first `--images` images of the dataset's train split (used for both train and val, as coco128 does).
Both tools get `batch`, FP32, no plots; Ultralytics with `workers=0` (data loading in the training
thread), ember with `--workers 2` (its loader threads share the same cores). Prints train images/s,
val images/s and peak RSS (of the whole process, from wait4), and ember/Ultralytics ratios. Ultralytics
is skipped when it is not importable. Runs offline (YOLO_OFFLINE=1). The first batches include warm-up:
use enough images for the figures to mean something, and a quiet machine (load is printed).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ULTRA = r"""
import sys, time, json, os
os.environ["YOLO_OFFLINE"] = "1"
from ultralytics import YOLO
model_yaml, data, imgsz, batch, project = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t = {}
def ep_start(tr): t["train0"] = time.perf_counter()
def ep_end(tr): t.setdefault("train1", time.perf_counter())
def val_start(v): t.setdefault("val0", time.perf_counter())
def val_end(v): t.setdefault("val1", time.perf_counter())
m = YOLO(model_yaml)
m.add_callback("on_train_epoch_start", ep_start)
m.add_callback("on_train_epoch_end", ep_end)
m.add_callback("on_val_start", val_start)
m.add_callback("on_val_end", val_end)
m.train(data=data, epochs=1, imgsz=imgsz, batch=batch, workers=0, device="cpu", amp=False, plots=False,
        project=project, name="u", exist_ok=True, verbose=False, seed=0, deterministic=False)
print("BENCH " + json.dumps({"train_s": t["train1"] - t["train0"], "val_s": t["val1"] - t["val0"]}))
"""


def subset_yaml(data: Path, images: int, tmp: Path) -> Path:
    """A dataset YAML whose train and val are the first `images` images of `data`'s train split."""
    import yaml

    cfg = yaml.safe_load(data.read_text())
    root = (data.parent / cfg.get("path", ".")).resolve()
    train_dir = root / cfg["train"]
    files = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:images]
    lst = tmp / "images.txt"
    lst.write_text("".join(f"{p}\n" for p in files))
    out = tmp / "bench.yaml"
    names = "".join(f"  {k}: {v}\n" for k, v in cfg["names"].items())
    out.write_text(f"path: {tmp}\ntrain: {lst}\nval: {lst}\nnames:\n{names}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--ember", default=os.environ.get("EMBER_BIN", "/tmp/ember-augment"))
    ap.add_argument("--python", default=os.environ.get("ULTRA_PYTHON", "/work/venv/bin/python"))
    ap.add_argument("--data", default=str(here / "../shared/datasets/coco128.yaml"))
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--models", nargs="+", default=["yolo26n", "yolov8n"])
    ap.add_argument("--imgsz", nargs="+", type=int, default=[320, 640])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-ultralytics", action="store_true")
    args = ap.parse_args()

    env = dict(os.environ, YOLO_OFFLINE="1")
    have_ultra = not args.skip_ultralytics and subprocess.run([args.python, "-c", "import ultralytics"], capture_output=True).returncode == 0
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as tmp:
        tmp = Path(tmp)
        if "YOLO_CONFIG_DIR" not in env:
            # Ultralytics wants a font and would download one: give it any local TTF.
            env["YOLO_CONFIG_DIR"] = str(tmp / "ycfg")
            fonts = subprocess.run(["find", "/usr/share/fonts", str(Path.home() / ".cargo/registry"), "-name", "*.ttf"],
                                   capture_output=True, text=True).stdout.split()
            if fonts:
                (tmp / "ycfg/Ultralytics").mkdir(parents=True)
                (tmp / "ycfg/Ultralytics/Arial.ttf").write_bytes(Path(fonts[0]).read_bytes())
        data = subset_yaml(Path(args.data), args.images, tmp)
        print(f"# {datetime.datetime.now().isoformat(timespec='minutes')}  {platform.node()}  {os.cpu_count()} CPUs  "
              f"load {os.getloadavg()[0]:.2f}  images={args.images} batch={args.batch}")
        header = "| model | imgsz | tool | train img/s | val img/s | peak RSS MiB | load |"
        print(header + "\n|---|---|---|---|---|---|---|")
        rows = []
        for model in args.models:
            for imgsz in args.imgsz:
                res = {}
                load = os.getloadavg()[0]
                out, wall, _ = run_isolated([args.ember, "train", "--data", str(data), "--model", model, "--imgsz", str(imgsz),
                                             "--batch", str(args.batch), "--epochs", "1", "--workers", "2", "--verbose", "true",
                                             "--plots", "false", "--project", str(tmp / "runs"), "--name", f"e{model}{imgsz}",
                                             "--exist-ok", "true"], env)
                tr = re.search(r"train: (\d+) images in ([\d.]+)s", out)
                va = re.search(r"val: (\d+) images in ([\d.]+)s", out)
                res["ember"] = (int(tr[1]) / float(tr[2]), int(va[1]) / float(va[2]), out.rss)
                if have_ultra:
                    script = tmp / "ultra.py"
                    script.write_text(ULTRA)
                    out, wall, _ = run_isolated([args.python, str(script), f"{model}.yaml", str(data), str(imgsz), str(args.batch), str(tmp / "uruns")], env)
                    import json

                    b = json.loads(re.search(r"BENCH (\{.*\})", out)[1])
                    res["ultralytics"] = (args.images / b["train_s"], args.images / b["val_s"], out.rss)
                for tool, (t, v, rss) in res.items():
                    print(f"| {model} | {imgsz} | {tool} | {t:.2f} | {v:.2f} | {rss / 2**20:.0f} | {load:.2f} |", flush=True)
                if "ultralytics" in res:
                    e, u = res["ember"], res["ultralytics"]
                    print(f"| {model} | {imgsz} | ratio ember/ultralytics | {e[0] / u[0]:.2f} | {e[1] / u[1]:.2f} | {e[2] / u[2]:.2f} | |", flush=True)


class Output(str):
    rss: int = 0


def run_isolated(cmd: list[str], env: dict[str, str]) -> tuple[Output, float, int]:
    """Runs `cmd` under /usr/bin/time -v, so the peak RSS is that command's alone."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write((proc.stdout + proc.stderr)[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    out = Output(proc.stdout + proc.stderr)
    out.rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1]) * 1024
    return out, wall, out.rss


if __name__ == "__main__":
    main()
