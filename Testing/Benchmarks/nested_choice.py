"""Choosing a setting on held-out predictions without flattering it: picked on four folds' cases, scored on the
fifth's (what choosing on these cases is worth on cases it was not chosen on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np

Candidate = TypeVar("Candidate")


def chosen_on_other_folds(candidates: Sequence[Candidate], case_folds: Sequence[int | None],
                          objective: Callable[[Candidate, np.ndarray], float]
                          ) -> Iterator[tuple[int, Candidate, np.ndarray]]:
    """For each fold ``k``: (k, the candidate with the highest ``objective(candidate, mask)`` over the cases of
    the other folds, the mask of ``k``'s cases). Masks index ``case_folds``; a case without a fold is in none."""
    folds = np.array([-1 if fold is None else fold for fold in case_folds])
    for k in sorted(set(folds.tolist()) - {-1}):
        others = (folds != k) & (folds >= 0)
        yield k, max(candidates, key=lambda candidate: objective(candidate, others)), folds == k
