import gzip
import shutil

import pytest
import torch

from fer.data import CLASS_NAMES, FER2013DataModule, FER2013FormatError, load_fer2013
from tests.conftest import FER2013_CSV, FER2013_FOLDERS, need

# Official FER-2013 per-class counts (angry, disgust, fear, happy, sad, surprise, neutral).
COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(scope="module")
def real_rows() -> list[str]:
    """The header and first 200 data lines (all Training) of the real CSV."""
    with gzip.open(need(FER2013_CSV), "rt") as f:
        return [next(f) for _ in range(201)]


@pytest.mark.slow
def test_full_csv_splits_and_class_counts():
    data = load_fer2013(need(FER2013_CSV))
    assert data.images.shape == (35887, 48, 48) and data.images.dtype == torch.uint8
    for usage, counts in COUNTS.items():
        images, labels = data.split(usage)
        assert len(images) == sum(counts)
        assert torch.bincount(labels, minlength=7).tolist() == counts
    assert sum(data.skipped.values()) == 0
    # first row of the official file: an angry face whose pixels start 70 80 82
    assert data.labels[0] == 0 and data.images[0, 0, :3].tolist() == [70, 80, 82]


def test_data_module_splits_the_embedded_sample():
    dm = FER2013DataModule()
    dm.prepare_data()
    dm.setup("fit")
    sizes = {name: len(ds) for name, ds in dm.splits.items()}
    assert sizes == {"train": 1400, "val": 350, "test": 350}
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (64, 1, 48, 48) and y.dtype == torch.int64
    x, y = dm.on_after_batch_transfer((x, y), 0)  # no trainer: evaluation preprocessing
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 0.5


def test_folder_export_loads():
    data = load_fer2013(need(FER2013_FOLDERS))
    for usage, per_class in (("Training", 40), ("PublicTest", 10), ("PrivateTest", 10)):
        _, labels = data.split(usage)
        assert torch.bincount(labels, minlength=7).tolist() == [per_class] * 7


def test_folder_export_unreadable_image(tmp_path):
    good = next((need(FER2013_FOLDERS) / "train" / "happy").glob("*.jpg"))
    folder = tmp_path / "train" / "happy"
    folder.mkdir(parents=True)
    shutil.copy(good, folder)
    (folder / "Training_broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FER2013FormatError, match="Training_broken.jpg: not a readable image"):
        load_fer2013(tmp_path)
    data = load_fer2013(tmp_path, on_bad_row="skip")
    assert data.skipped == {"unreadable image": 1}
    assert data.labels.tolist() == [CLASS_NAMES.index("happy")]


def _corrupt(row: str, kind: str) -> str:
    emotion, pixels, usage = row.rstrip("\n").split(",")
    values = pixels.split()
    if kind == "pixel count":
        pixels = " ".join(values[:-1])
    elif kind == "pixel value":
        pixels = " ".join(["12x", *values[1:]])
    elif kind == "out of range":
        pixels = " ".join(["256", *values[1:]])
    elif kind == "label":
        emotion = "7"
    elif kind == "usage":
        usage = "Validation"
    return f"{emotion},{pixels},{usage}\n"


@pytest.mark.parametrize(
    ("kind", "message", "reason"),
    [
        ("pixel count", "found 2303 pixels", "pixel count"),
        ("pixel value", "integers 0-255", "pixel value"),
        ("out of range", "integers 0-255", "pixel value"),
        ("label", "not a label 0-6", "label"),
        ("usage", "Usage 'Validation'", "usage"),
    ],
)
def test_malformed_row_error_names_file_and_line(tmp_path, real_rows, kind, message, reason):
    rows = list(real_rows)
    rows[5] = _corrupt(rows[5], kind)  # line 6 of the file
    path = tmp_path / "fer2013.csv"
    path.write_text("".join(rows))
    with pytest.raises(FER2013FormatError, match=f"fer2013.csv: line 6: .*{message}"):
        load_fer2013(path)
    data = load_fer2013(path, on_bad_row="skip")
    assert data.skipped == {reason: 1}
    assert len(data.labels) == 199  # the other rows are all kept


def test_missing_column_and_missing_file(tmp_path, real_rows):
    path = tmp_path / "no_usage.csv"
    path.write_text("".join(r.rsplit(",", 1)[0] + "\n" for r in real_rows))
    with pytest.raises(FER2013FormatError, match=r"no_usage.csv: line 1: missing column\(s\) \['Usage'\]"):
        load_fer2013(path)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_fer2013(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match="data.path"):
        FER2013DataModule(path=str(tmp_path / "nowhere.csv")).prepare_data()


def test_balanced_sampler_and_class_weights(tmp_path, real_rows, monkeypatch):
    path = tmp_path / "first_200.csv"  # real, unbalanced Training rows (and one PublicTest row: val needs one)
    path.write_text("".join(real_rows) + real_rows[1].rsplit(",", 1)[0] + ",PublicTest\n")
    dm = FER2013DataModule(path=str(path), balance="sampler", batch_size=200)
    dm.setup("fit")
    counts = dm.class_counts
    present = counts > 0
    assert counts[present].max() >= 2 * counts[present].min()
    drawn = torch.zeros(7, dtype=torch.long)
    for seed in range(40):  # the draws are seeded by the run's seed: 40 runs' worth of them
        monkeypatch.setenv("PL_GLOBAL_SEED", str(seed))
        drawn += torch.bincount(torch.cat([y for _, y in dm.train_dataloader()]), minlength=7)
    assert (drawn[~present] == 0).all()
    assert drawn[present].max() < 1.3 * drawn[present].min()  # about uniform over the classes present

    dm = FER2013DataModule(path=str(path), balance="loss")
    dm.setup("fit")
    weights = dm.class_weights
    rarest = torch.where(present, counts, counts.max() + 1).argmin()
    assert weights[rarest] == weights.max() and weights[counts.argmax()] == weights[present].min()
    assert (weights[~present] == 0).all() and torch.isclose((weights * counts).sum(), counts.sum().float())
    assert FER2013DataModule(path=str(path)).class_weights is None
