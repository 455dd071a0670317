"""Realtime expression recognition: ``python infer.py [source=0|clip.mp4|photo.jpg|photos/|rtsp://...]``."""

import logging
import sys

import hydra
from omegaconf import DictConfig

from fer.config import register_resolvers
from fer.device import set_thread_budget
from fer.inference.loop import run
from fer.inference.recognizer import EmotionRecognizer

register_resolvers()
#: Exit status after a stop by signal, as a shell reports it (128 + the signal's number).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    set_thread_budget(cfg.threads)
    recognizer = EmotionRecognizer(
        ckpt_path=cfg.ckpt_path,
        detector=cfg.detector,
        device=cfg.device,
        detect_scale=cfg.detect_scale,
        detect_every=cfg.detect_every,
        smoothing=cfg.smoothing,
        margin=cfg.margin,
        landmarks=cfg.landmarks,
        max_age=cfg.max_age,
        hold=cfg.hold,
        min_score=cfg.min_score,
        download=cfg.download,
        max_image_side=cfg.max_image_side,
        backend=cfg.backend,
        onnx_cache=cfg.onnx_cache,
    )
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
