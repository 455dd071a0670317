"""Per-person adaptation without labels: each face's probabilities divided by a baseline of the same person.

A classifier trained on FER-2013 reads some people's resting faces as sad and others' as
angry, and a camera shifts every face of a stream the same way. Dividing each face's class
probabilities by a baseline of the same person and renormalising (a prior-shift correction,
Saerens et al. 2002, with the person's own predictions as the prior) removes what that
person's face and camera add to every frame:

- ``mean``: the baseline is the mean of the person's predictions (a track's, so far), which
  assumes the person shows the classes about equally: what a person shows throughout (a smile)
  loses probability.
- ``neutral``: the baseline is the prediction on frames known to show the person at rest
  (a user's mark in the window, CK+'s first frames), which assumes only that they are neutral.

Test-time batch-norm statistics (AdaBN, Li et al. 2016) are a second lever: the network's
normalisation re-estimated over a collection's faces (:func:`adapt_batchnorm`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

#: How a recognizer adapts each tracked face (see the module's docstring).
MODES = ("none", "mean", "neutral")
#: Floor of a baseline's probabilities, so that a class the person never showed is not divided by zero.
FLOOR = 1e-3


def divide(probabilities: np.ndarray, baseline: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """``probabilities / baseline ** strength``, renormalised: ``float (..., C)`` by ``(..., C)`` or ``(C,)``.

    ``strength`` 0 leaves the probabilities as they are, 1 divides by the whole baseline.
    """
    q = probabilities / np.maximum(baseline, FLOOR) ** strength
    return (q / q.sum(-1, keepdims=True)).astype(probabilities.dtype)


class Baseline:
    """One person's running baseline: the mean of the probabilities added, begun from ``prior``
    uniform pseudo-frames (so that it counts little until frames accumulate).

    Args:
        classes: number of classes C.
        prior: uniform pseudo-frames the mean starts from (0: the mean of the added frames alone).
    """

    def __init__(self, classes: int, prior: float = 0.0) -> None:
        self.classes, self.prior = classes, prior
        self.total = np.zeros(classes, np.float64)
        self.count = 0

    def add(self, probabilities: np.ndarray) -> None:
        """Count one face's ``(C,)`` probabilities (or several, ``(n, C)``) in the mean."""
        p = np.asarray(probabilities, np.float64).reshape(-1, self.classes)
        self.total += p.sum(0)
        self.count += len(p)

    @property
    def value(self) -> np.ndarray:
        """The baseline ``float64 (C,)``: uniform until a frame is added."""
        if self.count + self.prior == 0:
            return np.full(self.classes, 1.0 / self.classes)
        return (self.total + self.prior / self.classes) / (self.count + self.prior)


@torch.no_grad()
def adapt_batchnorm(network: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """AdaBN: every batch-norm layer's running mean and variance re-estimated over ``batches`` of the
    network's float inputs (a collection's preprocessed faces), the rest of the network untouched.

    The statistics are cumulative over all the batches (not a moving average); the network is
    left in eval mode. Returns the number of batch-norm layers adapted (0: nothing to adapt).
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    network.eval()
    for m in norms:
        m.train()
    try:
        for x in batches:
            network(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        network.eval()
    return len(norms)
