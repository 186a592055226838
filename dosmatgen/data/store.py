"""Compact on-disk store of many :class:`CrystalRecord` (docs/data.md).

One ``.npz`` file: ragged per-atom arrays concatenated with an ``offsets`` index, DOS in float16
(states/eV/site; float16 keeps 3 significant digits, well inside DFT accuracy), provenance as JSON.
Writes are atomic (temp file + rename), so an interrupted write never leaves a half store.

Two ways to read: :func:`load_records` builds every record at once; :class:`DOSStore` reads the
small arrays once and builds records on demand (``store[i]``, ``store["mp-149"]``), which is what
training on tens of thousands of structures wants.

>>> import numpy as np, tempfile, os
>>> r = CrystalRecord("x", [8, 8], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 3, np.ones((2, 400)))
>>> p = os.path.join(tempfile.mkdtemp(), "s.npz")
>>> save_records(p, [r]); load_records(p)[0].structure_id
'x'
>>> s = DOSStore(p); len(s), s.ids, s["x"].num_atoms
(1, ['x'], 2)
"""

from __future__ import annotations

import json
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from dosmatgen.data import plausibility
from dosmatgen.data.schema import MAX_Z, CrystalRecord
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError
from dosmatgen.io import ARCHIVE_ERRORS, atomic_write

STORE_VERSION = 1
#: Largest magnitude float16 holds; a DOS value above it would be stored as inf.
FLOAT16_MAX = float(np.finfo(np.float16).max)
_REQUIRED_KEYS = ("offsets", "structure_ids", "atomic_numbers", "frac_coords", "lattices", "dos",
                  "has_dos", "provenance")


def save_records(path: str | Path, records: Sequence[CrystalRecord], meta: dict[str, Any] | None = None) -> None:
    """Write records to ``path`` (.npz). Records without DOS are stored with a NaN-free zero DOS
    and ``has_dos = False``.

    Raises :class:`DataError` for an empty list, an entry that is not a :class:`CrystalRecord`,
    an invalid record, a repeated ``structure_id`` or a DOS value too large for float16. Nothing
    is written when it raises, and an interrupted write leaves ``path`` as it was.
    """
    records = list(records)
    if len(records) == 0:
        raise DataError("refusing to write an empty store")
    seen: set[str] = set()
    for i, r in enumerate(records):
        if not isinstance(r, CrystalRecord):
            raise DataError(f"store entry {i} is a {type(r).__name__}, not a CrystalRecord")
        if not isinstance(r.structure_id, str) or not r.structure_id:
            raise DataError(f"store entry {i} has an empty or non-string structure_id")
        if r.structure_id in seen:
            raise DataError(f"structure_id {r.structure_id!r} appears more than once")
        seen.add(r.structure_id)
        r.validate()  # records are mutable: check again what is about to be written
        if r.dos is not None and np.abs(r.dos).max(initial=0.0) > FLOAT16_MAX:
            raise DataError(f"{r.structure_id}: DOS value {np.abs(r.dos).max():.3g} exceeds the float16 "
                            f"range of the store ({FLOAT16_MAX:.0f})")
    counts = np.array([r.num_atoms for r in records], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    dos = np.concatenate([r.dos if r.dos is not None else np.zeros((r.num_atoms, N_DOS)) for r in records])
    arrays = {
        "version": np.array(STORE_VERSION),
        "structure_ids": np.array([r.structure_id for r in records]),
        "offsets": offsets,
        "atomic_numbers": np.concatenate([r.atomic_numbers for r in records]).astype(np.int16),
        "frac_coords": np.concatenate([r.frac_coords for r in records]).astype(np.float64),
        "lattices": np.stack([r.lattice for r in records]).astype(np.float64),
        "dos": dos.astype(np.float16),
        "has_dos": np.array([r.dos is not None for r in records]),
        "provenance": np.array([json.dumps(r.provenance, sort_keys=True, default=str) for r in records]),
        "meta": np.array(json.dumps(meta or {}, sort_keys=True, default=str)),
    }
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)


def _open_npz(path: Path):
    if not path.exists():
        raise DataError(f"dataset store {path} does not exist")
    if path.is_dir():
        raise DataError(f"dataset store {path} is a directory, expected an .npz file")
    try:
        return np.load(path, allow_pickle=False)
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{path} is not a dosmatgen store, or it is truncated or corrupt: {exc}") from exc


def _member_shape(z: Any, name: str) -> tuple[int, ...]:
    """The shape of array ``name`` of an open ``.npz``, read from its header alone."""
    with z.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return tuple(read(f)[0])


class DOSStore(SequenceABC):
    """Random-access reader of a store written by :func:`save_records`.

    Structure arrays (ids, offsets, types, coordinates, lattices) are read when the store is
    opened; the DOS block is decompressed on first use and kept. Index with an ``int`` (position)
    or a ``str`` (structure id); slices give lists of records.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        z = _open_npz(self.path)
        try:
            missing = [k for k in _REQUIRED_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{self.path} is not a dosmatgen store: missing array(s) {missing}")
            version = int(z["version"]) if "version" in z.files else STORE_VERSION
            if version > STORE_VERSION:
                raise DataError(f"{self.path} was written by a newer dosmatgen (store version {version} "
                                f"> {STORE_VERSION})")
            self._ids = [str(s) for s in z["structure_ids"]]
            self._offsets = np.asarray(z["offsets"], dtype=np.int64)
            self._z = np.asarray(z["atomic_numbers"], dtype=np.int64)
            self._x = np.asarray(z["frac_coords"], dtype=np.float64)
            self._lat = np.asarray(z["lattices"], dtype=np.float64)
            self._has_dos = np.asarray(z["has_dos"], dtype=bool)
            self._prov = [str(p) for p in z["provenance"]]
            self.meta: dict[str, Any] = json.loads(str(z["meta"])) if "meta" in z.files else {}
            dos_shape = _member_shape(z, "dos")
        except ARCHIVE_ERRORS as exc:
            raise DataError(f"{self.path} is not a dosmatgen store, or it is truncated or corrupt: {exc}") from exc
        finally:
            z.close()
        n = len(self._ids)
        n_atoms = int(self._offsets[-1]) if len(self._offsets) else -1
        if (len(self._offsets) != n + 1 or self._lat.shape != (n, 3, 3) or len(self._has_dos) != n
                or len(self._prov) != n or self._z.shape != (n_atoms,) or self._x.shape != (n_atoms, 3)
                or np.any(np.diff(self._offsets) <= 0)):
            raise DataError(f"{self.path} is corrupt: array lengths do not agree with the offsets index")
        bad_z = self._z[(self._z < 1) | (self._z > MAX_Z)]
        if bad_z.size:
            raise DataError(f"{self.path} is corrupt: atomic number {int(bad_z[0])} (allowed 1..{MAX_Z})")
        if not (np.all(np.isfinite(self._x)) and np.all(np.isfinite(self._lat))):
            raise DataError(f"{self.path} is corrupt: non-finite coordinates or lattices")
        if dos_shape != (n_atoms, N_DOS):
            raise DataError(f"{self.path}: DOS block has shape {dos_shape}, expected ({n_atoms}, N_DOS = {N_DOS}): "
                            f"every site DOS has {N_DOS} points (-10..10 eV)")
        plausibility.check_cells(self._lat, np.diff(self._offsets), self._x, self._ids, str(self.path))
        self._index = {sid: i for i, sid in enumerate(self._ids)}
        if len(self._index) != n:
            raise DataError(f"{self.path} is corrupt: repeated structure ids")
        self._dos: np.ndarray | None = None

    def verify(self) -> None:
        """Check every member of the archive against its CRC (streaming, little memory); a
        damaged store raises :class:`DataError` naming it."""
        import zipfile

        try:
            with zipfile.ZipFile(self.path) as zf:
                bad = zf.testzip()
        except ARCHIVE_ERRORS as exc:
            raise DataError(f"{self.path} is not a dosmatgen store, or it is truncated or corrupt: {exc}") from exc
        if bad is not None:
            raise DataError(f"{self.path} is corrupt: archive member {bad} fails its CRC check (truncated or corrupt?)")

    # ---- sizes and ids ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def num_atoms(self) -> np.ndarray:
        """(S,) atoms per structure."""
        return np.diff(self._offsets)

    @property
    def total_atoms(self) -> int:
        return int(self._offsets[-1])

    @property
    def has_dos(self) -> np.ndarray:
        return self._has_dos.copy()

    def __contains__(self, item: object) -> bool:
        if isinstance(item, CrystalRecord):
            item = item.structure_id
        return isinstance(item, str) and item in self._index

    def index(self, structure_id: str, *args: Any) -> int:  # type: ignore[override]
        """Position of ``structure_id``; :class:`DataError` naming the id when absent."""
        try:
            return self._index[structure_id]
        except KeyError:
            raise DataError(f"structure id {structure_id!r} is not in store {self.path}") from None

    # ---- arrays ------------------------------------------------------------------------------
    def _dos_block(self) -> np.ndarray:
        if self._dos is None:
            try:
                with _open_npz(self.path) as z:
                    dos = np.asarray(z["dos"])
            except ARCHIVE_ERRORS as exc:
                raise DataError(f"{self.path}: the DOS block cannot be read (truncated or corrupt?): {exc}") from exc
            counts = np.diff(self._offsets)[self._has_dos]
            labelled = dos if self._has_dos.all() else dos[np.repeat(self._has_dos, np.diff(self._offsets))]
            plausibility.check_dos(labelled, str(self.path), offsets=np.concatenate([[0], np.cumsum(counts)]))
            self._dos = dos
        return self._dos

    def atomic_numbers(self, i: int) -> np.ndarray:
        return self._z[self._offsets[i]:self._offsets[i + 1]].copy()

    def provenance(self, i: int | str) -> dict[str, Any]:
        return json.loads(self._prov[self._position(i)])

    def site_dos(self, i: int | str) -> np.ndarray | None:
        """(N, 400) float32 site DOS of structure ``i`` or ``None`` when unlabelled."""
        i = self._position(i)
        if not self._has_dos[i]:
            return None
        a, b = self._offsets[i], self._offsets[i + 1]
        return self._dos_block()[a:b].astype(np.float32)

    def all_dos(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """(M, 400) float32: the DOS of every labelled atom of the chosen structures, stacked."""
        idx = range(len(self)) if indices is None else indices
        block = self._dos_block()
        parts = [block[self._offsets[i]:self._offsets[i + 1]] for i in idx if self._has_dos[i]]
        if not parts:
            return np.zeros((0, N_DOS), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32)

    def all_atomic_numbers(self) -> np.ndarray:
        """(total_atoms,) atomic numbers of every atom, structures concatenated."""
        return self._z.copy()

    # ---- records -----------------------------------------------------------------------------
    def _position(self, key: int | str) -> int:
        if isinstance(key, str):
            return self.index(key)
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"store index {key} out of range for {len(self)} structures")
            return i
        raise TypeError(f"store indices are int or str, not {type(key).__name__}")

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        i = self._position(key)
        a, b = self._offsets[i], self._offsets[i + 1]
        return CrystalRecord(self._ids[i], self._z[a:b].copy(), self._x[a:b].copy(), self._lat[i].copy(),
                             self.site_dos(i), json.loads(self._prov[i]))

    def __iter__(self) -> Iterator[CrystalRecord]:
        return (self[i] for i in range(len(self)))

    def records(self, keys: Iterable[int | str] | None = None) -> list[CrystalRecord]:
        return [self[k] for k in (range(len(self)) if keys is None else keys)]

    def __repr__(self) -> str:
        return f"DOSStore({str(self.path)!r}, structures={len(self)}, atoms={self.total_atoms})"


def load_records(path: str | Path) -> list[CrystalRecord]:
    """Read every record of a store written by :func:`save_records`."""
    return DOSStore(path).records()


def load_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` dict given to :func:`save_records`."""
    with _open_npz(Path(path)) as z:
        if "meta" not in z.files:
            raise DataError(f"{path} is not a dosmatgen store: no meta entry")
        return json.loads(str(z["meta"]))


def concat_stores(paths: Sequence[str | Path], out_path: str | Path, meta: dict[str, Any] | None = None,
                  on_duplicate: str = "error") -> int:
    """Merge several stores (e.g. download shards) into one; returns the number of structures.

    ``on_duplicate``: ``"error"`` raises :class:`DataError` on a repeated id, ``"keep-first"``
    keeps the first occurrence in ``paths`` order.
    """
    if on_duplicate not in ("error", "keep-first"):
        raise ValueError(f"on_duplicate must be 'error' or 'keep-first', not {on_duplicate!r}")
    if not paths:
        raise DataError("no stores to merge")
    out: dict[str, CrystalRecord] = {}
    for p in paths:
        for r in load_records(p):
            if r.structure_id in out:
                if on_duplicate == "error":
                    raise DataError(f"structure id {r.structure_id!r} appears in more than one shard ({p})")
                continue
            out[r.structure_id] = r
    save_records(out_path, list(out.values()), meta)
    return len(out)


# ---- build folders: the shards and ledgers of the built-in dataset builder (dev_scripts/builtin) ----
#: Ledger of an unpartitioned prototype build; parts and other sources write ``ledger-*.jsonl``.
LEDGER = "ledger.jsonl"


def read_ledger(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``structure_id -> last ledger entry`` (status ``done`` or ``failed``), over ``ledger.jsonl``,
    every part's ``ledger-part*.jsonl`` and the offsite ``ledger-offsite.jsonl``
    (``dev_scripts/builtin/offsite.py``); a ``done`` entry is never replaced by a later failure (a
    retried failure that succeeds wins in whichever ledger it lands)."""
    out_dir = Path(out_dir)
    entries: dict[str, dict[str, Any]] = {}
    paths = [out_dir / LEDGER] + sorted(out_dir.glob("ledger-*.jsonl"))
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that structure is simply redone
            if entries.get(obj["id"], {}).get("status") == "done" and obj.get("status") != "done":
                continue  # a label in a shard stands, whatever another ledger says later
            entries[obj["id"]] = obj
    return entries


def shard_paths(out_dir: str | Path) -> list[Path]:
    return sorted(Path(out_dir).glob("shard-*.npz"))


def read_shards(out_dir: str | Path) -> tuple[list[CrystalRecord], dict[str, Any]]:
    """Every record in the shards of ``out_dir`` (an id seen twice keeps its first record) and the
    store meta a merge writes (protocol, versions, counts, elements, prototypes, records per
    provenance ``source``: ``builtin`` for prototype crystals, ``mp20`` for MP-20 ones; failures
    from the ledgers)."""
    from collections import Counter

    shards = shard_paths(out_dir)
    if not shards:
        raise DataError(f"no shards in {out_dir}; run the build first")
    records: dict[str, CrystalRecord] = {}
    meta0: dict[str, Any] = {}
    for p in shards:
        meta0 = meta0 or load_meta(p)
        for r in load_records(p):
            records.setdefault(r.structure_id, r)
    ledger = read_ledger(out_dir)
    from ase.data import chemical_symbols

    elements = sorted({chemical_symbols[int(z)] for r in records.values() for z in r.atomic_numbers})
    meta = {"source": "builtin", "protocol": meta0.get("protocol"), "versions": meta0.get("versions"),
            "build_command": meta0.get("command"),
            "rebuild": "python -m dev_scripts.builtin build --out resources/builtin --workers 2 --n-max 4000 --seed 0 "
                       "&& python -m dev_scripts.builtin build --out resources/builtin --merge-only "
                       "--store resources/builtin_dos.npz",
            "n_records": len(records),
            "n_failed": sum(1 for e in ledger.values() if e.get("status") == "failed"),
            "n_atoms": int(sum(r.num_atoms for r in records.values())), "elements": elements,
            "prototypes": sorted({str(r.provenance["prototype"]) for r in records.values()
                                  if "prototype" in r.provenance}),
            "sources": dict(sorted(Counter(str(r.provenance.get("source")) for r in records.values()).items()))}
    return list(records.values()), meta


def merge_shards(out_dir: str | Path, store_path: str | Path, command: str | None = None) -> dict[str, Any]:
    """Join every shard of ``out_dir`` into one store at ``store_path`` (see :func:`read_shards`);
    returns the store meta (protocol, versions, command, counts, elements)."""
    import sys

    records, meta = read_shards(out_dir)
    meta["merge_command"] = command or " ".join(sys.argv)
    save_records(store_path, records, meta)
    return meta
