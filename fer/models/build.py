"""Networks rebuilt from their configs, by name from an allow-list, without Hydra.

A config is a mapping ``{"_target_": "fer.models.deep_cnn", "num_classes": 7, ...}``; the
rest of its keys are the network's keyword arguments, passed as plain dicts and lists
(the clip models and :class:`~fer.models.Ensemble` build their nested networks
themselves, through :func:`build_network` again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

#: The networks a config may name, by name (``fer.models.<name>``): filled by ``fer/models/__init__.py``,
#: which runs before any network module can call :func:`build_network`.
NETWORKS: dict[str, Callable[..., nn.Module]] = {}


def allowed_targets() -> frozenset[str]:
    """The only ``_target_`` values a network config may name: ``fer.models.<name>`` of :data:`NETWORKS`."""
    return frozenset(f"fer.models.{name}" for name in NETWORKS)


def disallowed_targets(config: Any) -> list[str]:
    """Every ``_target_`` in ``config`` (nested dicts and lists included) that is not a ``fer.models`` network."""
    allowed = allowed_targets()
    found: list[str] = []
    if isinstance(config, Mapping):
        target = config.get("_target_")
        if target is not None and target not in allowed:
            found.append(repr(target))
        for value in config.values():
            found += disallowed_targets(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            found += disallowed_targets(value)
    return found


def _plain(value: Any) -> Any:
    """Mappings as dicts and lists as lists, at every depth (a Hydra config reaches a network as plain data)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The network a config describes (its ``_target_`` one of :func:`allowed_targets`).

    Raises:
        ValueError: the config, or a config nested in it, names any other target, or none;
            nothing was called.
    """
    bad = disallowed_targets(config)
    if bad or "_target_" not in config:
        named = ", ".join(bad) or "no _target_"
        raise ValueError(f"not a fer.models network: {named}; allowed: {', '.join(sorted(allowed_targets()))}")
    kwargs = {k: _plain(v) for k, v in config.items() if k != "_target_"}
    return NETWORKS[config["_target_"].removeprefix("fer.models.")](**kwargs)
