"""Preprocessing and augmentation that run on whole batches, on the CPU or the GPU.

Data modules keep images as ``uint8`` and hand each batch to :func:`preprocess` (and,
when training, to :class:`BatchAugment`) after it reaches the device; ``infer.py``
prepares detected faces with the same :func:`preprocess`, so a face seen live is
treated exactly as in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Mean and standard deviation of FER-2013's Training split, grey levels scaled to
#: [0, 1] (measured over its 28,709 images: 0.5077 and 0.2550).
FER2013_MEAN = 0.5077
FER2013_STD = 0.2550


def preprocess(
    images: torch.Tensor,
    image_size: int | None = None,
    mean: float = FER2013_MEAN,
    std: float = FER2013_STD,
    augment: nn.Module | None = None,
) -> torch.Tensor:
    """Turn a batch of ``uint8`` images into a normalised network input.

    Args:
        images: ``uint8`` tensor ``(B, C, H, W)`` with grey levels 0-255
            (``(B, H, W)`` is taken as one channel).
        image_size: side length of the square output in pixels; ``None`` keeps ``H, W``.
        mean, std: normalisation on the [0, 1] scale (defaults: FER-2013 Training).
        augment: applied to the [0, 1] batch before normalising, e.g. :class:`BatchAugment`.

    Returns:
        ``float32`` tensor ``(B, C, image_size, image_size)``, ``(x / 255 - mean) / std``.
    """
    x = images.unsqueeze(1) if images.ndim == 3 else images
    x = x.float().div_(255)
    if image_size is not None and x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    if augment is not None:
        x = augment(x)
    return x.sub_(mean).div_(std)


class BatchAugment(nn.Module):
    """Random geometric and erasing augmentation of a whole batch in one warp.

    Each image gets its own horizontal flip, rotation, scale and shift (the random crop
    with padding of the usual pipelines) drawn from the global torch generator, applied
    as a single ``affine_grid`` + ``grid_sample``; then random erasing
    (Zhong et al. 2020) fills one rectangle with uniform noise.

    Args:
        flip: probability of a horizontal flip.
        rotation: maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
        scale: minimum and maximum zoom factor.
        shift: maximum shift as a fraction of the side (``4 / 48`` matches a random
            48x48 crop of the image padded by 4 pixels).
        erase: probability of random erasing.
        erase_area: minimum and maximum erased fraction of the image.
        padding_mode: how the warp fills pixels from outside: ``"zeros"``,
            ``"border"`` or ``"reflection"``.

    Input and output: ``float`` tensor ``(B, C, H, W)`` in [0, 1].
    """

    def __init__(
        self,
        flip: float = 0.5,
        rotation: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        shift: float = 4 / 48,
        erase: float = 0.25,
        erase_area: tuple[float, float] = (0.02, 0.15),
        padding_mode: str = "reflection",
    ) -> None:
        super().__init__()
        self.flip, self.rotation, self.scale, self.shift = flip, rotation, tuple(scale), shift
        self.erase, self.erase_area, self.padding_mode = erase, tuple(erase_area), padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(b, device=x.device) * (high - low) + low

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
        zoom = uniform(*self.scale)
        mirror = torch.where(torch.rand(b, device=x.device) < self.flip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid maps output to input coordinates in [-1, 1]; a shift of s of the side is 2s.
        theta = torch.stack(
            [
                torch.stack([cos * mirror, -sin, uniform(-2 * self.shift, 2 * self.shift)], 1),
                torch.stack([sin * mirror, cos, uniform(-2 * self.shift, 2 * self.shift)], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode=self.padding_mode, align_corners=False)
        if self.erase > 0:
            area = uniform(*self.erase_area) * h * w
            aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
            eh = (area * aspect).sqrt().clamp(1, h).long()
            ew = (area / aspect).sqrt().clamp(1, w).long()
            top = (torch.rand(b, device=x.device) * (h - eh + 1)).long()
            left = (torch.rand(b, device=x.device) * (w - ew + 1)).long()
            rows = torch.arange(h, device=x.device).view(1, h, 1)
            cols = torch.arange(w, device=x.device).view(1, 1, w)
            inside = (
                (rows >= top.view(-1, 1, 1))
                & (rows < (top + eh).view(-1, 1, 1))
                & (cols >= left.view(-1, 1, 1))
                & (cols < (left + ew).view(-1, 1, 1))
                & (torch.rand(b, 1, 1, device=x.device) < self.erase)
            )
            x = torch.where(inside.unsqueeze(1), torch.rand_like(x), x)
        return x


def crop_faces(image: np.ndarray, boxes: Sequence[np.ndarray], size: int = 48, margin: float = 0.1) -> torch.Tensor:
    """Square face crops of an image, as data modules and ``infer.py`` feed them to a network.

    Each box is widened to a square of side ``max(w, h) * (1 + margin)`` around its
    centre (pixels outside the image repeat the border) and resized to ``size``.

    Args:
        image: ``uint8`` ``(H, W)`` grey or ``(H, W, 3)`` BGR image.
        boxes: ``(x1, y1, x2, y2)`` pixel boxes.
        size: output side in pixels (48 for FER-2013 networks).
        margin: extra fraction of the box side.

    Returns:
        ``uint8`` tensor ``(len(boxes), C, size, size)``, ``C`` = 1 for grey, 3 for BGR.
    """
    channels = 1 if image.ndim == 2 else image.shape[2]
    height, width = image.shape[:2]
    crops = np.empty((len(boxes), size, size, channels), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(b, dtype=np.float64)[:4] for b in boxes):
        side = max(1, round(max(x2 - x1, y2 - y1) * (1 + margin)))
        top, left = round((y1 + y2 - side) / 2), round((x1 + x2 - side) / 2)
        pad = max(0, -top, -left, top + side - height, left + side - width)
        source = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
        crop = source[top + pad : top + pad + side, left + pad : left + pad + side]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        crops[k] = crop.reshape(size, size, channels)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
