#!/usr/bin/env python3
"""Score ember's COCO JSON files with pycocotools (not run by CI).

Produce the files with:
    EMBER_COCO_OUT=/tmp/ember_coco cargo test --release --test metrics_coco export_fixture_as_coco
then:
    /work/venv/bin/python tools/reference/metrics_cocoeval.py /tmp/ember_coco/gt.json /tmp/ember_coco/predictions.json

COCOeval's mAP differs from Ultralytics' by design (per-image maxDets=100, area ranges, 101-point sum without the
trapezoid, different tie handling), so the two numbers are reported side by side, not compared.
"""

import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main() -> None:
    gt_path, dt_path = sys.argv[1], sys.argv[2]
    gt = COCO(gt_path)
    dt = gt.loadRes(dt_path)
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    print(json.dumps({"mAP50-95": ev.stats[0], "mAP50": ev.stats[1], "mAP75": ev.stats[2]}))


if __name__ == "__main__":
    main()
