"""What the Hydra configs use besides ``conf/``: the resolvers ``${fast_precision:cpu}`` and ``${run_id:}``,
and the structured configs of the recognizer's and the web app's settings (``recognizer:`` and ``web:`` in
``conf/infer.yaml``)."""

from __future__ import annotations

import functools
import secrets
import time

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from fer.device import fast_precision
from fer.inference.settings import RecognizerSettings
from fer.web.settings import WebSettings


@functools.cache
def run_id() -> str:
    """This process's run name: its start time to the second and 6 random hex digits
    (``2026-11-28_12-30-05_3fa9c1``), so two runs started in the same second, on one
    machine or on nodes sharing a file system, never share a run dir."""
    return time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3)


def register_resolvers() -> None:
    """Make ``${fast_precision:cpu}`` and ``${run_id:}`` usable in configs (idempotent)."""
    if not OmegaConf.has_resolver("fast_precision"):
        OmegaConf.register_new_resolver("fast_precision", fast_precision)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id, use_cache=True)


def register_configs() -> None:
    """Store :class:`~fer.inference.settings.RecognizerSettings` and :class:`~fer.web.settings.WebSettings`
    as the configs ``recognizer/default`` and ``web/default``, so ``conf/infer.yaml`` takes their keys,
    defaults and types from the dataclasses (a typo or a wrong type fails with Hydra's error)."""
    ConfigStore.instance().store(group="recognizer", name="default", node=RecognizerSettings)
    ConfigStore.instance().store(group="web", name="default", node=WebSettings)
