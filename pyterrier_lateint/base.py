"""What every PyTerrier transformer of the package shares: equality by configuration, ranking result frames, and
reading a text column with an error that names the offending row."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd


def text_column(frame: pd.DataFrame, column: str, id_column: Optional[str]) -> list[str]:
    """The ``column`` of ``frame`` as a list of str, with an error naming the row when a value is not a string."""
    values = frame[column].tolist()
    for i, v in enumerate(values):
        if not isinstance(v, str):
            where = f"{id_column}={frame[id_column].iloc[i]!r}" if id_column in frame.columns else f"row {i}"
            raise TypeError(f"{column!r} of {where} is {type(v).__name__} ({v!r:.40}), not str; replace missing "
                            f"values with '' (e.g. df[{column!r}] = df[{column!r}].fillna('')) or use astype(str)")
    return values


def rank_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by (qid, score desc) and set ``rank`` from 0, as PyTerrier results are."""
    frame = frame.sort_values(["qid", "score"], ascending=[True, False], kind="stable").reset_index(drop=True)
    frame["rank"] = frame.groupby("qid", sort=False).cumcount().astype(np.int64)
    return frame


class ConfigEquality:
    """Mixin: transformers are equal when of the same class with equal ``_config()`` tuples (hashed alike), so
    PyTerrier's pipeline caching and tests see equal configurations as equal."""

    def _config(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._config() == other._config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._config()))
