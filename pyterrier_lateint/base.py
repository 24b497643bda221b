"""What every PyTerrier transformer of the package shares: equality by configuration, ranking result frames, and
reading a text column with an error that names the offending row."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd


def invalid_unicode(text: str) -> Optional[str]:
    """``None`` when ``text`` is valid Unicode (encodable as UTF-8), else a sentence saying where it is not and how
    to clean it: a lone surrogate (``"\\ud800"``, left by decoding bytes with ``errors="surrogateescape"`` or by
    splitting a UTF-16 pair) makes tokenizers fail with an error that names no document."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"holds {text[e.start:e.end]!r} at character {e.start}, a lone surrogate that is not valid Unicode; "
                f"clean it first, e.g. text.encode('utf-8', 'replace').decode('utf-8')")
    return None


def text_column(frame: pd.DataFrame, column: str, id_column: Optional[str]) -> list[str]:
    """The ``column`` of ``frame`` as a list of str, with an error naming the row when a value is not a string or not
    valid Unicode."""
    values = frame[column].tolist()
    for i, v in enumerate(values):
        if not isinstance(v, str):
            where = f"{id_column}={frame[id_column].iloc[i]!r}" if id_column in frame.columns else f"row {i}"
            raise TypeError(f"{column!r} of {where} is {type(v).__name__} ({v!r:.40}), not str; replace missing "
                            f"values with '' (e.g. df[{column!r}] = df[{column!r}].fillna('')) or use astype(str)")
        problem = invalid_unicode(v)
        if problem:
            where = f"{id_column}={frame[id_column].iloc[i]!r}" if id_column in frame.columns else f"row {i}"
            raise ValueError(f"{column!r} of {where} {problem}")
    return values


def check_int(name: str, value: object, minimum: int = 1, optional: bool = False) -> Optional[int]:
    """``value`` as an int when it is a whole number (Python or numpy integer, not bool) >= ``minimum``, else a
    ``TypeError``/``ValueError`` naming the setting; ``None`` passes when ``optional``. Settings are checked where they
    are given, so that a wrong type fails there and not deep inside a search (numpy's "Partition index must be
    integer" for ``num_results=2.5``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        hint = f" (int({value!r}) if you meant it)" if isinstance(value, (str, float, np.floating)) else ""
        raise TypeError(f"{name} must be an int >= {minimum}, not {type(value).__name__} {value!r}{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return int(value)


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
