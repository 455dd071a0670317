"""Expression recognition: ``python infer.py [source=0|clip.mp4|photo.jpg|photos/|rtsp://...|videos/|list.csv]``."""

import dataclasses
import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from fer.config import register_configs, register_resolvers
from fer.device import set_thread_budget
from fer.inference.collection import analyse_source, is_collection
from fer.inference.loop import adapt_to_source, run
from fer.inference.recognizer import EmotionRecognizer
from fer.inference.settings import RecognizerSettings
from fer.shipped import SHIPPED_MODELS, shipped_model

register_resolvers()
register_configs()
#: Exit status after a stop by signal, as a shell reports it (128 + the signal's number).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    set_thread_budget(cfg.threads)
    settings = RecognizerSettings(**OmegaConf.to_container(cfg.recognizer, resolve=True))
    if cfg.model_name and cfg.ckpt_path:
        raise ValueError(
            f"give ckpt_path or model_name, not both (ckpt_path={cfg.ckpt_path}, model_name={cfg.model_name})"
        )
    ckpt_path = str(shipped_model(cfg.model_name)) if cfg.model_name else cfg.ckpt_path
    if cfg.app == "web":
        from fer.web.app import serve
        from fer.web.recognizers import Recognizers, model_names
        from fer.web.settings import WebSettings

        web = WebSettings(**OmegaConf.to_container(cfg.web, resolve=True))
        models = model_names([cfg.model_name or cfg.ckpt_path, *SHIPPED_MODELS, *web.models])
        serve(Recognizers(models, web.detectors, settings, web.max_loaded), cfg.output_dir, web)
        return
    if cfg.app != "cli":
        raise ValueError(f"app must be cli or web, not {cfg.app!r}")
    if is_collection(str(cfg.source)):
        _analyse_collection(cfg, ckpt_path, settings)
        return
    if cfg.adabn and settings.backend == "auto":  # batch norms are re-estimated in PyTorch
        settings = dataclasses.replace(settings, backend="torch")
    recognizer = EmotionRecognizer(ckpt_path, settings)
    if cfg.adabn:
        adapt_to_source(recognizer, cfg.source, cfg.live)
    summary = run(
        recognizer,
        cfg.source,
        cfg.output_dir,
        display=cfg.display,
        predictions=cfg.predictions,
        save_media=cfg.save_media,
        overwrite=cfg.overwrite,
        max_frames=cfg.max_frames,
        live=cfg.live,
        batch_frames=cfg.batch_frames or 1,
    )
    if summary["ended"] in EXIT_CODES:  # outputs are complete; say so in one line and exit as shells expect
        logging.getLogger("infer").warning("stopped by %s after %d frames", summary["ended"], summary["frames"])
        sys.exit(EXIT_CODES[summary["ended"]])


def _analyse_collection(cfg: DictConfig, ckpt_path: str | None, settings: RecognizerSettings) -> None:
    """Many videos into one dataset (``fer.inference.collection``), with a one-line account at the end."""
    if cfg.adabn:
        raise ValueError("adabn=true adapts to one video, image or folder of images, not a collection of videos")
    options = {"save_media": cfg.save_media, "max_frames": cfg.max_frames, "batch_frames": cfg.batch_frames or 16}
    summary = analyse_source(
        str(cfg.source), cfg.output_dir, ckpt_path, settings, options, cfg.shard, cfg.shards, cfg.workers, cfg.threads
    )
    failed = ", ".join(f["video"] for f in summary["failed"]) or "none"
    logging.getLogger("infer").info(
        "%d of %d videos done (%s in this run, %s skipped as done before; failed: %s); dataset in %s",
        summary["done"], summary["videos"], summary["run"]["done"], summary["run"]["skipped"], failed,
        summary["dataset"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
