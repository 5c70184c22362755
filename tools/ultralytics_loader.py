"""Ultralytics 8.4.190's training input pipeline alone, on a folder of images: its YOLODataset with the default
augmentation (mosaic, random affine, HSV, flips, Format) and its InfiniteDataLoader, as its trainer builds them.

    /opt/ultra/bin/python tools/ultralytics_loader.py rate IMAGES IMGSZ BATCH WORKERS WARMUP BATCHES
        images/s after WARMUP batches, over BATCHES batches (the loader runs on across epochs, as in training)
    /opt/ultra/bin/python tools/ultralytics_loader.py profile IMAGES IMGSZ IMAGES_TO_TIME
        milliseconds of CPU per image for each stage, in this process (no workers)

IMAGES is an images/ folder with a labels/ folder beside it. Run by tools/bench_input.sh.
"""

import os
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")

from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.data.build import build_dataloader, build_yolo_dataset  # noqa: E402
from ultralytics.utils import DEFAULT_CFG  # noqa: E402


def dataset(images, imgsz, batch):
    cfg = get_cfg(DEFAULT_CFG, {"imgsz": imgsz, "batch": batch})
    data = {"names": {i: str(i) for i in range(80)}, "nc": 80, "channels": 3}
    return build_yolo_dataset(cfg, images, batch, data, mode="train")


def rate(images, imgsz, batch, workers, warmup, batches):
    ds = dataset(images, imgsz, batch)
    # build_dataloader caps the workers at the CPU count, as the trainer does; on CPU no devices.
    loader = build_dataloader(ds, batch, workers, shuffle=True, device="cpu")
    def epochs():  # one pass is one epoch; the worker processes (and their buffers) persist between passes
        while True:
            yield from loader

    it = epochs()
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["img"].shape[0]
    secs = time.perf_counter() - start
    print(f"ultralytics {n} images in {secs:.2f} s = {n / secs:.1f} images/s, {loader.num_workers} worker processes")


class Clock:
    """CPU time of this thread spent inside wrapped calls, nested wrapped calls taken out (a stage's cost even
    when other jobs share the cores)."""

    def __init__(self):
        self.totals = {}
        self.stack = []

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            self.stack.append(0.0)
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                nested = self.stack.pop()
                self.totals[name] = self.totals.get(name, 0.0) + spent - nested
                if self.stack:
                    self.stack[-1] += spent

        return timed


def profile(images, imgsz, count):
    import torch

    torch.set_num_threads(1)  # as in a DataLoader worker: every stage runs on this thread
    batch = 16
    ds = dataset(images, imgsz, batch)
    clock = Clock()
    ds.load_image = clock.wrap("decode + resize (load_image)", ds.load_image)

    def leaves(t):
        return [x for s in t.transforms for x in leaves(s)] if hasattr(t, "transforms") else [t]

    for t in leaves(ds.transforms):
        name = type(t).__name__
        if name == "RandomFlip":
            name += " " + t.direction
        # Python looks __call__ up on the class: give each transform a subclass whose __call__ is timed.
        t.__class__ = type(type(t).__name__, (type(t),), {"__call__": clock.wrap(name, type(t).__call__)})
    collate = clock.wrap("collate (torch.stack)", ds.collate_fn)
    # The mosaic buffer filled first (min(n, 8 * batch) images), as a worker in training would have it; the
    # timed images follow on, so on a set larger than the buffer each one is decoded, as in ember's profile.
    warm = min(len(ds), 8 * batch)
    for i in range(warm):
        ds[i]
    clock.totals.clear()
    n, start = 0, time.thread_time()
    while n < count:
        items = [ds[(warm + n + k) % len(ds)] for k in range(batch)]
        collate(items)
        n += batch
    total = time.thread_time() - start
    for name, secs in clock.totals.items():
        print(f"ultralytics stage | {name} | {1000 * secs / n:.2f} ms")
    rest = total - sum(clock.totals.values())
    print(f"ultralytics stage | other (dataset indexing, labels, Python) | {1000 * rest / n:.2f} ms")
    print(f"ultralytics stage | total | {1000 * total / n:.2f} ms CPU ({n / total:.1f} images/s of CPU time)")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "rate":
        images, imgsz, batch, workers, warmup, batches = args[0], *map(int, args[1:])
        rate(images, imgsz, batch, workers, warmup, batches)
    elif mode == "profile":
        profile(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown mode {mode}: rate or profile")
