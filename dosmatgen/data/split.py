"""Train / validation / test split (DESIGN §3.3; paper: 0.6 : 0.2 : 0.2), saved as id lists so
every stage sees the same split, plus the DOS standardiser fitted on the training split only.

The split depends only on the *set* of ids and the seed: ids are sorted, then permuted with
``numpy.random.default_rng(seed)``; split sizes are ``round(cumsum(fractions) * n)`` boundaries.

>>> s = make_split([f"id{i}" for i in range(10)], seed=0)
>>> [len(s[k]) for k in SPLIT_NAMES]
[6, 2, 2]
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_save_json

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)


def split_sizes(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[int]:
    """Sizes of the three parts for ``n`` ids (they add up to ``n``)."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.all(np.isfinite(f)) or abs(f.sum() - 1.0) > 1e-6:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    bounds = np.rint(np.cumsum(f) * n).astype(int)
    bounds[-1] = n
    return np.diff(np.concatenate([[0], bounds])).tolist()


def make_split(ids: Iterable[str], seed: int = 0,
               fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, list[str]]:
    """Seeded random split of ``ids`` into ``{"train", "val", "test"}`` id lists (disjoint, exhaustive)."""
    ids = [str(i) for i in ids]
    if not ids:
        raise DataError("cannot split an empty list of ids")
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise DataError(f"id {dup!r} appears more than once; split ids must be unique")
    sizes = split_sizes(len(ids), fractions)
    ordered = sorted(ids)
    shuffled = [ordered[k] for k in np.random.default_rng(seed).permutation(len(ids))]
    out, start = {}, 0
    for name, size in zip(SPLIT_NAMES, sizes):
        out[name] = shuffled[start:start + size]
        start += size
    return out


def save_split(path: str | Path, split: dict[str, list[str]], **info: Any) -> None:
    """Write the split as JSON (``train``/``val``/``test`` id lists plus ``info`` such as the seed)."""
    check_split(split)
    atomic_save_json(path, {**info, **{k: list(split[k]) for k in SPLIT_NAMES}})


def check_split(split: dict[str, list[str]]) -> None:
    missing = [k for k in SPLIT_NAMES if k not in split]
    if missing:
        raise DataError(f"split lacks part(s) {missing}")
    seen: dict[str, str] = {}
    for k in SPLIT_NAMES:
        if not isinstance(split[k], list) or not all(isinstance(i, str) for i in split[k]):
            raise DataError(f"split part {k!r} must be a list of id strings")
        for i in split[k]:
            if i in seen:
                raise DataError(f"id {i!r} is in both {seen[i]!r} and {k!r}")
            seen[i] = k


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split written by :func:`save_split`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"split file {path} does not exist")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a split file is a JSON object with train/val/test lists")
    split = {k: obj.get(k) for k in SPLIT_NAMES if k in obj}
    try:
        check_split(split)  # type: ignore[arg-type]
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return split  # type: ignore[return-value]


def split_indices(store_ids: Sequence[str], split: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Positions in ``store_ids`` of each part; :class:`DataError` when the split names an id
    the store lacks."""
    pos = {sid: i for i, sid in enumerate(store_ids)}
    out = {}
    for k in SPLIT_NAMES:
        absent = [i for i in split[k] if i not in pos]
        if absent:
            raise DataError(f"split part {k!r} names {len(absent)} id(s) not in the store, e.g. {absent[0]!r}")
        out[k] = np.array([pos[i] for i in split[k]], dtype=np.int64)
    return out


def fit_standardiser_on_train(store: Any, split: dict[str, list[str]]) -> DOSStandardiser:
    """DOS standardiser (per-bin mean/std over all *training* atoms, DESIGN §3.3).

    ``store`` is a :class:`~dosmatgen.data.store.DOSStore` or a list of records."""
    from dosmatgen.data.store import DOSStore

    if isinstance(store, DOSStore):
        idx = split_indices(store.ids, split)["train"]
        block = store.all_dos(idx)
        if block.shape[0] == 0:
            raise DataError("the training split has no site DOS to fit the standardiser on")
        return DOSStandardiser.fit([block])
    by_id = {r.structure_id: r for r in store}
    split_indices(list(by_id), split)
    blocks = [by_id[i].dos for i in split["train"] if by_id[i].dos is not None]
    if not blocks:
        raise DataError("the training split has no site DOS to fit the standardiser on")
    return DOSStandardiser.fit(blocks)
