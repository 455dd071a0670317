"""The prediction half of an expression classifier: a network, its class names and its test-time views.

:class:`ExpressionPredictor` is a plain ``nn.Module`` (no Lightning): the recognizer, the
exporters and the evaluation read checkpoints into it (:func:`fer.checkpoint.load_predictor`),
and :class:`~fer.training.module.EmotionClassifier` wraps it for training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2.functional import center_crop, five_crop

from fer.models import build_network

#: Test-time view settings (see :class:`ExpressionPredictor`), which a command line may set for a checkpoint.
VIEWS = ("tta_flip", "tta_shift", "tta_rotate", "ten_crop")


def check_views(
    tta_flip: bool = False, tta_shift: int = 0, tta_rotate: float = 0.0, ten_crop: bool | str = False
) -> None:
    """Raises ValueError for test-time views :class:`ExpressionPredictor` cannot take (see its arguments)."""
    if ten_crop not in (True, False, "test"):
        raise ValueError(f"ten_crop must be true, false or 'test', not {ten_crop!r}")
    if tta_shift < 0:
        raise ValueError(f"tta_shift must be a number of pixels >= 0, not {tta_shift}")
    if not 0 <= tta_rotate < 90:
        raise ValueError(f"tta_rotate must be an angle in degrees in [0, 90), not {tta_rotate}")


def _rotated(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` rotated by ``degrees`` about its centre, bilinear, edge pixels repeated."""
    a = math.radians(degrees)
    theta = x.new_tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    grid = F.affine_grid(theta, [1, *x.shape[1:]], align_corners=False)
    # expanded to x.shape[0], not len(x), which the ONNX exporter would freeze at its example's batch size
    return F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), padding_mode="border", align_corners=False)


def log_mean_softmax(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``(B, classes)`` log of the mean over views of ``softmax(logits / temperature)`` for the
    ``float (V, B, classes)`` logits of ``V`` views (the test-time average of
    :meth:`ExpressionPredictor.view_logits`; differentiable in ``temperature``)."""
    logs = (logits / temperature).log_softmax(-1)
    return logs.logsumexp(0) - torch.log(torch.tensor(float(len(logits))))


def face_temperature(
    logits: torch.Tensor, temperature: float | torch.Tensor = 1.0, entropy_exponent: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Each face's temperature ``float (1, B, 1)`` for the ``float (V, B, classes)`` logits of ``V`` views:
    ``temperature * H(x) ** entropy_exponent``, ``H`` the entropy of the faces' untempered
    :func:`log_mean_softmax` divided by its maximum ``log(classes)`` (in ``(0, 1]``; floored at 1e-6).

    An entropy-based temperature after Balanya et al. 2022 ("Adaptive temperature scaling for robust
    calibration of deep neural networks"): with a positive exponent sure faces are sharpened more than
    unsure ones. Each face's logits are divided by one positive number, so the most probable class of
    one view never changes. Differentiable in ``temperature`` and ``entropy_exponent``.
    """
    log_p = log_mean_softmax(logits.detach())
    entropy = -(log_p.exp() * log_p).sum(-1) / math.log(logits.shape[-1])
    return (temperature * entropy.clamp_min(1e-6) ** entropy_exponent)[None, :, None]


def calibrated(
    logits: torch.Tensor, temperature: float | torch.Tensor = 1.0, entropy_exponent: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Log-probabilities ``(B, classes)`` of ``float (V, B, classes)`` view logits as the predictor computes
    them: :func:`log_mean_softmax` at each face's :func:`face_temperature` (one ``temperature`` for every
    face when ``entropy_exponent`` is the number 0)."""
    if isinstance(entropy_exponent, (int, float)) and not entropy_exponent:
        return log_mean_softmax(logits, temperature)
    return log_mean_softmax(logits, face_temperature(logits, temperature, entropy_exponent))


class ExpressionPredictor(nn.Module):
    """Class probabilities of normalised faces (or clips, or feature vectors) by a network and its test-time views.

    Args:
        net: an ``nn.Module`` mapping ``(B, ...)`` inputs to ``(B, num_classes)`` logits,
            or its config (a ``fer.models`` ``_target_`` and arguments, see
            :func:`fer.models.build_network`).
        class_names: one name per output, in label order; ``num_classes`` is its length.
        tta_flip: average the softmax of the image and its mirror.
        tta_shift: in test/predict, also average over the image moved by this many pixels
            up, down, left and right (edge pixels repeated into the gap), each view cropped
            and mirrored as the others; 0: no shifted views. Validation leaves them out.
        tta_rotate: in test/predict, also average over the image rotated by this many
            degrees each way about its centre (edge pixels repeated into the corners), each
            view cropped and mirrored as the others; 0: no rotated views. Validation leaves
            them out.
        crop: the network's input is the centre ``crop`` x ``crop`` window of the image
            (the 40x40-of-48x48 recipe of the FER-2013 papers, e.g. Pramerdorfer & Kampel
            2016); ``None``: whole images.
        ten_crop: with ``crop``, the four corner crops and the centre crop instead, each
            also mirrored when ``tta_flip``, averaging their softmaxes; ``"test"``: only
            in test and predict, validation keeps the centre crop at a fifth of the cost.
        channels_last: run the network in channels-last memory format (faster convolutions
            on recent CPUs and GPUs); ``None``: where the network has 2-D convolutions.
        temperature: each view's logits are divided by this before its softmax (temperature
            scaling, Guo et al. 2017, fitted on the validation split by :mod:`fer.calibration`;
            1: as trained). It changes probabilities, never the most probable class of one view.
        entropy_exponent: with a non-zero exponent each face's temperature is ``temperature`` times
            the normalised entropy of its untempered prediction to this power
            (:func:`face_temperature`); 0: one temperature for every face.

    Raises:
        ValueError: views :func:`check_views` refuses; a temperature not above 0; a network
        config outside ``fer.models``.

    Attributes:
        net_config: the network's config, where it was given as one (else ``None``).

    The state dict is the network's under ``net.``, the same keys a train.py checkpoint holds.
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        class_names: Sequence[str],
        tta_flip: bool = False,
        tta_shift: int = 0,
        tta_rotate: float = 0.0,
        crop: int | None = None,
        ten_crop: bool | str = False,
        channels_last: bool | None = None,
        temperature: float = 1.0,
        entropy_exponent: float = 0.0,
    ) -> None:
        super().__init__()
        check_views(tta_flip, tta_shift, tta_rotate, ten_crop)
        if not temperature > 0:
            raise ValueError(f"temperature must be above 0, not {temperature}")
        self.temperature, self.entropy_exponent = float(temperature), float(entropy_exponent)
        self.net_config = None if isinstance(net, nn.Module) else dict(net)
        self.net = net if isinstance(net, nn.Module) else build_network(net)
        self.class_names = list(class_names)
        self.tta_flip, self.tta_shift, self.tta_rotate = tta_flip, tta_shift, tta_rotate
        self.crop, self.ten_crop = crop, ten_crop
        self.channels_last = any(p.ndim == 4 for p in self.net.parameters()) if channels_last is None else channels_last
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of the network alone for a normalised float batch."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def views(self, x: torch.Tensor, stage: str = "test") -> list[torch.Tensor]:
        """The test-time views of ``x`` ``(B, C, S, S)`` in ``stage`` (``"val"`` leaves shifts and turns out)."""
        images = [x]
        if (s := self.tta_shift) and stage != "val":
            side = x.shape[-1]
            padded = F.pad(x, (s, s, s, s), mode="replicate")
            for t, u in ((0, s), (2 * s, s), (s, 0), (s, 2 * s)):  # content moved down, up, right, left
                images.append(padded[..., t : t + side, u : u + side])
        if (degrees := self.tta_rotate) and stage != "val":
            images += [_rotated(x, angle) for angle in (degrees, -degrees)]
        crop, ten_crop = self.crop, self.ten_crop
        views = list(images)
        if crop and (not ten_crop or (ten_crop == "test" and stage == "val")):
            views = [center_crop(i, [crop, crop]) for i in images]
        elif crop:  # the four corners and the centre, the windows fer.models.Ensemble takes for a member
            views = [v for i in images for v in five_crop(i, [crop, crop])]
        if self.tta_flip:
            views += [v.flip(-1) for v in views]
        return views

    def view_logits(self, x: torch.Tensor, stage: str = "test") -> torch.Tensor:
        """Logits ``(B, num_classes)`` over the test-time views of ``x``: the log of the mean of their
        softmaxes, each view's logits divided by the face's temperature (:attr:`temperature`, and with
        :attr:`entropy_exponent` :func:`face_temperature`)."""
        views = self.views(x, stage)
        if len(views) == 1 and not self.entropy_exponent:
            return self(views[0]) / self.temperature
        logits = self(torch.cat(views)).float().unflatten(0, (len(views), -1))  # every view in one batch
        return calibrated(logits, self.temperature, self.entropy_exponent)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``float32 (B, num_classes)``: the mean softmax over the test-time views."""
        return self.view_logits(x).float().softmax(-1)
