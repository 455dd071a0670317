"""FER+ labels: the reference rules on hand-made votes, the real files, and training on soft targets."""

import gzip

import numpy as np
import pytest
import torch

from fer.data import CombinedDataModule, FER2013DataModule, FER2013FormatError, FERPlusDataModule
from fer.data.fer2013 import SAMPLE_CSV
from fer.data.ferplus import CLASS_NAMES, majority_labels, read_ferplus, soft_targets, vote_distributions
from fer.training.run import train
from tests.conftest import DATA, FER2013_CSV, need

FERPLUS = DATA / "ferplus" / "fer2013new.csv"
HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def test_majority_and_distribution_rules():
    votes = np.array(
        [
            [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # the single sadness vote is noise; 4 of 9 is no majority
            [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],  # neutral 6 of 8
            [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],  # not a face
            [3, 3, 3, 0, 0, 0, 0, 0, 1, 0],  # three-way tie
            [2, 2, 2, 2, 2, 0, 0, 0, 0, 0],  # five-way tie: too many
        ]
    )
    assert majority_labels(votes).tolist() == [-1, 0, -1, -1, -1]
    dist = vote_distributions(votes)
    assert np.allclose(dist[0], [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0])  # neutral + anger reach 75 %
    assert np.allclose(dist[1], [1, 0, 0, 0, 0, 0, 0, 0])
    assert np.allclose(dist[3], [1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0, 0])
    assert not dist[2].any() and not dist[4].any()


@pytest.mark.slow
def test_real_ferplus_splits():
    votes, usages = read_ferplus(need(FERPLUS))
    assert votes.shape == (35887, 10) and usages.count("PrivateTest") == 3589
    dm = FERPlusDataModule(str(FERPLUS), path=str(need(FER2013_CSV)), mode="crossentropy")
    dm.setup()
    sizes = {name: len(ds) for name, ds in dm.splits.items()}
    assert sizes == {"train": 28104, "val": 3199, "test": 3153}  # val/test: majority labels
    targets = dm.splits["train"].tensors[1]
    assert targets.dtype == torch.float32 and torch.allclose(targets.sum(1), torch.ones(len(targets)))
    assert dm.splits["test"].tensors[1].dtype == torch.int64
    assert dm.class_counts.argmax() == 0  # neutral is FER+'s largest class


def _small_pair(tmp_path, rows: int = 700):
    """The first ``rows`` lines of the embedded FER-2013 sample and FER+-style votes for them."""
    with gzip.open(SAMPLE_CSV, "rt") as f:
        lines = f.read().splitlines()[: rows + 1]
    (tmp_path / "fer.csv").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    out = [HEADER]
    for k, line in enumerate(lines[1:]):
        votes = rng.multinomial(10, [0.4, 0.2, 0.1, 0.1, 0.1, 0.04, 0.03, 0.02, 0.01, 0.0])
        out.append(f"{line.rsplit(',', 1)[1]},fer{k:07d}.png," + ",".join(map(str, votes)))
    (tmp_path / "ferplus.csv").write_text("\n".join(out) + "\n")
    return tmp_path / "fer.csv", tmp_path / "ferplus.csv"


def test_files_that_do_not_match_row_for_row(tmp_path):
    fer, labels = _small_pair(tmp_path)
    lines = labels.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(FER2013FormatError, match="short.csv: 695 rows for the 700"):
        FERPlusDataModule(str(tmp_path / "short.csv"), path=str(fer)).setup()
    swapped = [lines[0], "PublicTest" + lines[1][len("Training") :], *lines[2:]]
    (tmp_path / "swapped.csv").write_text("\n".join(swapped) + "\n")
    with pytest.raises(FER2013FormatError, match="swapped.csv: line 2: Usage PublicTest where FER-2013 has Training"):
        FERPlusDataModule(str(tmp_path / "swapped.csv"), path=str(fer)).setup()


@pytest.mark.parametrize("mode", ["crossentropy", "probability", "majority"])
def test_training_on_each_label_mode(tmp_path, train_config, mode):
    fer, labels = _small_pair(tmp_path)
    overrides = ["data=ferplus", f"data.path={fer}", f"data.labels={labels}", f"data.mode={mode}", "debug=fdr"]
    metrics = train(train_config(*overrides, "logger=none"))
    assert "test/acc" in metrics and "train/loss" in metrics


def test_soft_targets_blend_fer2013_labels_with_ferplus_votes():
    votes = np.array(
        [
            [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],  # FER+: neutral
            [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # FER+: neutral 4/7, anger 3/7
            [0, 0, 0, 0, 0, 0, 0, 8, 2, 0],  # FER+: contempt alone, not a FER-2013 class
            [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],  # not a face
        ]
    )
    names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER-2013's order
    labels = torch.tensor([4, 0, 3, 5])  # sad, angry, happy, surprise
    targets = soft_targets(votes, labels, names, weight=0.5)
    expected = torch.zeros(4, 7)
    expected[0, 4] = expected[0, 6] = 0.5
    expected[1, 0], expected[1, 6] = 0.5 + 0.5 * 3 / 7, 0.5 * 4 / 7
    expected[2, 3] = expected[3, 5] = 1.0  # FER-2013's label alone
    assert torch.allclose(targets, expected)
    assert torch.equal(soft_targets(votes, labels, names, weight=0.0), torch.eye(7)[labels])
    with pytest.raises(ValueError, match="ferplus_weight"):
        FER2013DataModule(ferplus_weight=1.5)


def test_fer2013_with_ferplus_votes_alone_and_combined_by_name(tmp_path):
    csv_path, ferplus = str(need(FER2013_CSV)), str(need(FERPLUS))
    plain = FER2013DataModule(csv_path)
    soft = FER2013DataModule(csv_path, ferplus=ferplus, ferplus_weight=0.5)
    plain.setup(), soft.setup()
    labels, targets = plain.splits["train"].tensors[1], soft.splits["train"].tensors[1]
    assert targets.shape == (28709, 7) and torch.allclose(targets.sum(1), torch.ones(28709))
    assert (targets[torch.arange(28709), labels] >= 0.5).all()  # FER-2013's label keeps half
    assert 0.3 < (targets.max(1).values < 1).float().mean() < 0.7  # FER+'s taggers differ on many faces
    for split in ("val", "test"):  # PublicTest and PrivateTest keep FER-2013's labels
        assert torch.equal(soft.splits[split].tensors[1], plain.splits[split].tensors[1])
    # with a FER+ member (8 classes in FER+'s order) the soft targets of both move to the common columns
    both = CombinedDataModule({"fer2013": soft, "ferplus": FERPlusDataModule(ferplus, csv_path, mode="crossentropy")})
    both.setup()
    combined = both.splits["train"].tensors[1]
    assert both.class_names == (*soft.class_names, "contempt") and combined.shape[1] == 8
    mine = both.member_of["train"] == 0
    assert torch.equal(combined[mine, :7], targets) and not combined[mine, 7].any()
    theirs = combined[~mine]
    original = both.members["ferplus"].splits["train"].tensors[1]
    for k, name in enumerate(CLASS_NAMES):
        assert torch.equal(theirs[:, both.class_names.index(name)], original[:, k])
    assert both.splits["test"].tensors[1].dtype == torch.int64  # hard labels where every member's are
