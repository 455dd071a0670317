"""68-point landmarks, distance features, eye alignment and the landmark MLP on real faces."""

import cv2
import numpy as np
import pytest
import torch

from fer.data.ckplus import CKPlusDataModule
from fer.data.landmark_features import LandmarkFeatureDataModule
from fer.face.detection import HaarDetector
from fer.face.landmarks import (
    NUM_PAIRS,
    DlibLandmarks,
    eye_aligned_crop,
    eye_alignment,
    landmarks_of_crops,
    pairwise_distances,
)
from fer.models import LandmarkMLP
from tests.conftest import DATA, need, run_train


@pytest.fixture(scope="module")
def face():
    """photos/single_face.jpg, its Haar box and dlib's 68 points."""
    image = cv2.imread(str(need(DATA / "photos" / "single_face.jpg")))
    (detection,) = HaarDetector()(image)
    (points,) = DlibLandmarks()(image, [detection.box])
    return image, detection.box, points


def test_dlib_landmarks_lie_on_the_face(face):
    _, (x1, y1, x2, y2), points = face
    assert points.shape == (68, 2) and points.dtype == np.float32
    w, h = x2 - x1, y2 - y1
    inside = (points[:, 0] > x1 - 0.1 * w) & (points[:, 0] < x2 + 0.1 * w)
    inside &= (points[:, 1] > y1 - 0.1 * h) & (points[:, 1] < y2 + 0.2 * h)
    assert inside.all()
    # iBUG order: brows above eyes above nose tip above mouth above chin; right eye left of left eye
    parts = (slice(17, 27), slice(36, 48), slice(33, 34), slice(48, 68), slice(8, 9))
    brow, eye, nose, mouth, chin = (points[part, 1].mean() for part in parts)
    assert brow < eye < nose < mouth < chin
    assert points[36:42, 0].mean() < points[42:48, 0].mean()


def test_pairwise_distances(face):
    points = face[2]
    features = pairwise_distances(points[None])
    assert features.shape == (1, NUM_PAIRS) == (1, 2278)
    assert torch.allclose(pairwise_distances(points[None] * 3 + 10), features, atol=1e-4)  # scale and shift free
    i, j = 36, 45  # the normaliser itself is 1
    index = sum(67 - k for k in range(i)) + (j - i - 1)
    assert features[0, index] == pytest.approx(1.0)


def test_eye_alignment_levels_the_eyes(face):
    image, _, points = face
    centre = tuple(map(float, points[27]))
    tilt = cv2.getRotationMatrix2D(centre, 25, 1.0)  # a real face tilted by 25 degrees
    tilted_points = points @ tilt[:, :2].T + tilt[:, 2]
    warp, height = eye_alignment(tilted_points, size=48)
    aligned = tilted_points @ warp[:, :2].T + warp[:, 2]
    right, left = aligned[36:42].mean(0), aligned[42:48].mean(0)
    assert abs(right[1] - left[1]) < 0.5 and abs((right[0] + left[0]) / 2 - 24) < 0.5
    assert height == round(48 * 3.2 / 2.1)
    crop = eye_aligned_crop(cv2.warpAffine(image, tilt, image.shape[1::-1]), tilted_points, size=48)
    assert crop.shape == (48, 48, 3) and crop.std() > 10


def test_landmark_cache_is_reused_and_resumable(tmp_path):
    dm = CKPlusDataModule(str(need(DATA / "ckplus")), detector=None, crop_size=96)
    dm.setup()
    crops = dm.splits["test"].tensors[0][:5]
    cache = tmp_path / "landmarks.npz"
    first = landmarks_of_crops(crops, DlibLandmarks(), cache=cache)
    assert first.shape == (5, 68, 2) and np.isfinite(first).all()
    assert (first >= -10).all() and (first <= 106).all()  # in the 96-pixel crop's pixels

    class Refuses:
        name = "refuses"

        def __call__(self, image, boxes):
            raise AssertionError("the cache should have answered")

    assert np.array_equal(landmarks_of_crops(crops, Refuses(), cache=cache), first)
    np.savez(cache, points=np.where(np.arange(5)[:, None, None] < 3, first, np.nan), done=3)  # interrupted
    resumed = landmarks_of_crops(crops, DlibLandmarks(), cache=cache)
    assert np.allclose(resumed, first)


def test_feature_data_module_and_mlp(tmp_path):
    images = CKPlusDataModule(str(need(DATA / "ckplus")), detector=None, fold=2)
    dm = LandmarkFeatureDataModule(images, cache_dir=str(tmp_path), batch_size=16)
    dm.setup()
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (16, 2278) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert len(list(tmp_path.glob("landmarks_ckplus_*_dlib_*.npz"))) == 3
    logits = LandmarkMLP(num_classes=7)(x)
    assert logits.shape == (16, 7)


def test_train_py_landmark_mlp_on_ckplus(tmp_path):
    need(DATA / "ckplus")
    overrides = ["data=ckplus_landmarks", "model=landmark_mlp", "data.images.detector=null"]
    run_train(tmp_path, *overrides, f"data.cache_dir={tmp_path}", f"data.images.cache_dir={tmp_path}", "debug=fdr")
    assert (tmp_path / "metrics.json").exists()
