"""FER+ labels: the reference rules on hand-made votes, the real files, and training on soft targets."""

import gzip

import numpy as np
import pytest
import torch

from fer.data import FER2013FormatError, FERPlusDataModule
from fer.data.fer2013 import SAMPLE_CSV
from fer.data.ferplus import majority_labels, read_ferplus, vote_distributions
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
