"""BAUM-2 (Erdem, Turan and Aydin 2015) clips as face-frame sequences, and frame extraction from videos.

Extracted layout (the seed "Facial Emotion Recognition", IIT Kanpur)::

    S###/###/frames/{0..15}.jpg   up to 16 face frames evenly sampled over the clip
    S###/###/emotion.txt          one CK+ code 0-7 (see :data:`fer.data.labels.CKPLUS_CODES`)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer.data.base import InMemoryDataModule, cache_key
from fer.data.labels import CKPLUS_CODES, common_name, read_emotion_code
from fer.data.splits import check_fold, masks, subject_splits
from fer.face.crops import crop_faces, largest_box, preprocess
from fer.face.detection import detect_scaled

log = logging.getLogger(__name__)

#: BAUM-2's classes in CK+ code order, spelled as FER-2013 spells them.
CLASS_NAMES = tuple(common_name(c) for c in CKPLUS_CODES)


@dataclass
class Clip:
    subject: str
    clip: str
    frames: list[Path]
    code: int


def read_baum2(root: str | Path) -> list[Clip]:
    """Every labelled clip under ``root`` (``S###/###/frames/*.jpg`` + ``emotion.txt``).

    Raises:
        FileNotFoundError: no clip found. ValueError: a bad ``emotion.txt`` (names it).
    """
    root = Path(root)
    clips = []
    for label_file in sorted(root.glob("S*/*/emotion.txt")):
        code = read_emotion_code(label_file)
        frames = sorted((label_file.parent / "frames").glob("*.jpg"), key=lambda p: int(p.stem))
        if frames:
            clips.append(Clip(label_file.parent.parent.name, label_file.parent.name, frames, code))
    if not clips:
        raise FileNotFoundError(f"no BAUM-2 clips (S###/###/emotion.txt + frames/) under {root}")
    return clips


def fixed_length(indices: int, length: int) -> np.ndarray:
    """Indices of ``length`` frames of a clip of ``indices`` frames.

    Longer clips are sampled evenly (first and last kept); shorter ones are padded by
    repeating their last frame.
    """
    if indices >= length:
        return np.linspace(0, indices - 1, length).round().astype(int)
    return np.r_[np.arange(indices), np.full(length - indices, indices - 1)].astype(int)


def load_clip(frames: list[Path], length: int, size: int = 48, grey: bool = True) -> torch.Tensor:
    """``uint8 (length, C, size, size)`` frames of a clip (C = 1 grey, 3 BGR).

    Raises:
        ValueError: an unreadable frame (names it).
    """
    chosen = [frames[k] for k in fixed_length(len(frames), length)]
    out = []
    for path in chosen:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) if image.shape[0] != size else image
        out.append(image[None] if grey else image.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def extract_face_frames(
    video: str | Path,
    detector: Any,
    num_frames: int = 16,
    size: int = 48,
    margin: float = 0.1,
    cache_dir: str | Path | None = None,
    detect_scale: float = 0.5,
) -> torch.Tensor:
    """Face crops of ``num_frames`` evenly spaced frames of a video: ``uint8 (n, 1, size, size)``.

    The seed's extraction step (``-n 16``): frames are read at evenly spaced positions,
    the largest face of each is found by ``detector`` (in a copy shrunk by
    ``detect_scale``, as ``infer.py`` does for video) and cropped with the same
    :func:`~fer.face.crops.crop_faces` as images. Frames without a face are left
    out, so ``n <= num_frames``; a video without any face gives ``n = 0``. Results are
    cached in ``cache_dir`` keyed by the video's path, size and modification time.

    Raises:
        FileNotFoundError: no such video. ValueError: not a readable video.
    """
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video not found: {video}")
    stat = video.stat()
    key = cache_key(str(video.resolve()), stat.st_size, stat.st_mtime_ns, num_frames, size, margin, detect_scale)
    cache = Path(cache_dir) / f"clip_{key}.pt" if cache_dir else None
    if cache is not None and cache.exists():
        return torch.load(cache)
    capture = cv2.VideoCapture(str(video))
    frames = []
    while (read := capture.read())[0]:  # decode all: seeking is unreliable in many containers
        frames.append(read[1])
    capture.release()
    if not frames:
        raise ValueError(f"{video}: not a readable video")
    crops = []
    for k in np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int):
        grey = cv2.cvtColor(frames[k], cv2.COLOR_BGR2GRAY)
        found = detect_scaled(detector, frames[k], detect_scale)
        if found:
            box = largest_box([d.box for d in found])
            crops.append(crop_faces(grey, [box], size, margin)[0])
    clip = torch.stack(crops) if crops else torch.zeros((0, 1, size, size), dtype=torch.uint8)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(clip, cache)
    return clip


class BAUM2DataModule(InMemoryDataModule):
    """BAUM-2 clips ``uint8 (T, C, H, W)`` with subject-independent k-fold splits.

    Every frame of a clip gets the same augmentation (one warp of the whole clip).

    Args:
        path: the ``Extracted`` folder.
        clip_length: frames per clip ``T`` (sampled evenly, or padded with the last frame).
        grey: grey frames (``C = 1``) or colour (``C = 3``).
        num_folds, fold: fold ``fold`` of the subjects is the test split, the next the
            validation split, the rest train.
        seed: shuffle of the subjects before dealing folds.
        **kwargs: see :class:`InMemoryDataModule` (``image_size``: frame side).
    """

    class_names = CLASS_NAMES

    def __init__(
        self,
        path: str,
        clip_length: int = 16,
        grey: bool = True,
        num_folds: int = 5,
        fold: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_fold(fold, num_folds)
        self.path, self.clip_length, self.grey = Path(path), clip_length, grey
        self.num_folds, self.fold, self.seed = num_folds, fold, seed
        self.num_channels = 1 if grey else 3
        self.subjects: dict[str, list[str]] = {}

    @property
    def input_spec(self) -> dict[str, int]:
        return {**super().input_spec, "clip_length": self.clip_length}

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        clips = read_baum2(self.path)
        subjects = [c.subject for c in clips]
        self.subjects = subject_splits(subjects, self.num_folds, self.fold, self.seed)
        videos = torch.stack([load_clip(c.frames, self.clip_length, self.image_size, self.grey) for c in clips])
        labels = torch.tensor([c.code for c in clips])
        return {split: (videos[mask], labels[mask]) for split, mask in masks(subjects, self.subjects).items()}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        clips, labels = batch
        b, t, c, h, w = clips.shape
        training = self.trainer is not None and self.trainer.training
        # frames stacked as channels: one random warp and erasure for the whole clip
        x = preprocess(clips.view(b, t * c, h, w), None, self.mean, self.std, self.augment if training else None)
        return x.view(b, t, c, h, w), labels


class BAUM2FramesDataModule(BAUM2DataModule):
    """BAUM-2's face frames as single images ``uint8 (C, H, W)``, each labelled with its clip's class,
    in the same subject-independent folds as :class:`BAUM2DataModule` (no person in two splits).

    For image networks and for mixing with other image sets (``data=mixed``). Every frame a clip
    has is used (1-16 in the shared extraction), so ``clip_length`` is unused.
    """

    @property
    def input_spec(self) -> dict[str, int]:
        return InMemoryDataModule.input_spec.fget(self)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        clips = read_baum2(self.path)
        self.subjects = subject_splits([c.subject for c in clips], self.num_folds, self.fold, self.seed)
        frames = [load_clip(c.frames, len(c.frames), self.image_size, self.grey) for c in clips]
        subjects = [c.subject for c, f in zip(clips, frames) for _ in range(len(f))]
        labels = torch.tensor([c.code for c, f in zip(clips, frames) for _ in range(len(f))])
        images = torch.cat(frames)
        return {split: (images[mask], labels[mask]) for split, mask in masks(subjects, self.subjects).items()}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return InMemoryDataModule.on_after_batch_transfer(self, batch, dataloader_idx)
