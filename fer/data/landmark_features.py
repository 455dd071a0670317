"""Landmark-distance features of any image data module, for :class:`~fer.models.LandmarkMLP`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fer.data.base import InMemoryDataModule, cache_key
from fer.face.landmarks import NUM_PAIRS, landmarks_of_crops, make_landmarker, pairwise_distances


class LandmarkFeatureDataModule(InMemoryDataModule):
    """The 2,278 pairwise landmark distances of every face of an image data module.

    Landmarks come from ``backend`` on each face crop (upsampled, the whole crop as the
    face box), cached per data set, split and backend in ``cache_dir``. Features are
    standardised with the training split's mean and standard deviation.

    Args:
        images: the image data module (FER-2013, CK+, ...) whose splits to use.
        backend: ``"dlib"`` (CPU, offline) or ``"face_alignment"`` (GPU).
        cache_dir: where landmarks are cached (``None``: no cache).
        upsample: side in pixels to which crops are enlarged for the landmarker.
        **kwargs: batch size and friends, see :class:`InMemoryDataModule`.
    """

    hparams_ignore = ("images",)

    def __init__(
        self,
        images: InMemoryDataModule,
        backend: str = "dlib",
        cache_dir: str | None = None,
        upsample: int = 192,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mean", 0.0)
        kwargs.setdefault("std", 1.0)
        super().__init__(**kwargs)
        self.images, self.backend, self.cache_dir, self.upsample = images, backend, cache_dir, upsample
        self.class_names = images.class_names
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None

    @property
    def input_spec(self) -> dict[str, int]:
        return {"in_features": NUM_PAIRS}

    def prepare_data(self) -> None:
        self.images.prepare_data()

    def _cache(self, split: str) -> Path | None:
        if not self.cache_dir:
            return None
        skip = {"batch_size", "num_workers", "augment", "balance"}
        settings = {k: v for k, v in self.images.hparams.items() if k not in skip}
        key = cache_key(sorted(settings.items()))
        name = type(self.images).__name__.removesuffix("DataModule").lower()
        return Path(self.cache_dir) / f"landmarks_{name}_{key}_{self.backend}_{split}.npz"

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self.images.setup()
        landmarker = make_landmarker(self.backend)
        splits = {}
        for split, dataset in self.images.splits.items():
            crops, labels = dataset.tensors
            points = landmarks_of_crops(crops, landmarker, self.upsample, self._cache(split))
            splits[split] = (pairwise_distances(points), labels)
        train = splits["train"][0]
        self.feature_mean, self.feature_std = train.mean(0), train.std(0).clamp_min(1e-6)
        return splits

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = batch
        mean, std = self.feature_mean.to(features.device), self.feature_std.to(features.device)
        return (features - mean) / std, labels
