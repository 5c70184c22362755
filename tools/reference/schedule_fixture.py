#!/usr/bin/env python3
"""Record the training schedule of Ultralytics 8.4.190's own trainer, for ember's schedule test (not run by CI).

Each recipe trains yolo26n (built from its YAML, no download) on a tiny generated dataset on the CPU for a few
epochs and records, for every batch, what the trainer set before the optimizer step: each parameter group's lr,
momentum (SGD's momentum or Adam's beta1) and weight decay, `trainer.accumulate`, and whether an optimizer step
was taken. It also keeps the `lr/pg*` columns of results.csv and the run's args.yaml (the first recipe's is saved
beside the fixture, to test that an Ultralytics args.yaml works as ember's `--cfg`).

The recipes cover: SGD with warmup, `optimizer=auto` picking AdamW (with a cosine schedule and a warmup of
1.5 batches, which Python rounds half to even), a run shorter than `warmup_epochs + 1`, `nbs` > batch so that
accumulation ramps (nbs / batch = 2.5, another tie), `nbs` so large that accumulation is capped by the run's
batch count, and MuSGD with a bias warmup (its 3x-lr groups for the head's classification branches).

Usage (offline, about a minute on 2 cores):
    /opt/ultra/bin/python tools/reference/schedule_fixture.py --out tests/fixtures/schedule
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

ULTRALYTICS_VERSION = "8.4.190"

WORK = Path(tempfile.mkdtemp(prefix="ember-schedule-"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_CONFIG_DIR"] = str(WORK / "config")


def offline_font() -> None:
    """Ultralytics downloads Arial.ttf for its plots unless one is already in its config folder."""
    import matplotlib

    target = WORK / "config" / "Ultralytics" / "Arial.ttf"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", target)


def make_dataset(root: Path, n_train: int, n_val: int, nc: int) -> Path:
    """64 px images with one to three filled rectangles each, one class per colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(230, 40, 40), (40, 200, 60), (50, 80, 230)]
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            img = np.full((64, 64, 3), 40, np.uint8)
            lines = []
            for _ in range(rng.integers(1, 4)):
                c = int(rng.integers(0, nc))
                w, h = rng.integers(12, 30, size=2)
                x, y = rng.integers(0, 64 - w), rng.integers(0, 64 - h)
                img[y : y + h, x : x + w] = colours[c]
                lines.append(f"{c} {(x + w / 2) / 64:.6f} {(y + h / 2) / 64:.6f} {w / 64:.6f} {h / 64:.6f}")
            Image.fromarray(img).save(root / "images" / split / f"{k:03d}.png")
            (root / "labels" / split / f"{k:03d}.txt").write_text("\n".join(lines) + "\n")
    names = "".join(f"  {i}: c{i}\n" for i in range(nc))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return yaml


RECIPES = [
    # (name, number of training images, training arguments)
    ("sgd_warmup", 10, dict(optimizer="SGD", lr0=0.01, epochs=4, batch=2, nbs=2, warmup_epochs=2.0)),
    ("auto_adamw_cosine", 10, dict(optimizer="auto", epochs=3, batch=4, nbs=4, warmup_epochs=0.5, cos_lr=True)),
    ("shorter_than_warmup", 10, dict(optimizer="SGD", lr0=0.02, epochs=2, batch=4, nbs=4, warmup_epochs=3.0)),
    ("accumulate_ramp", 10, dict(optimizer="SGD", lr0=0.01, epochs=3, batch=2, nbs=5, warmup_epochs=0.9)),
    ("accumulate_capped", 8, dict(optimizer="AdamW", lr0=0.002, epochs=2, batch=4, nbs=64, warmup_epochs=3.0)),
    ("musgd_bias_warmup", 10, dict(optimizer="MuSGD", lr0=0.01, epochs=3, batch=2, nbs=2, warmup_epochs=1.0)),
]


def run_recipe(name: str, n_train: int, train_args: dict, nc: int) -> dict:
    from ultralytics import YOLO

    data = make_dataset(WORK / f"data-{name}", n_train, 4, nc)
    model = YOLO("yolo26n.yaml")
    record = {"iterations": [], "stepped": False, "epoch_batches": 0}

    def on_pretrain_routine_end(trainer):
        step = trainer.optimizer_step

        def recorded_step():
            record["stepped"] = True
            step()

        trainer.optimizer_step = recorded_step

    def on_train_epoch_start(trainer):
        record["epoch_batches"] = 0

    def on_train_batch_end(trainer):
        nb = len(trainer.train_loader)
        ni = record["epoch_batches"] + nb * trainer.epoch
        groups = []
        for g in trainer.optimizer.param_groups:
            momentum = g["momentum"] if "momentum" in g else g["betas"][0]
            # MuSGD's groups for the head's classification branches start at 3x lr0.
            boosted = g["initial_lr"] > 1.5 * trainer.args.lr0
            groups.append(
                {
                    "name": g["param_group"],
                    "boosted": boosted,
                    "params": len(g["params"]),
                    "lr": g["lr"],
                    "momentum": momentum,
                    "weight_decay": g["weight_decay"],
                }
            )
        record["iterations"].append(
            {
                "epoch": trainer.epoch,
                "ni": ni,
                "accumulate": trainer.accumulate,
                "stepped": record["stepped"],
                "groups": groups,
            }
        )
        record["stepped"] = False
        record["epoch_batches"] += 1

    model.add_callback("on_pretrain_routine_end", on_pretrain_routine_end)
    model.add_callback("on_train_epoch_start", on_train_epoch_start)
    model.add_callback("on_train_batch_end", on_train_batch_end)
    args = dict(
        data=str(data),
        imgsz=64,
        device="cpu",
        workers=0,
        seed=0,
        val=False,
        plots=False,
        amp=False,
        project=str(WORK / "runs"),
        name=name,
        exist_ok=True,
        verbose=False,
    )
    args.update(train_args)
    model.train(**args)
    trainer = model.trainer
    nb = len(trainer.train_loader)
    with open(trainer.save_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    lr_columns = sorted(k for k in rows[0] if k.startswith("lr/pg"))
    return {
        "name": name,
        "train_images": n_train,
        "nc": nc,
        "args": {k: v for k, v in args.items() if k in train_args},
        "nb": nb,
        "nw": trainer._get_warmup_iterations(nb),
        "picked_optimizer": trainer.args.optimizer,
        "picked_lr0": trainer.args.lr0,
        "group_order": [g["param_group"] for g in trainer.optimizer.param_groups],
        "lr_columns": lr_columns,
        "results_lr": [[float(r[c]) for c in lr_columns] for r in rows],
        "iterations": record["iterations"],
        "args_yaml": (trainer.save_dir / "args.yaml").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import ultralytics

    assert ultralytics.__version__ == ULTRALYTICS_VERSION, f"run with Ultralytics {ULTRALYTICS_VERSION}"
    offline_font()
    recipes = [run_recipe(name, n, train_args, nc=3) for name, n, train_args in RECIPES]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "args.yaml").write_text(recipes[0]["args_yaml"])
    for r in recipes:
        del r["args_yaml"]
    fixture = {"ultralytics": ultralytics.__version__, "recipes": recipes}
    (args.out / "schedule.json").write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {args.out / 'schedule.json'}: " + ", ".join(f"{r['name']} {len(r['iterations'])}" for r in recipes))


if __name__ == "__main__":
    main()
