"""Training augmentation that runs on whole batches, on the CPU or the GPU.

Data modules keep images as ``uint8`` and hand each batch to
:func:`fer.face.crops.preprocess` with a :class:`BatchAugment` after it reaches the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
