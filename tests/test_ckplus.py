"""CK+ on the real data: original layout, the complete sequence S501/001 and CK+48."""

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from fer.data.ckplus import CKPlusDataModule, label_frames, load_faces, read_ckplus, read_ckplus48
from tests.conftest import DATA, FER2013_FOLDERS, need

CKPLUS, SEQUENCE, CKPLUS48 = DATA / "ckplus", DATA / "ckplus_sequence", DATA / "ckplus48"
# The 327 labelled CK+ sequences per class (Lucey et al. 2010, table 2).
SEQUENCE_COUNTS = {"angry": 45, "contempt": 18, "disgust": 59, "fear": 25, "happy": 69, "sad": 28, "surprise": 83}


def test_forty_percent_rule_on_the_complete_sequence():
    (seq,) = read_ckplus(need(SEQUENCE))
    assert (seq.subject, seq.sequence, len(seq.frames), seq.code) == ("S501", "001", 67, 1)
    kept = label_frames([seq], drop_fraction=0.4)
    assert len(kept) == 41  # frames 27..67: the first 26 (40 % of 67) are dropped
    assert kept[0][0].name == "S501_001_00000027.png" and {name for _, name, _ in kept} == {"angry"}
    assert len(label_frames([seq], drop_fraction=0.0)) == 67
    with_neutral = label_frames([seq], neutral=True)
    assert with_neutral[-1][0].name == "S501_001_00000001.png" and with_neutral[-1][1] == "neutral"


def test_original_layout_label_counts():
    sequences = read_ckplus(need(CKPLUS))
    assert len(sequences) == 593 and len({s.subject for s in sequences}) == 123
    apex = label_frames(sequences)  # this copy holds first and last frames: the apex is kept
    assert Counter(name for _, name, _ in apex) == SEQUENCE_COUNTS
    without_contempt = label_frames(sequences, contempt=False, neutral=True)
    counts = Counter(name for _, name, _ in without_contempt)
    assert "contempt" not in counts and counts["neutral"] == 327 - 18


def test_bad_emotion_file_names_the_file(tmp_path):
    frames = tmp_path / "cohn-kanade-images" / "S001" / "001"
    frames.mkdir(parents=True)
    (frames / "S001_001_00000001.png").write_bytes(b"")
    emotion = tmp_path / "Emotion" / "S001" / "001"
    emotion.mkdir(parents=True)
    (emotion / "S001_001_00000001_emotion.txt").write_text("   9.0000000e+00\n")
    with pytest.raises(ValueError, match="S001_001_00000001_emotion.txt: emotion code"):
        read_ckplus(tmp_path)


@pytest.mark.parametrize("fold", [0, 3])
def test_folds_are_subject_independent_and_cover_everyone(fold, tmp_path):
    dm = CKPlusDataModule(str(need(CKPLUS)), fold=fold, detector=None, cache_dir=str(tmp_path))
    dm.setup()
    train, val, test = (set(dm.subjects[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 118  # the subjects with a labelled sequence
    assert sum(len(dm.splits[s]) for s in dm.splits) == 327
    assert dm.class_names == ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
    images, labels = dm.splits["test"].tensors
    assert images.shape[1:] == (1, 96, 96) and images.dtype == torch.uint8 and labels.max() < 7


def test_all_ten_test_folds_partition_the_subjects(tmp_path):
    tested = []
    for fold in range(10):
        dm = CKPlusDataModule(str(need(CKPLUS)), fold=fold, detector=None, cache_dir=str(tmp_path))
        dm.setup()
        tested += dm.subjects["test"]
    assert len(tested) == len(set(tested)) == 118


def test_fixed_holdout(tmp_path):
    dm = CKPlusDataModule(str(need(CKPLUS)), holdout=["S005", "S010"], detector=None, cache_dir=str(tmp_path))
    dm.setup()
    assert dm.subjects["test"] == ["S005", "S010"] and len(dm.subjects["val"]) == 2
    assert not set(dm.subjects["train"]) & {"S005", "S010", *dm.subjects["val"]}


def test_ckplus48_export():
    items = read_ckplus48(need(CKPLUS48))
    counts = Counter(name for _, name, _ in items)
    assert counts == {
        "angry": 135,
        "contempt": 54,
        "disgust": 177,
        "fear": 75,
        "happy": 207,
        "sad": 84,
        "surprise": 249,
    }
    dm = CKPlusDataModule(str(CKPLUS48), detector=None, crop_size=48, contempt=False)
    dm.setup()
    assert sum(len(s) for s in dm.splits.values()) == 981 - 54


def test_face_crops_are_cached(tmp_path):
    sequence = read_ckplus(need(SEQUENCE))[0]
    paths = sequence.frames[-3:]  # 720x480 colour frames of the complete sequence
    from fer.face.detection import HaarDetector

    first, no_face = load_faces(paths, 64, HaarDetector(), cache_dir=tmp_path)
    assert first.shape == (3, 1, 64, 64) and no_face == 0
    (cached,) = tmp_path.glob("faces_HaarDetector_64_*.pt")
    stamp = cached.stat().st_mtime_ns
    again, _ = load_faces(paths, 64, HaarDetector(), cache_dir=tmp_path)
    assert torch.equal(first, again) and cached.stat().st_mtime_ns == stamp
    # the crop is the detected face, not the whole 720x480 frame
    whole, _ = load_faces(paths, 64, None)
    assert not torch.equal(first, whole)


def test_train_py_on_ckplus(tmp_path):
    from tests.conftest import run_train

    need(CKPLUS)
    run_train(tmp_path, "data=ckplus", "data.detector=null", f"data.cache_dir={tmp_path / 'cache'}", "debug=fdr")
    assert (tmp_path / "metrics.json").exists() and list((tmp_path / "cache").glob("faces_none_96_*.pt"))


def test_ckplus_and_fer2013_combined_by_name(tmp_path):
    from fer.data import FER2013DataModule
    from fer.data.combined import CombinedDataModule

    ckplus = CKPlusDataModule(str(need(CKPLUS)), detector=None, cache_dir=str(tmp_path))
    combined = CombinedDataModule({"fer2013": FER2013DataModule(), "ckplus": ckplus})
    assert combined.class_names == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
    combined.setup()
    sizes = {split: len(ds) for split, ds in combined.splits.items()}
    assert sum(sizes.values()) == 2100 + 327  # the embedded FER-2013 sample and CK+'s apex frames
    # CK+'s sad (its "sadness", code 6) lands on FER-2013's sad (code 4), never on code 6 (neutral)
    total = {n: sum(combined.balance_report[s][n] for s in sizes) for n in combined.class_names}
    assert total["sad"] == 300 + 28 and total["neutral"] == 300 and total["contempt"] == 18
    images, _ = combined.splits["train"].tensors
    assert images.shape[1:] == (1, 48, 48) and images.dtype == torch.uint8


def test_combined_members_are_drawn_by_their_weights(tmp_path):
    from fer.data import FER2013DataModule
    from fer.data.combined import CombinedDataModule

    ckplus = CKPlusDataModule(str(need(CKPLUS)), detector=None, cache_dir=str(tmp_path))
    combined = CombinedDataModule(
        {"fer2013": FER2013DataModule(), "ckplus": ckplus}, weights={"fer2013": 1, "ckplus": 1}
    )
    combined.setup()
    member = combined.member_of["train"]
    assert len(member) == len(combined.splits["train"]) and 0.05 < member.float().mean() < 0.2  # CK+ is the few
    drawn = member[list(combined.train_dataloader().sampler)]
    assert len(drawn) == len(member) and 0.45 < drawn.float().mean() < 0.55  # half the draws from CK+
    with pytest.raises(ValueError, match="share"):
        CombinedDataModule({"fer2013": FER2013DataModule()}, weights={"ferplus": 1})
    with pytest.raises(ValueError, match="not both"):
        CombinedDataModule({"fer2013": FER2013DataModule()}, weights={"fer2013": 1}, balance="sampler")


def test_train_py_reports_each_member_of_a_combined_set_apart(tmp_path):
    from tests.conftest import run_train

    need(CKPLUS)
    run_train(
        tmp_path, "data=ckplus_fer2013", "data.members.ckplus.detector=null",
        f"data.members.ckplus.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3", "model=cnn4",
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    logged, support = metrics["logged"], {name: 0 for name in ("fer2013", "ckplus")}
    for name in support:
        assert 0 <= logged[f"test/acc/{name}"] <= 1 and 0 <= logged[f"test/f1/{name}"] <= 1
    # the members' accuracies, weighted by their test images, make the whole split's
    from fer.data import FER2013DataModule
    from fer.data.combined import CombinedDataModule

    ckplus = CKPlusDataModule(str(CKPLUS), detector=None, cache_dir=str(tmp_path / "cache"))
    combined = CombinedDataModule({"fer2013": FER2013DataModule(), "ckplus": ckplus})
    combined.setup()
    images = torch.bincount(combined.member_of["test"]).tolist()
    assert sum(images) == metrics["num_images"]
    whole = sum(logged[f"test/acc/{n}"] * k for n, k in zip(support, images)) / metrics["num_images"]
    assert whole == pytest.approx(metrics["accuracy"], abs=1e-4)


def test_mixed_data_of_every_labelled_set_and_one_left_out(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from fer.config import register_resolvers

    need(CKPLUS)
    need(DATA / "baum2" / "Extracted")
    register_resolvers()
    common = [f"paths.data_dir={DATA}", f"data.members.ckplus.cache_dir={tmp_path}", "paths.root_dir=."]
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        every = compose("train", overrides=["data=mixed", *common])
        left_out = compose("train", overrides=["data=mixed", "~data.members.ckplus", *common[:1], "paths.root_dir=."])
    assert every.data.augment.jpeg > 0 and every.data.members.ckplus.detector == "blazeface"
    mixed = instantiate(every.data, _convert_="all")
    mixed.setup()
    assert mixed.class_names == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
    sizes = torch.bincount(torch.cat([mixed.member_of[s] for s in ("train", "val", "test")])).tolist()
    ckplus = mixed.members["ckplus"]
    assert sizes == [2100, sum(len(d) for d in ckplus.splits.values()), 2272]  # the sample, CK+, BAUM-2 frames
    assert sizes[1] > 327 and sum(1 for _, name, _ in ckplus.items() if name == "neutral") > 0
    assert list(instantiate(left_out.data, _convert_="all").members) == ["fer2013", "baum2"]
    # an image-folder tree (train/<class>/*, test/<class>/{PublicTest,PrivateTest}_*) joins as one more member
    folder = ["+data@data.members.folder=fer2013_folder", f"data.members.folder.path={need(FER2013_FOLDERS)}"]
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        with_folder = compose("train", overrides=["data=mixed", "~data.members.ckplus", "~data.members.baum2", *folder])
    mixed = instantiate(with_folder.data, _convert_="all")
    mixed.setup()
    sizes = torch.bincount(torch.cat([mixed.member_of[s] for s in ("train", "val", "test")])).tolist()
    assert list(mixed.members) == ["fer2013", "folder"]
    assert sizes == [2100, sum(1 for p in FER2013_FOLDERS.rglob("*") if p.is_file())]
