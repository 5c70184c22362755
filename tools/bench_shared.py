#!/usr/bin/env python3
"""CPU training on a shared machine: ember and Ultralytics 8.4.190 each alone, then both at once, same recipe
(yolo26n from scratch, coco128 linked under /tmp, 320 px, batch 16, 2 workers each, FP32, no plots).

    /opt/ultra/bin/python tools/bench_shared.py --ember target/release/ember [--epochs 2] [--runs 1] [--images 128]

Prints, per run, each tool's wall time and CPU time (user + system, its whole process tree) per epoch, alone
and side by side. A tool that burns CPU while waiting (threads spinning) shows it as CPU time that does not
shorten its wall time, and slows the other side down.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ULTRA = """
import os, sys
os.environ["YOLO_OFFLINE"] = "1"
from ultralytics import YOLO
data, epochs, project = sys.argv[1], int(sys.argv[2]), sys.argv[3]
YOLO("yolo26n.yaml").train(data=data, epochs=epochs, imgsz=320, batch=16, workers=2, device="cpu", amp=False,
                           plots=False, project=project, name="run", exist_ok=True, verbose=False)
"""


def dataset(datasets: Path, root: Path, images: int) -> Path:
    """The first `images` of coco128 as links under `root`, with a YAML (Ultralytics writes its label cache beside
    the labels)."""
    src = datasets / "coco128"
    for kind in ("images", "labels"):
        (root / kind / "train2017").mkdir(parents=True, exist_ok=True)
    for img in sorted((src / "images" / "train2017").glob("*.jpg"))[:images]:
        label = src / "labels" / "train2017" / (img.stem + ".txt")
        for s, d in [(img, root / "images" / "train2017" / img.name), (label, root / "labels" / "train2017" / label.name)]:
            if s.exists() and not d.exists():
                d.symlink_to(s)
    yaml = root / "coco128.yaml"
    names = (datasets / "coco128.yaml").read_text().split("names:", 1)[1]
    yaml.write_text(f"path: {root}\ntrain: images/train2017\nval: images/train2017\nnames:{names}")
    return yaml


def start(cmd: list[str], log: Path) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, YOLO_OFFLINE="1")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env), time.perf_counter()


def finish(*started: tuple[subprocess.Popen, float]) -> list[tuple[float, float]]:
    """Waits for every started process, each timed when it ends (whichever ends first), with its CPU time."""
    pending = {p.pid: (i, p, t0) for i, (p, t0) in enumerate(started)}
    results: list[tuple[float, float]] = [(0.0, 0.0)] * len(started)
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pending:
            continue
        i, p, t0 = pending.pop(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{p.args[0]} failed: see its log")
        results[i] = (time.perf_counter() - t0, usage.ru_utime + usage.ru_stime)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--datasets", default=os.environ.get("EMBER_DATASETS", "../shared/datasets"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ember-shared-"))
    yaml = dataset(Path(args.datasets).resolve(), Path(f"/tmp/ember-bench-shared-{args.images}"), args.images)
    ember = [args.ember, "train", "--model", "yolo26n", "--data", str(yaml), "--epochs", str(args.epochs),
             "--imgsz", "320", "--batch", "16", "--workers", "2", "--amp=false", "--plots", "false",
             "--project", str(tmp / "ember"), "--exist-ok"]
    ultra = [sys.executable, "-c", ULTRA, str(yaml), str(args.epochs), str(tmp / "ultra")]
    e = args.epochs
    print(f"load before: {os.getloadavg()[0]:.2f}; logs in {tmp}")
    for run in range(1, args.runs + 1):
        [alone_e] = finish(start(ember, tmp / "ember-alone.log"))
        [alone_u] = finish(start(ultra, tmp / "ultra-alone.log"))
        # Side by side: each process timed when it ends (the one that ends first no longer shares the machine).
        shared_e, shared_u = finish(start(ember, tmp / "ember-shared.log"), start(ultra, tmp / "ultra-shared.log"))
        for name, (wall, cpu) in [("ember alone", alone_e), ("Ultralytics alone", alone_u),
                                  ("ember beside Ultralytics", shared_e), ("Ultralytics beside ember", shared_u)]:
            print(f"run {run} | {name} | {wall / e:.1f} s/epoch wall | {cpu / e:.1f} s/epoch CPU")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
