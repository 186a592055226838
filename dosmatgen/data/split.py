"""Train / validation / test split (docs/data.md; paper: 0.6 : 0.2 : 0.2), saved as id lists so
every stage sees the same split, plus the DOS standardiser fitted on the training split only.

The split depends only on the *set* of ids and the seed, and is stratified by source
(:func:`record_source`, read from the id prefix): the ids of each source are sorted, then permuted
with ``numpy.random.default_rng(seed)`` and cut at ``round(cumsum(fractions) * n_source)``
boundaries, and each part lists the sources in :data:`SOURCES` order.  So every source is split
with the same fractions and seed, real MP-20 crystals reach every part (from 4 of them on, with
the default fractions), and a store of one source -- today's all-prototype built-in store, the MP
DOS set -- gets exactly the split it got before stratification; adding MP-20 records leaves the
prototypes' assignment as it was.  Part sizes are the sums of the per-source sizes, so they can
differ by one from ``round(fraction * n)``.

>>> s = make_split([f"id{i}" for i in range(10)], seed=0)
>>> [len(s[k]) for k in SPLIT_NAMES]
[6, 2, 2]
>>> s = make_split([f"builtin-x{i}" for i in range(6)] + [f"mp20-mp-{i}" for i in range(5)], seed=0)
>>> [sum(i.startswith("mp20-") for i in s[k]) for k in SPLIT_NAMES]
[3, 1, 1]

A source may get its own fractions (``source_fractions``). Moving only the train/val boundary of
a source keeps its test part, since the cut points share one permutation:

>>> ids = [f"builtin-x{i}" for i in range(10)] + [f"mp20-mp-{i}" for i in range(20)]
>>> a, b = make_split(ids), make_split(ids, source_fractions={"mp20": (0.75, 0.05, 0.2)})
>>> a["test"] == b["test"], [sum(i.startswith("mp20-") for i in b[k]) for k in SPLIT_NAMES]
(True, [15, 1, 4])

A split may be fixed on a base set of ids (``base_ids``, :func:`load_id_list`): those are split as
above, and every other id -- a crystal labelled after the split was fixed -- goes to training, so
validation and test stay what they were while the store grows:

>>> c = make_split(ids + ["mp20-mp-new1", "mp20-mp-new2"], base_ids=ids)
>>> c["test"] == a["test"], c["val"] == a["val"], len(c["train"]) - len(a["train"])
(True, True, 2)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import numpy as np

from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import ConfigError, DataError
from dosmatgen.io import atomic_save_json

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)

#: Sources of a structure (:func:`record_source`), in the order the split lists them: the built-in
#: prototype crystals, real MP-20 crystals labelled with the same GPAW protocol, the MP DOS set (the
#: authors' data: ``mp-...``/``mvc-...`` ids) and anything else.
SOURCES: tuple[str, ...] = ("prototypes", "mp20", "mp", "other")
_PREFIXES: tuple[tuple[str, str], ...] = (("builtin-", "prototypes"), ("mp20-", "mp20"), ("mp-", "mp"),
                                          ("mvc-", "mp"))


def record_source(structure_id: str) -> str:
    """The source of a structure, one of :data:`SOURCES`, from its id prefix.

    The builders set the prefix (``dev_scripts/builtin/mp20.py:structure_id_for`` writes ``mp20-``, the
    prototype builder ``builtin-``), and the provenance ``source`` of every labelled record agrees
    with it (``builtin`` / ``mp20``); the id is used because it is the one thing a split, a ledger
    and a store all hold, so the source is known without opening any provenance.

    >>> [record_source(i) for i in ("builtin-rocksalt-Na-Cl", "mp20-mp-21", "mp-149", "x7")]
    ['prototypes', 'mp20', 'mp', 'other']
    """
    return next((source for prefix, source in _PREFIXES if structure_id.startswith(prefix)), "other")


def source_counts(ids: Iterable[str]) -> dict[str, int]:
    """Number of ids of each source present, in :data:`SOURCES` order.

    >>> source_counts(["mp20-mp-1", "builtin-a", "builtin-b"])
    {'prototypes': 2, 'mp20': 1}
    """
    c = Counter(record_source(str(i)) for i in ids)
    return {s: c[s] for s in SOURCES if c[s]}


def source_parts(ids: Sequence[str]) -> dict[str, list[int]]:
    """Positions of each source's ids in ``ids`` (:data:`SOURCES` order) when they mix two or
    more sources, else ``{}``: the parts that get their own rows in Tables 1-2.

    >>> source_parts(["mp20-mp-1", "builtin-a", "builtin-b"])
    {'prototypes': [1, 2], 'mp20': [0]}
    >>> source_parts(["builtin-a", "builtin-b"])
    {}
    """
    sources = [record_source(str(i)) for i in ids]
    parts = {s: [k for k, v in enumerate(sources) if v == s] for s in SOURCES}
    parts = {s: v for s, v in parts.items() if v}
    return parts if len(parts) > 1 else {}


def split_sizes(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[int]:
    """Sizes of the three parts for ``n`` ids (they add up to ``n``)."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.all(np.isfinite(f)) or abs(f.sum() - 1.0) > 1e-6:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    bounds = np.rint(np.cumsum(f) * n).astype(int)
    bounds[-1] = n
    return np.diff(np.concatenate([[0], bounds])).tolist()


def _split_one(ids: list[str], seed: int, fractions: Sequence[float]) -> dict[str, list[str]]:
    """The unstratified split: sort, permute with ``default_rng(seed)``, cut at the size boundaries."""
    sizes = split_sizes(len(ids), fractions)
    ordered = sorted(ids)
    shuffled = [ordered[k] for k in np.random.default_rng(seed).permutation(len(ids))]
    bounds = np.cumsum([0] + sizes).tolist()
    return {name: shuffled[a:b] for name, a, b in zip(SPLIT_NAMES, bounds[:-1], bounds[1:])}


def make_split(ids: Iterable[str], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS,
               stratify: bool = True, source_fractions: Mapping[str, Sequence[float]] | None = None,
               base_ids: Collection[str] | None = None) -> dict[str, list[str]]:
    """Seeded random split of ``ids`` into ``{"train", "val", "test"}`` id lists (disjoint, exhaustive).

    ``stratify`` (default): each source split on its own (module docstring), each part interleaving
    the sources in proportion (:func:`interleave`) so that its first N ids (``evaluate regenerate
    --limit N``) keep every source's share; ``False``: the plain split of all ids together.
    ``source_fractions``: fractions for some sources (keys from :data:`SOURCES`) instead of
    ``fractions``, e.g. ``{"mp20": (0.75, 0.05, 0.2)}`` to train on more of the scarce real
    crystals (stratified splits only).
    ``base_ids``: the ids the split is fixed on (all must be among ``ids``); only they are split, and
    the others are appended to training, after the base ids of their source, sorted (module docstring)."""
    ids = [str(i) for i in ids]
    if not ids:
        raise DataError("cannot split an empty list of ids")
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise DataError(f"id {dup!r} appears more than once; split ids must be unique")
    split_sizes(len(ids), fractions)  # bad fractions fail the same way with any number of sources
    own = dict(source_fractions or {})
    for source, frac in own.items():
        if source not in SOURCES:
            raise DataError(f"unknown source {source!r} in the per-source split fractions; sources: {SOURCES}")
        split_sizes(len(ids), frac)
    added: list[str] = []
    if base_ids is not None:
        base = {str(i) for i in base_ids}
        absent = sorted(base.difference(ids))
        if absent:
            raise DataError(f"the split's base id list names {len(absent)} id(s) the store lacks, e.g. "
                            f"{absent[0]!r}: it is not the store the split was fixed on")
        added = sorted(i for i in ids if i not in base)
        ids = [i for i in ids if i in base]
    if not stratify:
        if own:
            raise DataError("per-source split fractions need the stratified split")
        plain = _split_one(ids, seed, fractions)
        return {**plain, "train": plain["train"] + added}
    groups: dict[str, list[str]] = {s: [] for s in SOURCES}
    for i in ids:
        groups[record_source(i)].append(i)
    parts = []
    for source in SOURCES:
        later = [i for i in added if record_source(i) == source]
        if groups[source] or later:  # a source with later ids only has empty base parts
            part = _split_one(groups[source], seed, own.get(source, fractions))
            parts.append({**part, "train": part["train"] + later})
    return {name: interleave([part[name] for part in parts]) for name in SPLIT_NAMES}


def load_id_list(path: str | Path) -> list[str]:
    """Structure ids from a text file, one per line; blank lines and ``#`` comments are skipped
    (the base ids of a fixed split, :func:`make_split`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"id list {path} does not exist or is not a file")
    ids = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise DataError(f"id list {path} names no ids")
    dup = next((i for i, c in Counter(ids).items() if c > 1), None)
    if dup is not None:
        raise DataError(f"id list {path} names {dup!r} more than once")
    return ids


def interleave(lists: Sequence[Sequence[str]]) -> list[str]:
    """Merge ``lists`` keeping each one's order, item k of a list of length n at position
    ``(k + 0.5) / n`` (ties: the earlier list first), so every prefix holds each list's share to
    within one item.

    >>> interleave([["p1", "p2", "p3", "p4"], ["r1", "r2"]])
    ['p1', 'r1', 'p2', 'p3', 'r2', 'p4']
    >>> interleave([["a", "b"]]), interleave([[], ["x"]])
    (['a', 'b'], ['x'])
    """
    keyed = [((k + 0.5) / len(items), j, k, item) for j, items in enumerate(lists) for k, item in enumerate(items)]
    return [item for *_, item in sorted(keyed)]


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
    """DOS standardiser (per-bin mean/std over all *training* atoms, docs/data.md).

    ``store`` is a :class:`~dosmatgen.data.store.DOSStore` or a list of records."""
    from dosmatgen.data.store import DOSStore

    if isinstance(store, DOSStore):
        block = store.all_dos(split_indices(store.ids, split)["train"])
        blocks = [block] if block.shape[0] else []
    else:
        by_id = {r.structure_id: r for r in store}
        split_indices(list(by_id), split)
        blocks = [by_id[i].dos for i in split["train"] if by_id[i].dos is not None]
    if not blocks:
        raise DataError("the training split has no site DOS to fit the standardiser on")
    return DOSStandardiser.fit(blocks)


def part_records(store: str | Path, split_path: str | Path, part: str, limit: int | None = None) -> list[Any]:
    """The records of one split part (its first ``limit``), in the split's order, from the store."""
    from dosmatgen.data.store import DOSStore

    split = load_split(split_path)
    if part not in split:
        raise ConfigError(f"split {split_path} has no part {part!r}")
    ids = list(split[part])
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        ids = ids[:limit]
    if not ids:
        raise DataError(f"split {split_path} part {part!r} is empty")
    st = DOSStore(store)
    absent = [i for i in ids if i not in st]
    if absent:
        raise DataError(f"split {split_path} names {len(absent)} id(s) missing from store {store}, e.g. {absent[0]!r}")
    return st.records(ids)


def split_records(store: str | Path, split_path: str | Path) -> dict[str, list[Any]]:
    """The records of every split part (train, val, test), each in the split's order."""
    from dosmatgen.data.store import load_records

    split = load_split(split_path)
    by_id = {r.structure_id: r for r in load_records(store)}
    out: dict[str, list[Any]] = {}
    for part in ("train", "val", "test"):
        ids = split.get(part, [])
        absent = [i for i in ids if i not in by_id]
        if absent:
            raise DataError(f"split {split_path} part {part!r} names {len(absent)} id(s) missing from "
                            f"store {store}, e.g. {absent[0]!r}")
        out[part] = [by_id[i] for i in ids]
    return out
