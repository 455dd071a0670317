"""What the clip models that run an image network on every frame share: keeping that network frozen."""

from __future__ import annotations

from torch import nn


class FrameModel(nn.Module):
    """A clip model with an image network ``frame_net``; with ``freeze`` that network stays in eval mode.

    Frozen means batch-norm statistics kept and dropout off too, not only no gradients: every
    ``train()`` puts the frame network back in eval mode. A subclass calls :meth:`train` at the
    end of ``__init__``, as Lightning fits a new model without calling it.
    """

    frame_net: nn.Module
    freeze: bool = False

    def train(self, mode: bool = True) -> FrameModel:
        super().train(mode)
        if self.freeze:
            self.frame_net.eval()
        return self
