"""Generated crystals and their file: one format for every caller of the generation service.

A :class:`GeneratedSet` holds raw sampled crystals (types, fractional coordinates, lattices; possibly
invalid: broken samples are kept so that the metrics can count them) in the order of the spec that
asked for them, with the id of the spec crystal each answers (for a regenerated split part: the test
structure that conditioned it).

Generated-set file (``.npz``, read with :func:`load_generated`)::

    format          "dosmatgen-generated"
    version         1
    source_ids      (B,) str   id of the test structure that conditioned (and, for t0 < T, seeded)
                               generated crystal b; the generated crystals are in this order
    offsets         (B+1,)     atoms of crystal b are rows offsets[b]:offsets[b+1]
    atomic_numbers  (M,) int   generated types (1..100)
    frac_coords     (M, 3)     fractional coordinates in [0, 1) (may be NaN for a broken sample)
    lattices        (B, 3, 3)  lattice rows, Å (may be singular for a broken sample)
    meta            JSON str   {"guidance": "cfg"|"classifier"|"uncond", "omega", "guidance_scale",
                                "t0": 1000|500|200 (the paper's T), "start": "prior"|"noised",
                                "steps", "step_lr", "seed", "batch_size", "n", "checkpoint",
                                "regressor", "store", "split", "subset", "limit", "device",
                                "sampling_seconds", "structures_per_second", "code", "options"}

Nothing is validated on write: broken samples are kept so that the metrics can count them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from dosmatgen.errors import DataError
from dosmatgen.io import ARCHIVE_ERRORS, atomic_temp_path

FORMAT = "dosmatgen-generated"
#: One raw crystal: (atomic_numbers (N,), frac_coords (N, 3), lattice (3, 3)).
RawCrystal = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class GeneratedSet:
    """Generated crystals aligned with the test structures that conditioned them."""

    source_ids: list[str]
    offsets: np.ndarray
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lattices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source_ids)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(atomic_numbers, frac_coords, lattice)`` of crystal ``i`` (raw, possibly invalid)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.atomic_numbers[a:b], self.frac_coords[a:b], self.lattices[i]

    def items(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self.item(i)

    def structures(self) -> list[tuple[Any, str | None]]:
        """``(Structure or None, reason)`` per crystal (:func:`dosmatgen.data.validity.build_structure`)."""
        from dosmatgen.data.validity import build_structure

        return [build_structure(*it) for it in self.items()]

    def subset(self, index: Sequence[int]) -> "GeneratedSet":
        """The crystals ``index`` (in that order) as a new set with the same metadata."""
        index = list(index)
        if not index:
            raise DataError("empty subset of a generated set")
        items = [self.item(i) for i in index]
        counts = [len(z) for z, _, _ in items]
        return GeneratedSet([self.source_ids[i] for i in index], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                            np.concatenate([z for z, _, _ in items]), np.concatenate([x for _, x, _ in items]),
                            np.stack([lat for _, _, lat in items]), dict(self.meta))


def concat_generated(parts: Sequence[GeneratedSet], meta: dict[str, Any] | None = None) -> GeneratedSet:
    parts = list(parts)
    if not parts:
        raise DataError("no generated structures to concatenate")
    counts = np.concatenate([np.diff(p.offsets) for p in parts])
    return GeneratedSet([s for p in parts for s in p.source_ids], np.concatenate([[0], np.cumsum(counts)]),
                        np.concatenate([p.atomic_numbers for p in parts]), np.concatenate([p.frac_coords for p in parts]),
                        np.concatenate([p.lattices for p in parts]), dict(meta or parts[0].meta))


def save_generated(path: str | Path, gen: GeneratedSet) -> None:
    """Write ``gen`` atomically in the format of the module docstring."""
    arrays = {
        "format": np.array(FORMAT), "version": np.array(1),
        "source_ids": np.array(gen.source_ids, dtype=str), "offsets": np.asarray(gen.offsets, dtype=np.int64),
        "atomic_numbers": np.asarray(gen.atomic_numbers, dtype=np.int16),
        "frac_coords": np.asarray(gen.frac_coords, dtype=np.float64),
        "lattices": np.asarray(gen.lattices, dtype=np.float64).reshape(-1, 3, 3),
        "meta": np.array(json.dumps(gen.meta, sort_keys=True, default=str)),
    }
    with atomic_temp_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_generated(path: str | Path) -> GeneratedSet:
    """Read a generated set written by :func:`save_generated`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"generated-structure file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise DataError(f"{path} is not a dosmatgen generated-structure file (no format '{FORMAT}')")
            gen = GeneratedSet([str(s) for s in z["source_ids"]], z["offsets"].astype(np.int64),
                               z["atomic_numbers"].astype(np.int64), z["frac_coords"].astype(np.float64),
                               z["lattices"].astype(np.float64), json.loads(str(z["meta"])))
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{path} is not a readable generated-structure file (truncated or corrupt?): {exc}") from exc
    if len(gen.offsets) != len(gen.source_ids) + 1 or gen.lattices.shape != (len(gen.source_ids), 3, 3):
        raise DataError(f"{path} is corrupt: offsets/lattices do not match the number of structures")
    return gen


def from_batch(batch: Any, source_ids: Sequence[str], meta: dict[str, Any] | None = None) -> GeneratedSet:
    """A :class:`GeneratedSet` from the sampler's :class:`~dosmatgen.model.batch.CrystalBatch`."""
    types = batch.atom_types.detach().cpu().numpy().astype(np.int64)
    frac = batch.frac_coords.detach().cpu().double().numpy()
    lat = batch.lattices.detach().cpu().double().numpy()
    offsets = batch.ptr.cpu().numpy().astype(np.int64)
    if len(source_ids) != len(offsets) - 1:
        raise DataError(f"{len(source_ids)} source ids for {len(offsets) - 1} generated crystals")
    return GeneratedSet(list(source_ids), offsets, types, frac, lat, dict(meta or {}))
