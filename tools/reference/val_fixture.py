"""Reference for `ember val`: Ultralytics trains yolo26n briefly on coco8 (small imgsz, so the metrics are
well above 0), validates it, and saves its EMA weights (already FP16 in Ultralytics checkpoints) as
SafeTensors with state_dict keys, plus its `all` row, under tests/fixtures/val/.

Run (not in CI): YOLO_OFFLINE=1 /work/venv/bin/python tools/reference/val_fixture.py [DATASETS_DIR]
"""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from ultralytics import YOLO  # noqa: E402

IMGSZ = 160
EPOCHS = 150

root = Path(__file__).resolve().parents[2]
datasets = Path(sys.argv[1] if len(sys.argv) > 1 else root.parent / "shared" / "datasets").resolve()
out = root / "tests" / "fixtures" / "val"
out.mkdir(parents=True, exist_ok=True)

with tempfile.TemporaryDirectory() as tmp:
    data = Path(tmp) / "coco8.yaml"
    data.write_text((datasets / "coco8.yaml").read_text().replace("path: coco8", f"path: {datasets / 'coco8'}"))
    torch.manual_seed(0)
    model = YOLO("yolo26n.yaml")
    # nbs equal to the batch and no warmup: with 4 images the default recipe takes one step at lr 0.
    model.train(data=str(data), epochs=EPOCHS, imgsz=IMGSZ, batch=4, nbs=4, warmup_epochs=0, workers=0, device="cpu",
                seed=0, deterministic=True, plots=False, val=False, amp=False, project=tmp, name="train", exist_ok=True,
                mosaic=0.0, optimizer="AdamW", lr0=0.002)
    ckpt = Path(tmp) / "train" / "weights" / "last.pt"
    trained = YOLO(str(ckpt))
    rows = {}
    for split in ("train", "val"):
        r = trained.val(data=str(data), imgsz=IMGSZ, batch=4, conf=0.001, iou=0.7, split=split, plots=False, device="cpu",
                        workers=0, project=tmp, name=f"val_{split}", exist_ok=True)
        rows[split] = {"precision": float(r.box.mp), "recall": float(r.box.mr), "map50": float(r.box.map50),
                       "map50_95": float(r.box.map), "fitness": float(r.fitness)}
        print(split, rows[split])
    sd = {k: v.detach().half().contiguous() for k, v in trained.model.state_dict().items() if v.is_floating_point()}
    save_file(sd, str(out / "yolo26n_coco8_160.safetensors"))
    (out / "yolo26n_coco8_160.json").write_text(json.dumps({"imgsz": IMGSZ, "epochs": EPOCHS, "rows": rows}, indent=1))
