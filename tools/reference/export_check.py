"""Check ember's exports outside the Rust test suite, with onnxruntime and Ultralytics/PyTorch.

Run the ONNX tests with a dump folder first:
    EMBER_EXPORT_DUMP=/tmp/ember-dump cargo test --release --test export_onnx
then:
    YOLO_OFFLINE=1 /work/venv/bin/python tools/reference/export_check.py /tmp/ember-dump

For every `<tag>.onnx` in the folder it prints:
* onnxruntime vs ember: max |ort - ember| / max |ember| over the box rows and the score rows;
* strict `load_state_dict` of `<tag>.safetensors` (Ultralytics keys, written by ember's SafeTensors export) into
  the matching Ultralytics `DetectionModel`, and that model's own output vs ember's.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import load_file

IMGSZ = 160


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def split_rel(out, ref, end2end):
    if end2end:  # [k, 6] rows in descending score order
        # Rows whose score ties with the k-th one (uniform letterbox padding gives many anchors equal scores) may
        # keep different anchors at the cut-off: boxes and classes are compared on the other rows only.
        # Equal scores elsewhere may also swap rows, so each row is matched among the rows of its class and score.
        tol = 1e-4 * np.abs(ref[:, 4]).max()
        keep = np.abs(ref[:, 4] - ref[-1, 4]) > tol
        worst, found = 0.0, 0
        for r in ref[keep]:
            cand = out[(out[:, 5] == r[5]) & (np.abs(out[:, 4] - r[4]) <= tol)]
            if len(cand):
                found += 1
                worst = max(worst, float(np.abs(cand[:, :4] - r[:4]).max(axis=1).min()))
        scale = np.abs(ref[keep, :4]).max()
        return worst / scale, rel(out[:, 4], ref[:, 4]), found / max(int(keep.sum()), 1)
    return rel(out[:4], ref[:4]), rel(out[4:], ref[4:]), None


def main(folder):
    folder = Path(folder)
    for path in sorted(folder.glob("*.onnx")):
        tag = path.stem
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        meta = {p.key: p.value for p in model.metadata_props}
        half = tag.endswith("_half")
        end2end = meta.get("end2end") == "True"
        x = np.fromfile(folder / f"{tag}.input.f32", dtype=np.float32).reshape(1, 3, IMGSZ, IMGSZ)
        ref = np.fromfile(folder / f"{tag}.ember.f32", dtype=np.float32)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        out = sess.run(None, {inp.name: x.astype(np.float16 if half else np.float32)})[0].astype(np.float32)[0]
        ref = ref.reshape(out.shape)
        b, s, c = split_rel(out, ref, end2end)
        size = path.stat().st_size / 2**20
        extra = f", rows found {c:.3f}" if c is not None else ""
        print(f"{tag}: {size:.1f} MB, input {inp.name} {inp.shape} {inp.type}, output0 {sess.get_outputs()[0].shape}")
        print(f"  onnxruntime {ort.__version__} vs ember: boxes {b:.2e}, scores {s:.2e}{extra}")
        print(f"  metadata: { {k: meta[k] for k in ('stride', 'imgsz', 'task', 'batch', 'end2end') if k in meta} }")

        from ultralytics.nn.tasks import DetectionModel

        sd = load_file(str(folder / f"{tag}.safetensors"))
        name = "yolov8n" if tag.startswith("yolov8n") else "yolo26n"
        nc = sd[[k for k in sd if k.endswith("cv3.0.2.weight")][0]].shape[0]
        net = DetectionModel(f"{name}.yaml", nc=nc, verbose=False)
        result = net.load_state_dict(sd, strict=True)
        print(f"  PyTorch strict load_state_dict on Ultralytics {name}: {result}")
        net.eval()
        head = net.model[-1]
        if hasattr(head, "one2one_cv2") and head.one2one_cv2 is not None:
            head.end2end = end2end
        with torch.no_grad():
            y = net(torch.from_numpy(x))
        y = (y[0] if isinstance(y, (tuple, list)) else y)[0].numpy()
        b, s, c = split_rel(y, ref, end2end)
        extra = f", rows found {c:.3f}" if c is not None else ""
        print(f"  Ultralytics PyTorch forward vs ember: boxes {b:.2e}, scores {s:.2e}{extra}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ember-dump")
