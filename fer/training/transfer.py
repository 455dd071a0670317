"""Fine-tuning: a pretrained image classifier's weights copied into a new network, class rows matched by name."""

from __future__ import annotations

from pathlib import Path

import torch

from fer.checkpoint import CheckpointError


def transfer_weights(
    net: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    source_classes: list[str],
    target_classes: list[str],
    path: str | Path,
) -> list[str]:
    """Load a pretrained image classifier's ``weights`` into ``net`` (same architecture).

    Every tensor of the same shape is copied. A tensor whose first dimension is the
    class count (the class layer's weight and bias) gets the rows of the classes both
    sets name (FER-2013's ``happy`` row for FER+'s ``happy``); rows of new classes keep
    their fresh initialisation. Returns the target classes that started fresh.

    Raises:
        CheckpointError: a tensor of ``net`` is absent from ``weights`` or fits neither way.
    """
    state = net.state_dict()
    missing = sorted(set(state) - set(weights))
    if missing:
        raise CheckpointError(f"{path}: the pretrained weights lack {missing[:5]}; is it the same network?")
    shared = [(target_classes.index(n), source_classes.index(n)) for n in target_classes if n in source_classes]
    rows = torch.tensor([t for t, _ in shared]), torch.tensor([s for _, s in shared])
    for key, tensor in state.items():
        source = weights[key]
        if source.shape == tensor.shape:
            tensor.copy_(source)
        elif (
            source.shape[:1] == (len(source_classes),)
            and tensor.shape[:1] == (len(target_classes),)
            and source.shape[1:] == tensor.shape[1:]
        ):
            tensor[rows[0]] = source[rows[1]].to(tensor.dtype)
        else:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(source.shape)}, the network wants {tuple(tensor.shape)}"
            )
    return [n for n in target_classes if n not in source_classes]
