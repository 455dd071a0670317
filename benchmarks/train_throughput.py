"""Training throughput of the deep CNN: our pipeline against a naive torchvision one.

    python benchmarks/train_throughput.py [--steps 20] [--data ../shared/data]

Measures, in one run on this machine:
  * images/s of ``FER2013DataModule`` + ``EmotionClassifier`` in a Lightning Trainer
    (uint8 tensors in memory, batched augmentation, channels_last, the precision that
    ``fast_precision()`` picks), and the same with bf16-mixed forced;
  * images/s of a naive pipeline: torchvision ``ImageFolder`` + PIL transforms +
    ``DataLoader`` and a plain fp32 training loop, on the FER-2013 folder export;
  * the parse time of the full official CSV;
  * the bf16 channels_last training step of ResNet-18 at widths 64, 48 and 32 (``model.net.width``;
    the fast configuration's is 32), plain PyTorch, as ratios to the full width.
Prints each figure and the ratios to the naive pipeline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from fer.data import FER2013DataModule, load_fer2013
from fer.device import fast_precision
from fer.face.crops import FER2013_MEAN, FER2013_STD
from fer.models import deep_cnn, resnet18
from fer.training.module import EmotionClassifier

BATCH = 64


class _Timer(pl.Callback):
    """Seconds and images of the training batches after the first ``warmup``."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.images, self.start = warmup, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.images += len(batch[1])
            self.seconds = time.perf_counter() - self.start


def ours(steps: int, precision: str) -> float:
    torch.manual_seed(0)
    dm = FER2013DataModule(batch_size=BATCH, augment={})
    model = EmotionClassifier(deep_cnn(), class_names=dm.class_names)
    timer = _Timer()
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=steps + timer.warmup,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    return timer.images / timer.seconds


def naive(steps: int, folder: Path, warmup: int = 3) -> float:
    torch.manual_seed(0)
    tf = transforms.Compose(
        [
            transforms.Grayscale(),
            transforms.RandomCrop(48, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.RandomAffine(10, scale=(0.9, 1.1)),
            transforms.ToTensor(),
            transforms.Normalize([FER2013_MEAN], [FER2013_STD]),
            transforms.RandomErasing(0.25),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(folder / "train"), transform=tf), batch_size=BATCH, shuffle=True, drop_last=True
    )
    net = deep_cnn()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    done, images, start = 0, 0, 0.0
    while done < steps + warmup:
        for x, y in loader:
            if done == warmup:
                start = time.perf_counter()
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            images += len(y) if done > warmup else 0
            if done >= steps + warmup:
                break
    return images / (time.perf_counter() - start)


def resnet_step(width: int, steps: int, warmup: int = 3) -> float:
    """Seconds of one bf16 channels_last AdamW step of 64 random 48x48 faces through ``resnet18(width=width)``."""
    torch.manual_seed(0)
    net = resnet18(width=width).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (BATCH,))
    for i in range(steps + warmup):
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps of each pipeline")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()

    csv = args.data / "fer2013" / "fer2013.csv.gz"
    start = time.perf_counter()
    n = len(load_fer2013(csv).labels)
    print(f"full CSV parse: {n} rows in {time.perf_counter() - start:.1f} s ({csv})")

    base = naive(args.steps, args.data / "fer2013" / "folders_sample")
    print(f"naive ImageFolder + PIL + DataLoader, fp32: {base:6.1f} images/s")
    auto = fast_precision("cpu")
    fast = ours(args.steps, auto)
    print(f"fer data module + EmotionClassifier, {auto}: {fast:6.1f} images/s  ({fast / base:.2f}x naive)")
    other = "32-true" if auto == "bf16-mixed" else "bf16-mixed"
    slow = ours(args.steps if other == "32-true" else max(2, args.steps // 10), other)
    print(f"fer data module + EmotionClassifier, {other}: {slow:6.1f} images/s  ({slow / base:.2f}x naive)")

    full = resnet_step(64, args.steps)
    for width in (64, 48, 32):
        step = full if width == 64 else resnet_step(width, args.steps)
        print(f"ResNet-18 width {width}, bf16 step of {BATCH}: {step:.3f} s  ({step / full:.2f}x width 64)")


if __name__ == "__main__":
    main()
