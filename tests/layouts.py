"""Small synthetic copies of the data sets' file layouts, written into a test's ``tmp_path``.

The images are noise; what these trees test is that every loader reads its layout,
labels and subjects right on a clean clone, where ``../shared/data`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _image(path: Path, rng: np.random.Generator, size: int = 48, colour: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if colour else (size, size)
    assert cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))


def ckplus_tree(root: Path, subjects: int = 6, frames: int = 10, seed: int = 0) -> dict[str, int]:
    """CK+'s original layout: ``subjects`` people with two sequences each, ``frames`` PNGs a
    sequence; the first sequence of each person labelled (codes 1..7 in turn), the second not.

    Returns ``{class name: labelled sequences}`` in FER-2013's spelling.
    """
    rng = np.random.default_rng(seed)
    names = ("neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
    counts: dict[str, int] = {}
    for s in range(subjects):
        subject = f"S{100 + s:03d}"
        for sequence in ("001", "002"):
            for f in range(1, frames + 1):
                name = f"{subject}_{sequence}_{f:08d}.png"
                _image(root / "cohn-kanade-images" / subject / sequence / name, rng, 64)
            if sequence == "001":
                code = 1 + s % 7
                label = root / "Emotion" / subject / sequence / f"{subject}_{sequence}_{frames:08d}_emotion.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(f"   {code:.7e}\n")
                counts[names[code]] = counts.get(names[code], 0) + 1
    return counts


def ckplus48_tree(root: Path, per_class: int = 2, seed: int = 0) -> None:
    """The CK+48 export: ``<class>/S###_###_########.png``, ``per_class`` images of distinct subjects."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")):
        for k in range(per_class):
            _image(root / name / f"S{10 * c + k:03d}_001_{k + 1:08d}.png", rng)


def baum2_tree(root: Path, subjects: int = 5, seed: int = 0) -> list[int]:
    """BAUM-2's extracted layout: per subject two clips ``S###/###/frames/{0..n-1}.jpg`` of 3 to 16
    colour frames and an ``emotion.txt`` with a CK+ code. Returns the frame count of every clip."""
    rng = np.random.default_rng(seed)
    lengths = []
    for s in range(subjects):
        for c in range(2):
            clip = root / f"S{s + 1:03d}" / f"{c + 1:03d}"
            n = int(rng.integers(3, 17))
            for f in range(n):
                _image(clip / "frames" / f"{f}.jpg", rng, colour=True)
            (clip / "emotion.txt").write_text(f"{(s + c) % 8}\n")
            lengths.append(n)
    return lengths


def fer2013_folder_tree(root: Path, per_class: int = 3, seed: int = 0) -> None:
    """FER-2013's image-folder export: ``train/<class>/Training_*.jpg`` and
    ``test/<class>/{PublicTest,PrivateTest}_*.jpg``, ``per_class`` of each."""
    rng = np.random.default_rng(seed)
    for name in FER2013_CLASSES:
        for k in range(per_class):
            _image(root / "train" / name / f"Training_{k}.jpg", rng)
            _image(root / "test" / name / f"PublicTest_{k}.jpg", rng)
            _image(root / "test" / name / f"PrivateTest_{k}.jpg", rng)
