#!/usr/bin/env python3
"""Learning on real photos, side by side (issue 14, item 3): ember and Ultralytics 8.4.190 trained from scratch
with the same recipe on coco128 as one class, two seeds each, with their per-epoch mAP50 / mAP50-95 curves.

    tools/bench_learning.py prepare [--coco ../shared/datasets/coco128] [--out /tmp/bench14/data]
    tools/bench_learning.py run ember|ultra SEED --epochs N [--ember /tmp/bench14/ember] [--runs /tmp/bench14/runs]
    tools/bench_learning.py report [--runs /tmp/bench14/runs] [--png assets/benchmarks/learning_coco128_1cls.png]

`prepare` builds the dataset as symlinks (no photo is copied): the 128 images of coco128 sorted by file name,
image i goes to val when i % 4 == 3 and to train otherwise (96 train, 32 val), labels linked alongside, plus a
dataset YAML with coco's 80 names; both tools train it with `single_cls=True`.

`run` trains one run in the foreground (start it with nohup / nice for the background), writing
RUNS/<tool>_s<seed>/results.csv and a wall-time file. The recipe, the same on both sides: model yolo26n.yaml
from scratch, imgsz 320, batch 16, nbs 16, optimizer auto (AdamW, lr0 0.002 for 1 class and < 10k steps),
default augmentation, single_cls, FP32 on CPU, 2 workers, no plots, the given seed.

`report` reads the results.csv files, prints final mAP50 / mAP50-95 per run, the means and the ember /
Ultralytics ratio of mean final mAP50-95, the epoch-1 learning rates, and draws both tools' curves on one chart.
Runs offline: YOLO_OFFLINE=1 and a local YOLO_CONFIG_DIR holding a font, so Ultralytics never downloads.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

IMGSZ, BATCH, NBS = 320, 16, 16
ULTRA_PY = "/opt/ultra/bin/python"

ULTRA = r"""
import sys
from ultralytics import YOLO
data, epochs, seed, imgsz, batch, nbs, project, name = sys.argv[1:9]
YOLO("yolo26n.yaml").train(data=data, epochs=int(epochs), seed=int(seed), imgsz=int(imgsz), batch=int(batch),
    nbs=int(nbs), optimizer="auto", single_cls=True, device="cpu", workers=2, amp=False, plots=False,
    project=project, name=name, exist_ok=True, pretrained=False)
"""


def prepare(coco: Path, out: Path) -> Path:
    imgs = sorted(p for p in (coco / "images" / "train2017").iterdir() if p.suffix.lower() == ".jpg")
    if out.exists():
        shutil.rmtree(out)
    nbox = {"train": 0, "val": 0}
    nimg = {"train": 0, "val": 0}
    for i, img in enumerate(imgs):
        split = "val" if i % 4 == 3 else "train"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        (out / "images" / split / img.name).symlink_to(img.resolve())
        lbl = coco / "labels" / "train2017" / (img.stem + ".txt")
        if lbl.exists():
            (out / "labels" / split / lbl.name).symlink_to(lbl.resolve())
            nbox[split] += sum(1 for line in lbl.read_text().splitlines() if line.strip())
        nimg[split] += 1
    names = (coco.parent / "coco128.yaml").read_text().split("names:", 1)[1]
    yaml = out / "coco128_1cls.yaml"
    yaml.write_text(
        "# coco128 split by file-name order: image i -> val when i % 4 == 3, else train. Train with single_cls.\n"
        f"path: {out}\ntrain: images/train\nval: images/val\n\nnames:{names}"
    )
    print(f"{yaml}: train {nimg['train']} images / {nbox['train']} boxes, val {nimg['val']} images / {nbox['val']} boxes")
    return yaml


def offline_env() -> dict:
    env = dict(os.environ, YOLO_OFFLINE="1")
    cfg = Path("/tmp/bench14/cfg")
    (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
    font = glob.glob("/opt/ultra/lib/python3*/site-packages/matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf")
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if font and not (cfg / "Ultralytics" / name).exists():
            shutil.copy(font[0], cfg / "Ultralytics" / name)
    env["YOLO_CONFIG_DIR"] = str(cfg)
    return env


def run(tool: str, seed: int, epochs: int, data: Path, runs: Path, ember: str) -> None:
    name = f"{tool}_s{seed}"
    runs.mkdir(parents=True, exist_ok=True)
    if tool == "ember":
        cmd = [ember, "train", f"data={data}", "model=yolo26n.yaml", f"epochs={epochs}", f"seed={seed}",
               f"imgsz={IMGSZ}", f"batch={BATCH}", f"nbs={NBS}", "optimizer=auto", "single_cls=true",
               "device=cpu", "workers=2", "amp=false", "plots=false", f"project={runs}", f"name={name}",
               "exist_ok=true"]
    else:
        cmd = [ULTRA_PY, "-c", ULTRA, str(data), str(epochs), str(seed), str(IMGSZ), str(BATCH), str(NBS),
               str(runs), name]
    print("$", " ".join(cmd if tool == "ember" else [ULTRA_PY, "-c", "<ULTRA>"] + cmd[3:]), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd, env=offline_env())
    wall = time.time() - t0
    (runs / name).mkdir(parents=True, exist_ok=True)
    (runs / name / "wall_s.txt").write_text(f"{wall:.1f}\n")
    print(f"{name}: rc {rc}, wall {wall:.0f} s", flush=True)
    sys.exit(rc)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def col(rows: list[dict], key: str) -> list[float]:
    k = next(c for c in rows[0] if c.startswith(key))
    return [float(r[k]) for r in rows]


def report(runs: Path, png: Path | None) -> None:
    res = {}
    for d in sorted(runs.glob("*_s*")):
        if (d / "results.csv").exists():
            res[d.name] = read_csv(d / "results.csv")
    final = {}
    print("| run | epochs | final mAP50 | final mAP50-95 | best mAP50-95 | epoch-1 lr pg0/pg1/pg2 | wall |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in res.items():
        m50, m5095 = col(rows, "metrics/mAP50(B)"), col(rows, "metrics/mAP50-95(B)")
        lrs = "/".join(f"{rows[0][k]}" for k in ("lr/pg0", "lr/pg1", "lr/pg2") if k in rows[0])
        wall = runs / name / "wall_s.txt"
        wall = f"{float(wall.read_text()) / 60:.1f} min" if wall.exists() else "?"
        final[name] = (m50[-1], m5095[-1])
        print(f"| {name} | {len(rows)} | {m50[-1]:.4f} | {m5095[-1]:.4f} | {max(m5095):.4f} | {lrs} | {wall} |")
    means = {}
    for tool in ("ember", "ultra"):
        v = [final[n] for n in final if n.startswith(tool)]
        if v:
            means[tool] = (sum(a for a, _ in v) / len(v), sum(b for _, b in v) / len(v))
            print(f"{tool} mean final mAP50 {means[tool][0]:.4f}, mAP50-95 {means[tool][1]:.4f} ({len(v)} runs)")
    if "ember" in means and "ultra" in means and means["ultra"][1] > 0:
        print(f"ember / Ultralytics mean final mAP50-95: {means['ember'][1] / means['ultra'][1]:.3f}")
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, rows in res.items():
            tool, seed = name.split("_s")
            color = "tab:red" if tool == "ember" else "tab:blue"
            style = "-" if seed == "0" else "--"
            label = f"{'ember' if tool == 'ember' else 'Ultralytics 8.4.190'} seed {seed}"
            ep = col(rows, "epoch")
            for ax, key in zip(axes, ("metrics/mAP50-95(B)", "metrics/mAP50(B)")):
                ax.plot(ep, col(rows, key), style, color=color, label=label)
        for ax, t in zip(axes, ("mAP50-95", "mAP50")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(t)
            ax.set_title(f"{t} on 32 held-out photos")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle("yolo26n from scratch, coco128 as one class (96 train / 32 val), imgsz 320, CPU")
        fig.tight_layout()
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=100)
        print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--coco", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets/coco128")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench14/data"))
    r = sub.add_parser("run")
    r.add_argument("tool", choices=["ember", "ultra"])
    r.add_argument("seed", type=int)
    r.add_argument("--epochs", type=int, required=True)
    r.add_argument("--data", type=Path, default=Path("/tmp/bench14/data/coco128_1cls.yaml"))
    r.add_argument("--runs", type=Path, default=Path("/tmp/bench14/runs"))
    r.add_argument("--ember", default="/tmp/bench14/ember")
    q = sub.add_parser("report")
    q.add_argument("--runs", type=Path, default=Path("/tmp/bench14/runs"))
    q.add_argument("--png", type=Path, default=None)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.coco, a.out)
    elif a.cmd == "run":
        run(a.tool, a.seed, a.epochs, a.data, a.runs, a.ember)
    else:
        report(a.runs, a.png)


if __name__ == "__main__":
    main()
