"""The base of every data module: splits held in memory as tensors, batches prepared on the device."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset, WeightedRandomSampler

from fer.data.transforms import BatchAugment
from fer.face.crops import FER2013_MEAN, FER2013_STD, preprocess


def cache_key(*parts: Any) -> str:
    """A short stable hash of ``parts`` (their ``repr``), naming a cache file of derived data."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _global_seed() -> int:
    """The seed :func:`pytorch_lightning.seed_everything` recorded (0 if none)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class ResumableSampler(DistributedSampler):
    """The training order (a seeded permutation per epoch, dealt over DDP processes), resumable mid-epoch.

    Counts the batches trained in the current epoch (:attr:`batches_done`, advanced by
    the data module for every training batch); after :meth:`resume_at` the first pass over
    that epoch skips the batches already trained, so a run stopped mid-epoch and resumed
    sees exactly the batches an uninterrupted one would. A ``DistributedSampler``, so
    Lightning leaves it in place under DDP.

    Args:
        dataset, num_replicas, rank, seed: see ``DistributedSampler`` (shuffled).
        batch_size: images per batch of this process, to turn batches into indices.
    """

    def __init__(self, dataset: TensorDataset, num_replicas: int, rank: int, seed: int, batch_size: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.batches_done = batch_size, 0
        self._skip: dict[int, int] = {}

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Skip ``batches_done`` batches the next time ``epoch`` starts."""
        self._skip = {epoch: batches_done}

    def __iter__(self) -> Iterator[int]:
        skip = self._skip.pop(self.epoch, 0)
        self.batches_done = skip
        return itertools.islice(super().__iter__(), skip * self.batch_size, None)


class InMemoryDataModule(pl.LightningDataModule):
    """Base of the image data modules: ``uint8`` splits in memory, augmentation on the device.

    Subclasses set :attr:`class_names` and implement :meth:`load_splits`. Batches leave
    the loader as ``uint8`` and are normalised (and, in training, augmented) on the
    device by :meth:`on_after_batch_transfer`.

    Args:
        batch_size: images per batch.
        num_workers: loader worker processes (0 is fastest for in-memory data).
        image_size: network input side in pixels.
        augment: keyword arguments of :class:`~fer.data.transforms.BatchAugment`,
            or ``None`` for no augmentation.
        balance: ``"none"``; ``"sampler"`` draws training images with probability
            inversely proportional to their class size; ``"loss"`` exposes
            :attr:`class_weights` for a weighted cross-entropy.
        mean, std: normalisation on the [0, 1] scale.
    """

    class_names: tuple[str, ...] = ()
    num_channels = 1
    #: constructor arguments kept out of the checkpoint's hyper-parameters (objects)
    hparams_ignore: tuple[str, ...] = ()

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        image_size: int = 48,
        augment: dict[str, Any] | None = None,
        balance: str = "none",
        mean: float = FER2013_MEAN,
        std: float = FER2013_STD,
    ) -> None:
        super().__init__()
        if balance not in ("none", "sampler", "loss"):
            raise ValueError(f"balance must be 'none', 'sampler' or 'loss', not {balance!r}")
        self.save_hyperparameters(ignore=list(self.hparams_ignore))  # also records the subclass's arguments
        self.batch_size, self.num_workers, self.image_size = batch_size, num_workers, image_size
        self.balance, self.mean, self.std = balance, mean, std
        self.augment = BatchAugment(**augment) if augment is not None else None
        self.splits: dict[str, TensorDataset] = {}
        self.sampler: ResumableSampler | None = None
        self._resume: dict[str, int] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def skipped(self) -> dict[str, int]:
        """Inputs left out as bad (``on_bad_row="skip"``), per reason; reported in ``metrics.json``."""
        return {}

    @property
    def input_spec(self) -> dict[str, int]:
        """What a network needs to know of the inputs, as its constructor arguments.

        Images: ``in_channels`` and ``input_size`` (batches ``(B, C, S, S)``); subclasses
        add ``clip_length`` (clips ``(B, T, C, S, S)``) or give ``in_features``
        (feature vectors ``(B, F)``).
        """
        return {"in_channels": self.num_channels, "input_size": self.image_size}

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"train"|"val"|"test": (uint8 images (N, C, H, W), int64 labels (N,))}``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {name: TensorDataset(*split) for name, split in self.load_splits().items()}

    @property
    def class_counts(self) -> torch.Tensor:
        """Training images per class, ``int64`` ``(num_classes,)``."""
        labels = self.splits["train"].tensors[1]
        if labels.is_floating_point():  # soft targets (FER+): count each image's largest class
            labels = labels.argmax(1)
        return torch.bincount(labels, minlength=self.num_classes)

    @property
    def class_weights(self) -> torch.Tensor | None:
        """Inverse-frequency class weights when ``balance="loss"``, else ``None``.

        ``n / (k * n_c)`` for the ``k`` classes present (1 for every class of a
        balanced set; scikit-learn's "balanced"), 0 for classes without images.
        """
        if self.balance != "loss":
            return None
        return self._inverse_frequency()

    def _inverse_frequency(self) -> torch.Tensor:
        counts = self.class_counts.float()
        return torch.where(counts > 0, counts.sum() / (counts.count_nonzero() * counts), 0.0)

    def _train_sampler(self, dataset: TensorDataset) -> Sampler:
        """The training order: a permutation seeded by the run's seed and the epoch.

        The same permutation for one process as for ``n`` DDP processes, dealt round-robin
        (so ``n`` processes with batch ``b`` see the batches of one process with ``n * b``),
        and the same order after a resume as in an uninterrupted run, also in the middle of
        an epoch (:class:`ResumableSampler`). With ``balance="sampler"`` the draws are
        seeded once, not per epoch, and a resume restarts the epoch's draws. The seed is
        the run's, see :func:`_global_seed`.
        """
        seed = _global_seed()
        if self.balance == "sampler":  # Lightning spreads it over DDP processes itself
            weights = self._inverse_frequency()[dataset.tensors[1]]
            generator = torch.Generator().manual_seed(seed)
            return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        self.sampler = ResumableSampler(dataset, world, rank, seed, self.batch_size)
        if self._resume:
            self.sampler.resume_at(self._resume["epoch"], self._resume["batches_done"])
        return self.sampler

    # where a run is inside its epoch travels in checkpoints (Lightning saves a data module's state)
    def state_dict(self) -> dict[str, int]:
        return {} if self.sampler is None else {"epoch": self.sampler.epoch, "batches_done": self.sampler.batches_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict)
        if self.sampler is not None and state_dict:
            self.sampler.resume_at(state_dict["epoch"], state_dict["batches_done"])

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.sampler is not None and self.trainer is not None and self.trainer.training:
            self.sampler.batches_done += 1
        return batch

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        dataset = self.splits[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self._train_sampler(dataset) if train else None,
            # its own generator: making an iterator must not draw from the global one
            generator=torch.Generator().manual_seed(_global_seed()),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        x = preprocess(images, self.image_size, self.mean, self.std, augment=self.augment if training else None)
        return x, labels
