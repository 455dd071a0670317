"""Realtime expression recognition: ``python infer.py [source=0|clip.mp4|photo.jpg|photos/|rtsp://...]``."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from fer.checkpoint import SHIPPED_MODELS, shipped_model
from fer.config import register_resolvers
from fer.device import set_thread_budget
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer

register_resolvers()
#: Exit status after a stop by signal, as a shell reports it (128 + the signal's number).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
#: Config keys passed to every EmotionRecognizer as they are.
RECOGNIZER_KEYS = ("device", "detect_scale", "detect_every", "smoothing", "margin", "landmarks", "max_age", "hold")
RECOGNIZER_KEYS += ("cut_threshold", "min_score", "download", "max_image_side", "backend", "onnx_cache")


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    set_thread_budget(cfg.threads)
    settings = {key: cfg[key] for key in RECOGNIZER_KEYS}
    if cfg.model_name and cfg.ckpt_path:
        raise ValueError(
            f"give ckpt_path or model_name, not both (ckpt_path={cfg.ckpt_path}, model_name={cfg.model_name})"
        )
    ckpt_path = str(shipped_model(cfg.model_name)) if cfg.model_name else cfg.ckpt_path
    if cfg.app == "web":
        from fer.web.app import Recognizers, model_names, serve

        models = model_names([cfg.model_name or cfg.ckpt_path, *SHIPPED_MODELS, *cfg.web.models])
        recognizers = Recognizers(models, list(cfg.web.detectors), settings)
        web = cfg.web
        serve(recognizers, cfg.output_dir, web.host, web.port, web.max_upload_mb, web.workers)
        return
    if cfg.app != "cli":
        raise ValueError(f"app must be cli or web, not {cfg.app!r}")
    recognizer = EmotionRecognizer(ckpt_path=ckpt_path, detector=cfg.detector, **settings)
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
    )
    if summary["ended"] in EXIT_CODES:  # outputs are complete; say so in one line and exit as shells expect
        logging.getLogger("infer").warning("stopped by %s after %d frames", summary["ended"], summary["frames"])
        sys.exit(EXIT_CODES[summary["ended"]])


if __name__ == "__main__":
    main()
