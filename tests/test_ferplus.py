"""FER+ labels: the reference rules on hand-made votes, the real files, training on soft targets, and FER-2013
targets mixed with the votes."""

import gzip

import numpy as np
import pytest
import torch

from fer.data import FER2013DataModule, FER2013FormatError, FER2013VotesDataModule, FERPlusDataModule
from fer.data.fer2013 import SAMPLE_CSV
from fer.data.ferplus import fer2013_vote_shares, majority_labels, read_ferplus, vote_distributions
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


def test_fer2013_vote_shares():
    # FER+ columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    votes = np.array(
        [
            [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # the single sadness vote is noise
            [0, 0, 0, 0, 0, 2, 0, 4, 2, 2],  # contempt, unknown and NF have no FER-2013 class
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # single votes only: all noise
        ]
    )
    shares = fer2013_vote_shares(votes)  # FER-2013 order: angry, disgust, fear, happy, sad, surprise, neutral
    assert shares.dtype == np.float32
    assert np.allclose(shares[0], [3 / 9, 2 / 9, 0, 0, 0, 0, 4 / 9])
    assert np.allclose(shares[1], [0, 1, 0, 0, 0, 0, 0])
    assert not shares[2].any()


def test_fer2013_targets_mixed_with_votes(tmp_path):
    fer, labels = _small_pair(tmp_path)
    plain = FER2013DataModule(path=str(fer))
    mixed = FER2013VotesDataModule(str(labels), path=str(fer), vote_weight=0.3)
    plain.setup()
    mixed.setup()
    label = plain.splits["train"].tensors[1]
    target = mixed.splits["train"].tensors[1]
    assert target.shape == (len(label), 7) and target.dtype == torch.float32
    assert torch.allclose(target.sum(1), torch.ones(len(label)))
    assert (target.argmax(1) == label).all() and (target.max(1).values >= 0.7 - 1e-6).all()
    # the first Training row by hand: its votes, noise (single votes) and FER+-only columns dropped
    row = next(line for line in labels.read_text().splitlines()[1:] if line.startswith("Training"))
    votes = dict(zip(HEADER.split(",")[2:], map(int, row.split(",")[2:])))
    fer_names = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6}
    shares = torch.zeros(7)
    for name, k in fer_names.items():
        shares[k] = votes[name] if votes[name] > 1 else 0
    expected = 0.7 * torch.nn.functional.one_hot(label[0], 7) + 0.3 * shares / shares.sum()
    assert torch.allclose(target[0], expected)
    for split in ("val", "test"):  # selection and the report keep FER-2013's labels
        assert torch.equal(mixed.splits[split].tensors[1], plain.splits[split].tensors[1])
    none = FER2013VotesDataModule(str(labels), path=str(fer), vote_weight=0.0)
    none.setup()
    assert torch.equal(none.splits["train"].tensors[1].argmax(1), label)
    assert torch.equal(none.splits["train"].tensors[1].max(1).values, torch.ones(len(label)))
    with pytest.raises(ValueError, match="vote_weight must be in"):
        FER2013VotesDataModule(str(labels), path=str(fer), vote_weight=1.5)
    (tmp_path / "short.csv").write_text("\n".join(labels.read_text().splitlines()[:-5]) + "\n")
    with pytest.raises(FER2013FormatError, match="short.csv: 695 rows for the 700"):
        FER2013VotesDataModule(str(tmp_path / "short.csv"), path=str(fer)).setup()


def test_training_on_fer2013_with_votes(tmp_path, train_config):
    fer, labels = _small_pair(tmp_path)
    overrides = ["data=fer2013_votes", f"data.path={fer}", f"data.labels={labels}", "debug=fdr", "logger=none"]
    cfg = train_config(*overrides)
    assert cfg.data.vote_weight == 0.3
    metrics = train(cfg)
    assert "test/acc" in metrics and "train/loss" in metrics


@pytest.mark.slow
def test_real_fer2013_with_votes():
    dm = FER2013VotesDataModule(str(need(FERPLUS)), path=str(need(FER2013_CSV)), vote_weight=0.3)
    dm.setup()
    target = dm.splits["train"].tensors[1]
    assert target.shape == (28709, 7)
    assert (target.argmax(1) == dm.data.split("Training")[1]).all()
    # on the real files: 12,397 Training targets stay one-hot (193 without an emotion vote, the rest where the
    # taggers' votes all went to the FER-2013 label), 6,493 keep the least, 0.7 (no vote for the FER-2013
    # label), and the FER-2013 label holds 0.885 of a target on average
    top = target.max(1).values
    assert int((top == 1).sum()) == 12397 and int((top - 0.7).abs().lt(1e-6).sum()) == 6493
    assert abs(float(top.mean()) - 0.8846) < 1e-4
