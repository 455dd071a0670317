"""Subject-independent splits: no person is ever in two of train, val and test.

CK+ and BAUM-2 hold many images of each subject; a split by image would put frames of
one person on both sides and overstate accuracy (DeXpression's 99.6 % on CK+, say).
Subjects are shuffled with a seed and dealt into ``k`` folds; fold ``f`` tests, fold
``f + 1`` (cyclically) selects the model, the rest train.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch


def shuffled_subjects(subjects: Sequence[str], seed: int = 0) -> list[str]:
    """The distinct subjects in a seeded random order."""
    unique = sorted(set(subjects))
    random.Random(seed).shuffle(unique)
    return unique


def subject_folds(subjects: Sequence[str], num_folds: int, seed: int = 0) -> list[list[str]]:
    """Subjects dealt into ``num_folds`` disjoint folds after a seeded shuffle."""
    order = shuffled_subjects(subjects, seed)
    return [sorted(order[k::num_folds]) for k in range(num_folds)]


def check_fold(fold: int, num_folds: int) -> None:
    """Raises ValueError unless ``0 <= fold < num_folds`` (at least 3 folds: test, val, train)."""
    if num_folds < 3:
        raise ValueError(f"num_folds must be at least 3 (a test, a validation and a training fold), not {num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1}, not {fold}")


def subject_splits(
    subjects: Sequence[str], num_folds: int, fold: int, seed: int = 0, holdout: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """``{"train"|"val"|"test": subjects}`` for the items' ``subjects``.

    Fold ``fold`` of ``num_folds`` tests and the next one validates; or, with
    ``holdout``, those subjects test and the next ``len(holdout)`` of the shuffled
    order validate.

    Raises:
        ValueError: a bad fold, or holdout subjects that do not occur (named).
    """
    if holdout:
        unknown = sorted(set(holdout) - set(subjects))
        if unknown:
            raise ValueError(f"holdout subjects not in the data: {unknown}")
        rest = [s for s in shuffled_subjects(subjects, seed) if s not in set(holdout)]
        split = {"test": list(holdout), "val": rest[: len(holdout)]}
    else:
        check_fold(fold, num_folds)
        folds = subject_folds(subjects, num_folds, seed)
        split = {"test": folds[fold], "val": folds[(fold + 1) % num_folds]}
    split["train"] = sorted(set(subjects) - set(split["test"]) - set(split["val"]))
    return split


def masks(subjects: Sequence[str], split: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """``{split name: bool (N,)}``: which of the ``N`` items (by their subjects) fall in each split."""
    return {
        name: torch.tensor([s in set(members) for s in subjects], dtype=torch.bool) for name, members in split.items()
    }
