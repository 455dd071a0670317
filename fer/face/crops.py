"""Face crops and network inputs: what training data and live inference share.

:func:`crop_faces` cuts detected faces out of an image as the CK+ and BAUM-2 data
modules store them and as ``infer.py`` feeds them; :func:`preprocess` turns a ``uint8``
batch into a normalised network input, for a data module's batches and for live faces
alike, so a face seen live is treated exactly as in training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: Mean and standard deviation of FER-2013's Training split, grey levels scaled to
#: [0, 1] (measured over its 28,709 images: 0.5077 and 0.2550).
FER2013_MEAN = 0.5077
FER2013_STD = 0.2550


def preprocess(
    images: torch.Tensor,
    image_size: int | None = None,
    mean: float = FER2013_MEAN,
    std: float = FER2013_STD,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Turn a batch of ``uint8`` images into a normalised network input.

    Args:
        images: ``uint8`` tensor ``(B, C, H, W)`` with grey levels 0-255
            (``(B, H, W)`` is taken as one channel).
        image_size: side length of the square output in pixels; ``None`` keeps ``H, W``.
        mean, std: normalisation on the [0, 1] scale (defaults: FER-2013 Training).
        augment: applied to the [0, 1] batch before normalising, e.g. ``fer.data.transforms.BatchAugment``.

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


def crop_faces(
    image: np.ndarray, boxes: Sequence[np.ndarray], size: int = 48, margin: float = 0.1, shift: float = 0.0
) -> torch.Tensor:
    """Square face crops of an image, as data modules and ``infer.py`` feed them to a network.

    Each box is widened to a square of side ``max(w, h) * (1 + margin)`` around its
    centre, moved down by ``shift * max(w, h)`` (pixels outside the image repeat the border),
    and resized to ``size``.

    Args:
        image: ``uint8`` ``(H, W)`` grey or ``(H, W, 3)`` BGR image.
        boxes: ``(x1, y1, x2, y2)`` pixel boxes.
        size: output side in pixels (48 for FER-2013 networks).
        margin: extra fraction of the box side.
        shift: vertical move of the crop's centre, a fraction of the box side (negative: up).

    Returns:
        ``uint8`` tensor ``(len(boxes), C, size, size)``, ``C`` = 1 for grey, 3 for BGR.
    """
    channels = 1 if image.ndim == 2 else image.shape[2]
    height, width = image.shape[:2]
    crops = np.empty((len(boxes), size, size, channels), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(b, dtype=np.float64)[:4] for b in boxes):
        box_side = max(x2 - x1, y2 - y1)
        side = max(1, round(box_side * (1 + margin)))
        top, left = round((y1 + y2 - side) / 2 + shift * box_side), round((x1 + x2 - side) / 2)
        pad = max(0, -top, -left, top + side - height, left + side - width)
        source = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
        crop = source[top + pad : top + pad + side, left + pad : left + pad + side]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        crops[k] = crop.reshape(size, size, channels)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()


def largest_box(boxes: Sequence[np.ndarray]) -> np.ndarray | None:
    """The box ``(x1, y1, x2, y2)`` of largest area, or ``None`` for no boxes (one face per image)."""
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)
