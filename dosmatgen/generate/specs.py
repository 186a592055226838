"""What to generate: generation specs (:class:`~dosmatgen.model.batch.CrystalBatch`) for every caller.

- :func:`records_spec`: a split part, one crystal per record with its atom count and every atom
  conditioned on its own site DOS (paper §3.1; with a start at t0 the record's structure is noised).
- :func:`prior_spec`: crystals of given atom counts from the prior, chosen atoms conditioned on one
  target DOS, chosen atoms with a clamped type (masked and fixed-type generation, paper §3.2.1,
  §3.2.3; the screen §3.3).
- :func:`template_spec`: copies of a template structure to noise to t0 (paper §3.2.2).
- :func:`target_spec`: ``dosmatgen sample``'s request: atom count or template, target rows on
  chosen atoms, fixed types.

Target DOS come in raw (states/eV on the 400-point grid) unless a function says standardised.

>>> spec = prior_spec([4, 5], np.zeros(400), cond_atoms=(0,), fixed={1: 28})
>>> spec.num_graphs, spec.cond_mask.tolist()[:5], spec.fixed_mask.tolist()[:5]
(2, [True, False, False, False, True], [False, True, False, False, False])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import CrystalRecord, require_site_dos
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import CheckpointError, ConfigError, DataError


def records_spec(records: Sequence[CrystalRecord], standardiser: Any):
    """One crystal per record, every atom conditioned on its own (raw) site DOS."""
    from dosmatgen.model.batch import CrystalBatch

    return CrystalBatch.from_records(require_site_dos(records, "to condition on"), standardiser)


def condition_rows(n_atoms: int, cond_std: np.ndarray, cond_atoms: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 400) standardised DOS rows (``cond_std`` on the conditioned atoms, zeros elsewhere)
    and the (N,) bool condition mask."""
    cond_std = np.asarray(cond_std, dtype=np.float32).reshape(-1)
    if cond_std.shape != (N_DOS,):
        raise DataError(f"conditioning DOS has {cond_std.size} points, expected {N_DOS}")
    mask = np.zeros(n_atoms, dtype=bool)
    for i in cond_atoms:
        if not 0 <= int(i) < n_atoms:
            raise ConfigError(f"conditioned atom index {i} is out of range for {n_atoms} atoms")
        mask[int(i)] = True
    rows = np.zeros((n_atoms, N_DOS), dtype=np.float32)
    rows[mask] = cond_std
    return rows, mask


def prior_spec(num_atoms: Sequence[int], cond_std: np.ndarray, cond_atoms: Sequence[int] = (0,),
               fixed: dict[int, int] | None = None, ids: Sequence[str] | None = None):
    """One crystal per entry of ``num_atoms`` from the prior; atoms ``cond_atoms`` conditioned on
    the standardised DOS ``cond_std``; ``fixed`` maps an atom index to a clamped atomic number."""
    from dosmatgen.model.batch import CrystalBatch

    dos, masks, fixed_types = [], [], []
    for n in num_atoms:
        rows, mask = condition_rows(int(n), cond_std, cond_atoms)
        dos.append(rows)
        masks.append(mask)
        ft = np.zeros(int(n), dtype=np.int64)
        for i, z in (fixed or {}).items():
            if not 0 <= i < n:
                raise ConfigError(f"fixed-type atom index {i} is out of range for {n} atoms")
            ft[i] = z
        fixed_types.append(ft if fixed else None)
    return CrystalBatch.for_generation(list(num_atoms), dos=dos, cond_mask=masks,
                                       fixed_types=fixed_types, structure_ids=ids)


def template_spec(template: CrystalRecord, count: int, cond_std: np.ndarray, cond_atoms: Sequence[int]):
    """``count`` copies of ``template`` (the structure a start at t0 noises), atoms ``cond_atoms``
    conditioned on the standardised DOS ``cond_std``."""
    from dosmatgen.model.batch import CrystalBatch

    rows, mask = condition_rows(template.num_atoms, cond_std, cond_atoms)
    recs = [CrystalRecord(f"{template.structure_id}-{i}", template.atomic_numbers, template.frac_coords,
                          template.lattice, rows) for i in range(count)]
    return CrystalBatch.from_records(recs, None, cond_mask=[mask] * count)


def target_spec(n: int, *, standardiser: Any, max_z: int, num_atoms: int | None = None,
                target_rows: np.ndarray | None = None, condition_atoms: Sequence[int] | None = None,
                fixed_types: dict[int, int] | None = None, template: CrystalRecord | None = None,
                prefix: str = "sample"):
    """``n`` crystals for one request: ``num_atoms`` atoms (or the ``template``'s), the raw
    ``target_rows`` (K, 400) on ``condition_atoms`` in order (one row may serve all; default: atoms
    0..K-1), ``fixed_types`` {atom index: atomic number}. Every input is checked first."""
    from dosmatgen.model.batch import CrystalBatch

    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    k = 0 if target_rows is None else int(target_rows.shape[0])
    if template is not None:
        if num_atoms is not None and num_atoms != template.num_atoms:
            raise ConfigError(f"--num-atoms {num_atoms} disagrees with the template's {template.num_atoms} atoms")
        num_atoms = template.num_atoms
    elif num_atoms is None:
        if k == 0 or condition_atoms:
            raise ConfigError("give --num-atoms N (or a --template, or K target rows for K atoms)")
        num_atoms = k
    if num_atoms < 1:
        raise DataError(f"a crystal needs at least one atom, got --num-atoms {num_atoms}")
    if condition_atoms and target_rows is None:
        raise ConfigError("--condition-atoms needs a target (--target-dos or --target)")
    cond = list(condition_atoms) if condition_atoms else list(range(k))
    bad = [i for i in cond if i >= num_atoms]
    if bad:
        raise DataError(f"conditioned atom {bad[0]} does not exist: the crystal has {num_atoms} atoms "
                        f"(indices 0..{num_atoms - 1})")
    if target_rows is not None and k not in (1, len(cond)):
        raise DataError(f"{k} target DOS rows for {len(cond)} conditioned atoms (give one row per "
                        "conditioned atom, or a single row for all)")
    fixed = dict(fixed_types or {})
    bad = [i for i in fixed if i >= num_atoms]
    if bad:
        raise DataError(f"--fixed-types names atom {bad[0]}, but the crystal has {num_atoms} atoms "
                        f"(indices 0..{num_atoms - 1})")
    too_big = [z for z in fixed.values() if z > max_z]
    if too_big:
        raise DataError(f"--fixed-types: atomic number {too_big[0]} is outside the model's types 1..{max_z}")

    dos_std = None
    mask = np.zeros(num_atoms, dtype=bool)
    if target_rows is not None:
        if standardiser is None:
            raise CheckpointError("the checkpoint has no DOS standardiser, so a raw target DOS cannot be used")
        dos_std = np.zeros((num_atoms, N_DOS), dtype=np.float32)
        std_rows = standardiser.transform(target_rows)
        for j, i in enumerate(cond):
            dos_std[i] = std_rows[0 if k == 1 else j]
        mask[cond] = True
    fixed_mask = np.zeros(num_atoms, dtype=bool)
    fixed_mask[list(fixed)] = True
    ids = [f"{prefix}-{i:04d}" for i in range(n)]
    if template is not None:
        types = template.atomic_numbers.copy()
        for i, z in fixed.items():
            types[i] = z
        recs = [CrystalRecord(sid, types, template.frac_coords, template.lattice, dos_std) for sid in ids]
        return CrystalBatch.from_records(recs, None, cond_mask=[mask] * n, fixed_mask=[fixed_mask] * n)
    ft = np.zeros(num_atoms, dtype=np.int64)
    for i, z in fixed.items():
        ft[i] = z
    return CrystalBatch.for_generation([num_atoms] * n, dos=[dos_std] * n,
                                       cond_mask=[mask] * n if dos_std is not None else None,
                                       fixed_types=[ft if fixed else None] * n, structure_ids=ids)


def tie_groups(spec: Any, tolerance: float) -> np.ndarray:
    """(M,) group id per atom: conditioned atoms of one crystal whose standardised DOS rows differ
    by a mean absolute difference below ``tolerance`` (directly or through a chain of such atoms)
    share an id; every other atom has its own.

    >>> spec = prior_spec([3], np.zeros(400), cond_atoms=(0, 1, 2))
    >>> tie_groups(spec, 0.01).tolist()
    [0, 0, 0]
    """
    dos = spec.dos.detach().cpu().numpy()
    cond = spec.cond_mask.detach().cpu().numpy()
    ptr = spec.ptr.detach().cpu().numpy()
    group = np.arange(len(dos))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for a, b in zip(ptr[:-1], ptr[1:]):
        idx = [i for i in range(a, b) if cond[i]]
        for k, i in enumerate(idx):
            for j in idx[k + 1:]:
                if np.abs(dos[i] - dos[j]).mean() < tolerance:
                    group[root(j)] = root(i)
    roots = np.array([root(i) for i in range(len(group))])
    return np.unique(roots, return_inverse=True)[1]
