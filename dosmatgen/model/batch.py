"""Batches of crystals for the diffusion model (docs/method.md): clean ones and noisy ones.

A :class:`CrystalBatch` holds B crystals with M atoms in all, as flat tensors plus a graph index,
the layout PyTorch Geometric uses:

- ``atom_types`` (M,) atomic numbers 1..MAX_Z
- ``frac_coords`` (M, 3) fractional coordinates
- ``lattices`` (B, 3, 3) lattice vectors as rows, Å
- ``num_atoms`` (B,), ``batch`` (M,) index of each atom's crystal
- ``dos`` (M, 400) standardised site DOS, zeros where unknown
- ``cond_mask`` (M,) bool: the atom is conditioned on its DOS
- ``fixed_mask`` (M,) bool: the atom's type is clamped while sampling

A :class:`NoisyBatch` is a structure S_t = (A_t, X_t, L_t) in the middle of the diffusion: the
types are continuous vectors (M, Z) instead of integers.

>>> import numpy as np
>>> from dosmatgen.data.schema import CrystalRecord
>>> rec = CrystalRecord("NaCl", [11, 17], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 4, np.zeros((2, 400)))
>>> b = CrystalBatch.from_records([rec, rec])
>>> b.num_graphs, tuple(b.batch.tolist()), bool(b.cond_mask.all())
(2, (0, 0, 1, 1), True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dosmatgen.data.schema import MAX_Z, CrystalRecord
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from dosmatgen.data.standardise import DOSStandardiser

#: A mask for one record: None, a bool array of length N, or atom indices.
RecordMask = Any


def _ptr(num_atoms: torch.Tensor) -> torch.Tensor:
    return torch.cat([num_atoms.new_zeros(1), torch.cumsum(num_atoms, 0)])


@dataclass
class CrystalBatch:
    """B crystals, flattened (see the module docstring for the fields)."""

    atom_types: torch.Tensor
    frac_coords: torch.Tensor
    lattices: torch.Tensor
    num_atoms: torch.Tensor
    batch: torch.Tensor
    dos: torch.Tensor
    cond_mask: torch.Tensor
    fixed_mask: torch.Tensor
    structure_ids: list[str] | None = None

    def __post_init__(self) -> None:
        m = self.atom_types.shape[0]
        b = self.num_atoms.shape[0]
        shapes = {"atom_types": (m,), "frac_coords": (m, 3), "lattices": (b, 3, 3), "batch": (m,), "cond_mask": (m,),
                  "fixed_mask": (m,)}
        for name, want in shapes.items():
            got = tuple(getattr(self, name).shape)
            if got != want:
                raise DataError(f"CrystalBatch.{name} has shape {got}, expected {want}")
        if self.dos.ndim != 2 or self.dos.shape[0] != m:
            raise DataError(f"CrystalBatch.dos has shape {tuple(self.dos.shape)}, expected ({m}, {N_DOS})")
        if self.structure_ids is not None and len(self.structure_ids) != b:
            raise DataError(f"CrystalBatch has {len(self.structure_ids)} structure ids for {b} crystals")

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.atom_types.shape[0])

    @property
    def device(self) -> torch.device:
        return self.frac_coords.device

    @property
    def ptr(self) -> torch.Tensor:
        """(B+1,) offsets of each crystal's first atom."""
        return _ptr(self.num_atoms)

    def validate(self, max_z: int = MAX_Z) -> None:
        """Value checks (shapes are checked on construction). Raises :class:`DataError`."""
        if self.num_graphs == 0:
            raise DataError("CrystalBatch holds zero crystals")
        if bool((self.num_atoms < 1).any()):
            bad = torch.nonzero(self.num_atoms < 1).flatten().tolist()
            raise DataError(f"crystal(s) {bad} of the batch have zero atoms")
        if int(self.num_atoms.sum()) != self.num_nodes:
            raise DataError(f"num_atoms sums to {int(self.num_atoms.sum())} but there are {self.num_nodes} atoms")
        expected = torch.repeat_interleave(torch.arange(self.num_graphs, device=self.device), self.num_atoms)
        if not torch.equal(expected, self.batch):
            raise DataError("CrystalBatch.batch does not match num_atoms (atoms must be grouped by crystal)")
        if bool(((self.atom_types < 1) | (self.atom_types > max_z)).any()):
            raise DataError(f"atom types outside 1..{max_z}")
        for name in ("frac_coords", "lattices", "dos"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise DataError(f"CrystalBatch.{name} contains NaN or inf")

    @classmethod
    def from_records(cls, records: Sequence[CrystalRecord],
                     standardiser: "DOSStandardiser | None" = None,
                     cond_mask: RecordMask = None, fixed_mask: RecordMask = None,
                     dtype: torch.dtype = torch.float32) -> "CrystalBatch":
        """Batch records. ``standardiser`` transforms the raw DOS (None: the DOS is used as is,
        i.e. it is already standardised).

        Masks are None, a flat bool array over all M atoms, or a list with one entry per record
        (None, a bool array of length N_i, or a list of atom indices). ``cond_mask`` defaults to
        every atom of a record that has a DOS; ``fixed_mask`` to no atom. Conditioning an atom of
        a record without DOS is an error.
        """
        records = list(records)
        if not records:
            raise DataError("cannot batch zero records")
        sizes = []
        for rec in records:
            if rec.num_atoms == 0:
                raise DataError(f"{rec.structure_id}: structure has zero atoms")
            sizes.append(rec.num_atoms)
        has_dos = np.concatenate([np.full(r.num_atoms, r.dos is not None) for r in records])
        cond = _resolve_mask(cond_mask, records, "cond_mask", default=has_dos)
        fixed = _resolve_mask(fixed_mask, records, "fixed_mask", default=np.zeros_like(has_dos))
        bad = np.nonzero(cond & ~has_dos)[0]
        if bad.size:
            rid = int(np.repeat(np.arange(len(records)), sizes)[bad[0]])
            local = int(bad[0]) - sum(sizes[:rid])
            raise DataError(f"{records[rid].structure_id}: atom {local} is conditioned but the record has no DOS")

        dos_blocks = []
        for rec in records:
            if rec.dos is None:
                dos_blocks.append(np.zeros((rec.num_atoms, N_DOS), dtype=np.float32))
                continue
            dos = np.asarray(rec.dos)
            if dos.shape != (rec.num_atoms, N_DOS):
                raise DataError(f"{rec.structure_id}: DOS has shape {dos.shape}, expected ({rec.num_atoms}, {N_DOS})")
            if not np.all(np.isfinite(dos)):
                raise DataError(f"{rec.structure_id}: DOS contains NaN or inf")
            if standardiser is not None:
                dos = standardiser.transform(dos)
                if not np.all(np.isfinite(dos)):
                    raise DataError(f"{rec.structure_id}: standardised DOS contains NaN or inf")
            dos_blocks.append(np.asarray(dos, dtype=np.float32))

        num_atoms = torch.tensor(sizes, dtype=torch.long)
        out = cls(
            atom_types=torch.from_numpy(np.concatenate([r.atomic_numbers for r in records]).astype(np.int64)),
            frac_coords=torch.from_numpy(np.concatenate([r.frac_coords for r in records]) % 1.0).to(dtype),
            lattices=torch.from_numpy(np.stack([r.lattice for r in records])).to(dtype), num_atoms=num_atoms,
            batch=torch.repeat_interleave(torch.arange(len(records)), num_atoms),
            dos=torch.from_numpy(np.concatenate(dos_blocks)).to(dtype), cond_mask=torch.from_numpy(cond),
            fixed_mask=torch.from_numpy(fixed), structure_ids=[r.structure_id for r in records])
        out.validate()
        return out

    @classmethod
    def for_generation(cls, num_atoms: Sequence[int], dos: Sequence[np.ndarray | None] | None = None,
                       cond_mask: RecordMask = None, fixed_types: Sequence[Sequence[int] | None] | None = None,
                       standardiser: "DOSStandardiser | None" = None,
                       structure_ids: Sequence[str] | None = None,
                       dtype: torch.dtype = torch.float32) -> "CrystalBatch":
        """A generation spec from atom counts alone (no structure): sampling from the prior.

        Args:
            num_atoms: atoms per crystal.
            dos: per crystal, None or an (N_i, 400) array (raw if ``standardiser`` is given,
                else already standardised); rows of unconditioned atoms are ignored.
            cond_mask: as in :meth:`from_records`; default every atom of a crystal with a DOS.
            fixed_types: per crystal, None or a length-N_i list of atomic numbers with 0 for
                "free"; non-zero entries are clamped during sampling (``fixed_mask``).
        Coordinates and lattices are placeholders (zeros / identity); free atoms get type 1.
        """
        sizes = [int(n) for n in num_atoms]
        if not sizes:
            raise DataError("a generation spec needs at least one crystal")
        if any(n < 1 for n in sizes):
            raise DataError(f"every crystal needs at least one atom, got num_atoms={sizes}")
        b = len(sizes)
        dos = list(dos) if dos is not None else [None] * b
        fixed_types = list(fixed_types) if fixed_types is not None else [None] * b
        ids = list(structure_ids) if structure_ids is not None else [f"gen-{i}" for i in range(b)]
        if len(dos) != b or len(fixed_types) != b or len(ids) != b:
            raise DataError(f"for_generation: num_atoms has {b} crystals but dos/fixed_types/structure_ids "
                            f"have {len(dos)}/{len(fixed_types)}/{len(ids)}")
        records = []
        fixed_rows = []
        for i, n in enumerate(sizes):
            types = np.ones(n, dtype=np.int64)
            fixed = np.zeros(n, dtype=bool)
            if fixed_types[i] is not None:
                ft = np.asarray(fixed_types[i], dtype=np.int64).reshape(-1)
                if ft.shape != (n,):
                    raise DataError(f"{ids[i]}: fixed_types has {ft.size} entries for {n} atoms")
                if ((ft < 0) | (ft > MAX_Z)).any():
                    raise DataError(f"{ids[i]}: fixed_types must be 0 (free) or an atomic number 1..{MAX_Z}")
                fixed = ft > 0
                types[fixed] = ft[fixed]
            records.append(CrystalRecord(ids[i], types, np.zeros((n, 3)), np.eye(3), dos[i]))
            fixed_rows.append(fixed)
        return cls.from_records(records, standardiser, cond_mask=cond_mask, fixed_mask=fixed_rows, dtype=dtype)

    def to(self, device: torch.device | str) -> "CrystalBatch":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self) if f.name != "structure_ids"})

    def to_records(self, prefix: str = "gen") -> list[CrystalRecord]:
        """One record per crystal (DOS not attached: it is standardised here)."""
        types, frac, lat, ptr = self._numpy_views()
        ids = self.structure_ids or [f"{prefix}-{i}" for i in range(self.num_graphs)]
        return [CrystalRecord(ids[i], types[ptr[i]:ptr[i + 1]], frac[ptr[i]:ptr[i + 1]], lat[i])
                for i in range(self.num_graphs)]

    def to_structures(self, on_invalid: str = "raise") -> list:
        """pymatgen ``Structure`` per crystal. A crystal with a non-finite or singular lattice,
        non-finite coordinates or unknown types raises :class:`DataError`
        (``on_invalid="raise"``) or becomes ``None`` (``on_invalid="none"``)."""
        from pymatgen.core import Lattice, Structure

        if on_invalid not in ("raise", "none"):
            raise ValueError(f"on_invalid must be 'raise' or 'none', got {on_invalid!r}")
        types, frac, lat, ptr = self._numpy_views()
        out = []
        for i in range(self.num_graphs):
            z = types[ptr[i]:ptr[i + 1]]
            x = frac[ptr[i]:ptr[i + 1]]
            problem = None
            if not (np.all(np.isfinite(lat[i])) and np.all(np.isfinite(x))):
                problem = "non-finite lattice or coordinates"
            elif abs(np.linalg.det(lat[i])) < 1e-6:
                problem = "zero-volume lattice"
            elif ((z < 1) | (z > MAX_Z)).any():
                problem = f"atom types outside 1..{MAX_Z}"
            if problem is not None:
                if on_invalid == "raise":
                    raise DataError(f"crystal {i} of the batch: {problem}")
                out.append(None)
                continue
            out.append(Structure(Lattice(lat[i]), [int(v) for v in z], x % 1.0))
        return out

    def _numpy_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(atom_types int64 (M,), frac_coords float64 (M, 3), lattices float64 (B, 3, 3), ptr (B+1,))."""
        return (self.atom_types.detach().cpu().numpy(), self.frac_coords.detach().cpu().double().numpy(),
                self.lattices.detach().cpu().double().numpy(), self.ptr.cpu().numpy())

    def graph_slice(self, index: Sequence[int] | torch.Tensor) -> "CrystalBatch":
        """The crystals ``index`` (in that order) as a new batch."""
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1).tolist()
        ptr = self.ptr.tolist()
        return collate([self._single(i, ptr) for i in idx])

    def _single(self, i: int, ptr: list[int]) -> "CrystalBatch":
        s = slice(ptr[i], ptr[i + 1])
        n = ptr[i + 1] - ptr[i]
        return CrystalBatch(self.atom_types[s], self.frac_coords[s], self.lattices[i:i + 1],
                            self.num_atoms[i:i + 1], torch.zeros(n, dtype=torch.long, device=self.device),
                            self.dos[s], self.cond_mask[s], self.fixed_mask[s],
                            None if self.structure_ids is None else [self.structure_ids[i]])


def collate(batches: Sequence[CrystalBatch]) -> CrystalBatch:
    """Concatenate batches (any sizes) into one."""
    batches = list(batches)
    if not batches:
        raise DataError("cannot collate zero batches")
    offsets = np.cumsum([0] + [b.num_graphs for b in batches[:-1]])
    ids = None
    if all(b.structure_ids is not None for b in batches):
        ids = [sid for b in batches for sid in b.structure_ids]  # type: ignore[union-attr]
    joined = {f.name: torch.cat([getattr(b, f.name) for b in batches]) for f in dataclasses.fields(CrystalBatch)
              if f.name not in ("batch", "structure_ids")}
    return CrystalBatch(**joined, batch=torch.cat([b.batch + int(o) for b, o in zip(batches, offsets)]),
                        structure_ids=ids)


class RecordDataset(Dataset):
    """A torch ``Dataset`` of single-crystal :class:`CrystalBatch` objects built once from records
    (DOS standardised with ``standardiser`` when given). Use with ``collate_fn=collate_records``."""

    def __init__(self, records: Sequence[CrystalRecord], standardiser: "DOSStandardiser | None" = None):
        records = list(records)
        if not records:
            raise DataError("RecordDataset needs at least one record")
        self.items = [CrystalBatch.from_records([r], standardiser) for r in records]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> CrystalBatch:
        return self.items[i]


def collate_records(items: Sequence[CrystalBatch]) -> CrystalBatch:
    """``collate_fn`` for a DataLoader over :class:`RecordDataset`."""
    return collate(items)


@dataclass
class NoisyBatch:
    """S_t = (A_t, X_t, L_t) with the graph bookkeeping, the DOS condition and the masks.

    ``types`` (M, Z) continuous type vectors; ``frac_coords`` (M, 3); ``lattices`` (B, 3, 3);
    ``type_estimate`` (M, Z) or None: a self-conditioned denoiser's earlier estimate of the clean
    type vectors (:attr:`~dosmatgen.model.config.ModelConfig.self_condition`; None: none yet).
    """

    types: torch.Tensor
    frac_coords: torch.Tensor
    lattices: torch.Tensor
    num_atoms: torch.Tensor
    batch: torch.Tensor
    dos: torch.Tensor
    cond_mask: torch.Tensor
    type_estimate: torch.Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    @classmethod
    def from_clean(cls, b: CrystalBatch, max_z: int = MAX_Z) -> "NoisyBatch":
        """S_0: one-hot types (index Z-1), the clean coordinates and lattices."""
        types = torch.nn.functional.one_hot(b.atom_types - 1, max_z).to(b.frac_coords.dtype)
        return cls(types, b.frac_coords, b.lattices, b.num_atoms, b.batch, b.dos, b.cond_mask)

    def replace(self, **changes: torch.Tensor) -> "NoisyBatch":
        return dataclasses.replace(self, **changes)

    def doubled(self) -> "NoisyBatch":
        """The batch followed by a copy of itself with every condition dropped (one forward pass
        evaluates the conditional and the unconditional model, paper §2.4)."""
        twice = {f.name: None if getattr(self, f.name) is None else torch.cat([getattr(self, f.name)] * 2)
                 for f in dataclasses.fields(self)}
        return NoisyBatch(**{**twice, "batch": torch.cat([self.batch, self.batch + self.num_graphs]),
                             "cond_mask": torch.cat([self.cond_mask, torch.zeros_like(self.cond_mask)])})


def _resolve_mask(mask: RecordMask, records: Sequence[CrystalRecord], name: str,
                  default: np.ndarray) -> np.ndarray:
    sizes = [r.num_atoms for r in records]
    total = sum(sizes)
    if mask is None:
        return default.astype(bool).copy()
    if isinstance(mask, (np.ndarray, torch.Tensor)) and np.asarray(mask).dtype == bool and np.asarray(mask).ndim == 1:
        flat = np.asarray(mask)
        if flat.shape != (total,):
            raise DataError(f"{name} has {flat.shape[0]} entries but the batch has {total} atoms")
        return flat.copy()
    entries = list(mask) if isinstance(mask, Iterable) else None
    if entries is None or len(entries) != len(records):
        raise DataError(f"{name} must be None, a bool array over all {total} atoms, or a list with one "
                        f"entry per record ({len(records)} records)")
    out = []
    start = 0
    for rec, n, entry in zip(records, sizes, entries):
        part = default[start:start + n].astype(bool).copy() if entry is None else _record_mask(entry, n, rec, name)
        out.append(part)
        start += n
    return np.concatenate(out)


def _record_mask(entry: Any, n: int, rec: CrystalRecord, name: str) -> np.ndarray:
    arr = np.asarray(entry.cpu() if isinstance(entry, torch.Tensor) else entry)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise DataError(f"{rec.structure_id}: {name} has {arr.size} entries for {n} atoms")
        return arr.copy()
    if arr.size == 0:
        return np.zeros(n, dtype=bool)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{rec.structure_id}: {name} entries must be atom indices or booleans, got {arr.dtype}")
    idx = arr.astype(np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise DataError(f"{rec.structure_id}: {name} index {int(bad[0])} out of range for {n} atoms")
    out = np.zeros(n, dtype=bool)
    out[idx] = True
    return out
