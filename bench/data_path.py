"""Data path: images per second of the workbench's loader vs a plain torch DataLoader.

Both read the same folder of JPEG files (one sub-folder per class, as torchvision's
ImageFolder expects) and deliver the same thing: shuffled batches of normalised float
images with a random 4-pixel-padded crop and a horizontal flip.

- reference: `torch.utils.data.DataLoader` over `torchvision.datasets.ImageFolder` with the
  usual per-image transforms (Resize, RandomCrop(padding=4), RandomHorizontalFlip, ToTensor,
  Normalize): every epoch decodes every file again. Timed with 0 and with 2 worker
  processes; the faster one is the reference.
- workbench: `read_image_folder` (what `load_dataset` uses for a folder) decodes each file
  once into a uint8 tensor, then `BatchLoader` augments whole batches at once (as airbench).
  Its time includes that one-off decoding.

The ratio is workbench images/s over reference images/s for the whole run (all epochs), and
per epoch once the data is loaded. Repeats are interleaved; medians are printed.

    python bench/data_path.py [--images 5000] [--epochs 3] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.data import BatchLoader
from engine.data.datasets import ImageSet
from engine.data.sources import read_image_folder

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def write_folder(root: Path, n: int, size: int, classes: int = 10) -> None:
    """`n` JPEG files of `size` x `size` (photo-like: smooth gradients plus noise), 10 classes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c = i % classes
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
        base = np.stack([np.sin(3 * xx + c), np.cos(2 * yy - c), xx * yy], -1) * 100 + 128
        noise = rng.normal(0, 20, (size, size, 3))
        image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        image.save(root / f"class_{c}" / f"{i:05d}.jpg", quality=90)


def reference(root: Path, size: int, batch: int, epochs: int, workers: int) -> float:
    """Seconds for `epochs` epochs of a plain DataLoader (every file decoded every epoch)."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose([
        T.Resize((size, size)), T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(),
        T.ToTensor(), T.Normalize(MEAN, STD),
    ])  # fmt: skip
    loader = torch.utils.data.DataLoader(
        ImageFolder(str(root), transform=transform), batch_size=batch, shuffle=True,
        num_workers=workers, persistent_workers=workers > 0,
    )  # fmt: skip
    start = time.perf_counter()
    for _ in range(epochs):
        for x, _y in loader:
            assert x.dtype == torch.float32
    return time.perf_counter() - start


def workbench(root: Path, size: int, batch: int, epochs: int) -> tuple[float, float]:
    """(seconds for the whole run including the one-off decoding, seconds of that decoding)."""
    start = time.perf_counter()
    images, labels, _ = read_image_folder(root, size)
    loaded = time.perf_counter() - start
    loader = BatchLoader(ImageSet(images, labels, torch.arange(len(labels))), batch, MEAN, STD,
                         shuffle=True, augment=True)  # fmt: skip
    for epoch in range(epochs):
        for x, _y, _ in loader.batches(epoch):
            assert x.dtype == torch.float32
    return time.perf_counter() - start, loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores - 1))
    print(f"{a.images} JPEG files, {a.size} px, batch {a.batch}, {a.epochs} epochs, "
          f"{cores} cores, torch {torch.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_folder(root, a.images, a.size + 16)  # resized on reading, as real photos are
        times: dict[str, list[float]] = {"ref0": [], "ref2": [], "wb": [], "load": []}
        for _ in range(a.repeats):
            times["ref0"].append(reference(root, a.size, a.batch, a.epochs, 0))
            times["ref2"].append(reference(root, a.size, a.batch, a.epochs, 2))
            total, loaded = workbench(root, a.size, a.batch, a.epochs)
            times["wb"].append(total)
            times["load"].append(loaded)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = a.images * a.epochs
    ref_key = min(("ref0", "ref2"), key=med.get)
    ref_rate, wb_rate = n / med[ref_key], n / med["wb"]
    wb_epoch = (med["wb"] - med["load"]) / a.epochs
    ref_epoch = med[ref_key] / a.epochs
    print(f"DataLoader, 0 workers : {n / med['ref0']:8.0f} images/s")
    print(f"DataLoader, 2 workers : {n / med['ref2']:8.0f} images/s")
    print(f"workbench             : {wb_rate:8.0f} images/s  (decoding once: {med['load']:.2f} s, "
          f"then {a.images / wb_epoch:.0f} images/s per epoch)")  # fmt: skip
    print()
    print("| measure | DataLoader (best of 0/2 workers) | workbench | ratio |")
    print("|---|---|---|---|")
    print(f"| whole run, {a.epochs} epochs incl. decoding | {ref_rate:,.0f} images/s | "
          f"{wb_rate:,.0f} images/s | **{wb_rate / ref_rate:.1f}x** |")  # fmt: skip
    print(f"| one epoch once loaded | {a.images / ref_epoch:,.0f} images/s | "
          f"{a.images / wb_epoch:,.0f} images/s | **{ref_epoch / wb_epoch:.0f}x** |")  # fmt: skip


if __name__ == "__main__":
    main()
