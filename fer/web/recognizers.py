"""The models and detectors a web app offers, loaded on first use, least recently used dropped past a bound."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from fastapi import HTTPException

from fer.inference.recognizer import EmotionRecognizer
from fer.inference.settings import RecognizerSettings
from fer.shipped import DEFAULT_MODEL, SHIPPED_MODELS, shipped_model

log = logging.getLogger(__name__)


def _give_memory_back() -> None:
    """Collect garbage and ask glibc to return freed heap pages to the system (a dropped model's)."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)


class Recognizers:
    """The configured models and detectors; each pair is loaded on first use and forked per client.

    Args:
        models: page name -> checkpoint (see :func:`model_names`); the first is the default.
        detectors: detector names the page may choose; the first is the default.
        settings: the recognizers' settings (their ``detector`` is the pair's).
        max_loaded: pairs kept loaded at once; past it the least recently used is dropped
            (clients that hold a fork of it keep it until they leave).

    Raises:
        ValueError: no model, no detector, or ``max_loaded`` < 1.
    """

    def __init__(
        self,
        models: dict[str, str],
        detectors: list[str],
        settings: RecognizerSettings | None = None,
        max_loaded: int = 4,
    ) -> None:
        if not models or not detectors or max_loaded < 1:
            raise ValueError("the web app needs at least one model and one detector, and max_loaded >= 1")
        self.models, self.detectors, self.max_loaded = dict(models), list(detectors), max_loaded
        self.settings = settings or RecognizerSettings()
        self.loaded: OrderedDict[tuple[str, str], EmotionRecognizer] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, model: str | None, detector: str | None) -> tuple[str, str]:
        """Checked names (the defaults for ``None``). Raises HTTPException 400 for a name not offered."""
        model = model or next(iter(self.models))
        detector = detector or self.detectors[0]
        if model not in self.models:
            raise HTTPException(400, f"unknown model {model!r}; this server offers {list(self.models)}")
        if detector not in self.detectors:
            raise HTTPException(400, f"unknown detector {detector!r}; this server offers {self.detectors}")
        return model, detector

    def get(self, model: str, detector: str) -> EmotionRecognizer:
        """A fresh-tracker :meth:`~EmotionRecognizer.fork` of the pair (blocking: call in a thread).

        Raises:
            HTTPException 503: the pair cannot be loaded here; the client is told which pair, the
                server's log says why (the reason names server paths).
        """
        with self._lock:
            if (model, detector) not in self.loaded:
                try:
                    settings = replace(self.settings, detector=detector)
                    self.loaded[model, detector] = EmotionRecognizer(self.models[model], settings)
                except (OSError, RuntimeError, ValueError, ImportError) as error:
                    log.error("cannot load model %r with detector %r: %s", model, detector, error)
                    raise HTTPException(503, f"model {model!r} with detector {detector!r} cannot be loaded") from None
                if len(self.loaded) > self.max_loaded:
                    dropped, _ = self.loaded.popitem(last=False)
                    log.info("dropped %s / %s, the least recently used pair", *dropped)
                    _give_memory_back()
            self.loaded.move_to_end((model, detector))
            return self.loaded[model, detector].fork()


def model_names(entries: list[str | None]) -> dict[str, str]:
    """Page name -> checkpoint of models to offer, in order, without repeats.

    An entry is a shipped model's short name (:data:`~fer.shipped.SHIPPED_MODELS`;
    ``None`` is the default one), kept as its name, or a checkpoint path, named by its file
    stem (numbered where two stems are the same). Shipped models whose file is absent are
    left out.
    """
    names: dict[str, str] = {}
    for entry in entries:
        entry = entry or DEFAULT_MODEL
        if entry in SHIPPED_MODELS:
            path = shipped_model(entry)
            if path.is_file() and entry not in names:
                names[entry] = str(path)
            continue
        if entry in names.values():
            continue
        stem = Path(entry).stem
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names[name] = entry
    return names
