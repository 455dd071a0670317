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
    """Random photometric, geometric and erasing augmentation of a whole batch.

    Each image first gets its own camera-like changes where asked (contrast, gamma, Gaussian
    blur, JPEG compression, sensor noise: what other cameras and lighting do to a face), then
    its own horizontal flip, rotation, scale and shift (the random crop with padding of the
    usual pipelines), applied as a single ``affine_grid`` + ``grid_sample``; then random
    erasing (Zhong et al. 2020) fills one rectangle with uniform noise. Everything is drawn
    from the global torch generator.

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
        contrast: maximum change of contrast about the image's mean (factor uniform in
            ``[1 - contrast, 1 + contrast]``; 0: off).
        gamma: maximum log of the gamma exponent (``x ** exp(u)``, ``u`` uniform in
            ``[-gamma, gamma]``; 0: off).
        blur: probability of a Gaussian blur, its sigma uniform in ``blur_sigma`` (pixels).
        jpeg: probability of JPEG compression, its quality uniform in ``jpeg_quality`` (1-100).
        noise: maximum standard deviation of added Gaussian noise (of the [0, 1] range; each
            image's uniform in ``[0, noise]``; 0: off).

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
        contrast: float = 0.0,
        gamma: float = 0.0,
        blur: float = 0.0,
        blur_sigma: tuple[float, float] = (0.5, 1.5),
        jpeg: float = 0.0,
        jpeg_quality: tuple[int, int] = (30, 90),
        noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.flip, self.rotation, self.scale, self.shift = flip, rotation, tuple(scale), shift
        self.erase, self.erase_area, self.padding_mode = erase, tuple(erase_area), padding_mode
        self.contrast, self.gamma, self.noise = contrast, gamma, noise
        self.blur, self.blur_sigma, self.jpeg, self.jpeg_quality = blur, tuple(blur_sigma), jpeg, tuple(jpeg_quality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(b, device=x.device) * (high - low) + low

        x = self.photometric(x, uniform)

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

    def photometric(self, x: torch.Tensor, uniform) -> torch.Tensor:
        """Contrast, gamma, blur, JPEG and noise, each image its own (see the class)."""
        b = len(x)
        if self.contrast > 0:
            mean = x.mean((1, 2, 3), keepdim=True)
            x = ((x - mean) * uniform(1 - self.contrast, 1 + self.contrast).view(b, 1, 1, 1) + mean).clamp(0, 1)
        if self.gamma > 0:
            x = x.clamp_min(1e-6) ** uniform(-self.gamma, self.gamma).exp().view(b, 1, 1, 1)
        if self.blur > 0:
            x = torch.where(
                (torch.rand(b, device=x.device) < self.blur).view(b, 1, 1, 1), _blur(x, uniform(*self.blur_sigma)), x
            )
        if self.jpeg > 0:
            chosen = (torch.rand(b) < self.jpeg).nonzero().flatten().tolist()
            if chosen:
                qualities = torch.randint(self.jpeg_quality[0], self.jpeg_quality[1] + 1, (len(chosen),)).tolist()
                x = x.clone()
                for k, q in zip(chosen, qualities):
                    x[k] = _jpeg(x[k], q)
        if self.noise > 0:
            x = (x + torch.randn_like(x) * uniform(0, self.noise).view(b, 1, 1, 1)).clamp(0, 1)
        return x


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` images each blurred by a Gaussian of its own ``sigma`` ``(B,)`` (pixels), 7 taps."""
    b, c, h, w = x.shape
    taps = torch.arange(-3, 4, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma.view(b, 1).to(x.dtype) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 7)
    y = F.pad(x.reshape(1, b * c, h, w), (3, 3, 3, 3), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, 7), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, 7, 1), groups=b * c)
    return y.view(b, c, h, w)


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A ``float (C, H, W)`` image in [0, 1] through JPEG at ``quality`` (torchvision's codec, on the CPU)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    data = (image * 255).round().to(torch.uint8).cpu()
    return (decode_jpeg(encode_jpeg(data, quality=quality)).to(image.device, image.dtype) / 255).view_as(image)
