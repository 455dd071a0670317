"""How the recognizer finds, follows and classifies faces: one dataclass that infer.py, the web app and Python share.

``conf/infer.yaml`` takes its defaults from here (``recognizer.*`` keys, registered with
Hydra by :func:`fer.config.register_configs`), so a setting is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass

from fer.adaptation import MODES


@dataclass
class RecognizerSettings:
    """Settings of :class:`~fer.inference.recognizer.EmotionRecognizer`.

    Attributes:
        detector: ``auto`` (S3FD where its weights are cached, else BlazeFace: the front
            model for streams, the full-range one for still images), ``blazeface``,
            ``blazeface_front``, ``sfd``, ``dlib`` or ``haar``
            (:func:`~fer.face.detection.make_detectors`).
        device: ``auto``, ``cuda`` or ``cpu``.
        backend: ``auto`` (onnxruntime on the CPU, PyTorch on CUDA), ``torch`` or ``onnxruntime``
            (an ``.onnx`` file, or a checkpoint exported on the fly into ``onnx_cache``; see
            :func:`fer.inference.backends.make_backend`).
        int8: on onnxruntime a checkpoint runs as its int8 graph (static QDQ, calibrated on the
            FER-2013 faces shipped with the package; see :func:`fer.export.quantized_onnx`),
            float32 where it cannot be quantised.
        flip: average each face with its mirror (``None``: as the model was tested; ``False``
            halves the classifier's cost).
        onnx_cache: folder of the graphs exported on the fly.
        min_score: detections scoring below this are dropped (detectors with scores).
        download: let S3FD and 2D-FAN fetch their weights on first use (short timeout).
        detect_scale: video frames are shrunk by this factor in (0, 1] for detection only;
            ``None``: the detector's own ``stream_scale`` (BlazeFace 1.0: its network sees a
            fixed square), else 0.5.
        detect_every: run the detector every N frames of a stream; in between, faces keep
            their tracked boxes and are classified again.
        classify_every: classify a tracked face of a stream every N frames; in between it keeps
            its smoothed probabilities (a new face is classified at once; image models only).
        max_image_side: a still image is searched in a copy whose longest side is at most
            this many pixels (>= 32).
        margin: crop margin around the detected box, a fraction of its side
            (:func:`~fer.face.crops.crop_faces`).
        crop_shift: the crop's centre moved down by this fraction of the box's side (negative: up).
        landmarks: ask for 68 iBUG landmarks (2D-FAN with S3FD or where cached, else dlib's).
        max_age: frames a track survives without a matching detection.
        hold: a tracked face the detector misses is still reported at its last box for
            this many frames (image models).
        cut_threshold: a frame whose 32x18 grey thumbnail differs from the last one's by
            more than this mean grey level (0-255) is a scene cut: every track ends (0: never).
        smoothing: EMA factor of a tracked face's probabilities across frames (0: none;
            0.6: the new frame counts 40 %).
        uncertain_below: a face whose top probability is below this is labelled ``uncertain``
            (drawn grey; its probabilities are kept); 0: always the most probable class.
        adapt: per-person adaptation of a stream's tracked faces (:mod:`fer.adaptation`): ``none``,
            ``mean`` (each face's probabilities divided by the running mean of its track's) or
            ``neutral`` (divided by its track's probabilities on the frames marked neutral: key n in
            the window, :meth:`~fer.inference.recognizer.EmotionRecognizer.mark_neutral`).
        adapt_strength: the power of the baseline divided by, in [0, 1] (0: no adaptation).
        adapt_prior: with ``adapt=mean``, the uniform pseudo-frames the running mean starts from,
            so that a new track's first frames are adapted little (>= 0).

    Raises:
        ValueError: ``detect_scale``, ``detect_every``, ``classify_every``, ``max_image_side``, ``smoothing``,
            ``uncertain_below``, ``margin``, ``crop_shift``, ``adapt``, ``adapt_strength``, ``adapt_prior``,
            ``hold`` or ``max_age`` out of range.
    """

    detector: str = "auto"
    device: str = "auto"
    backend: str = "auto"
    int8: bool = True
    flip: bool | None = None
    onnx_cache: str = "outputs/cache/onnx"
    min_score: float = 0.5
    download: bool = True
    detect_scale: float | None = None
    detect_every: int = 1
    classify_every: int = 1
    max_image_side: int = 1920
    margin: float = 0.1
    crop_shift: float = 0.0
    landmarks: bool = False
    max_age: int = 30
    hold: int = 2
    cut_threshold: float = 20.0
    smoothing: float = 0.5
    uncertain_below: float = 0.0
    adapt: str = "none"
    adapt_strength: float = 1.0
    adapt_prior: float = 30.0

    def __post_init__(self) -> None:
        if self.detect_scale is not None and not 0 < self.detect_scale <= 1:
            raise ValueError(f"detect_scale must be in (0, 1], not {self.detect_scale}")
        if self.max_image_side < 32:
            raise ValueError(f"max_image_side must be at least 32 pixels, not {self.max_image_side}")
        if self.detect_every < 1 or self.classify_every < 1 or self.hold < 0 or self.max_age < 0:
            raise ValueError(
                "detect_every and classify_every must be >= 1, hold and max_age >= 0: "
                f"{self.detect_every}, {self.classify_every}, {self.hold}, {self.max_age}"
            )
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), not {self.smoothing}")
        if not 0 <= self.uncertain_below <= 1:
            raise ValueError(f"uncertain_below must be in [0, 1], not {self.uncertain_below}")
        if not -0.5 <= self.margin <= 2 or not -0.5 <= self.crop_shift <= 0.5:
            raise ValueError(
                f"margin must be in [-0.5, 2] and crop_shift in [-0.5, 0.5]: {self.margin}, {self.crop_shift}"
            )
        if self.adapt not in MODES:
            raise ValueError(f"adapt must be one of {', '.join(MODES)}, not {self.adapt!r}")
        if not 0 <= self.adapt_strength <= 1 or self.adapt_prior < 0:
            raise ValueError(
                f"adapt_strength must be in [0, 1] and adapt_prior >= 0: {self.adapt_strength}, {self.adapt_prior}"
            )
