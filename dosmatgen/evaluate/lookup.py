"""DOS-lookup baseline for Table 2's element accuracy and composition match (not in the paper).

No generative model: each test atom takes the element of the training atom whose standardised
site DOS is nearest in L1, a 1-nearest-neighbour lookup over every DOS-labelled atom of the
training split::

    Z_lookup(i) = Z_train(argmin_j sum_k |z_i[k] - z_j[k]|),   z = (DOS - mean) / std   (per bin)

with the standardiser the diffusion model was trained with (``standardiser.json`` of
``dosmatgen data split``), so the lookup reads the DOS on the model's scale. Ties go to the first
training atom (split order, then atom order). Distances are float32 and computed in blocks of
``query_chunk x reference_chunk`` atoms (``torch.cdist``), so memory stays at a few tens of MB
whatever the size of the training split (paper scale: ~150k training atoms).

It measures how much of each atom's element its DOS gives away by itself, the number the
conditional model's element accuracy (:class:`~dosmatgen.evaluate.metrics.ElementAccuracy`) must
be read against, on the same first-N test structures as ``evaluate regenerate --limit N``. The
metrics JSON (:mod:`dosmatgen.evaluate.score`'s format) holds element accuracy (atom i against atom
i) and composition match (reduced formulas) only, nothing structural being predicted, with
``t0``/``start`` null (Table 2 repeats it under every T)::

    {"format": "dosmatgen-metrics", "version": 1, "guidance": "lookup", "t0": null, "start": null,
     "n_structures": B,
     "metrics": {"element_accuracy": R, "composition_match_rate": R},
     "lookup": {"distance": "l1", "space": "standardised site DOS", "n_train_structures",
                "n_train_structures_without_dos", "n_train_atoms", ..inputs (store, split, ..)},
     "seconds": {"lookup": s}, "command": "dosmatgen evaluate lookup ..."}

Beside it, ``<FILE stem>.per_structure.csv``: ``index, source_id, formula_ref, formula_lookup,
n_atoms, element_correct, element_accuracy, composition_match, neighbours`` (``neighbours``: the
nearest training atom of each test atom as ``<training id>#<atom index>``, ``;``-separated).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dosmatgen.data.schema import require_site_dos
from dosmatgen.errors import DataError
from dosmatgen.evaluate import metrics as M
from dosmatgen.evaluate.score import FORMAT, element_columns, metrics_by_source, write_per_structure_csv

GUIDANCE = "lookup"


def nearest_neighbours(query: np.ndarray, reference: np.ndarray, *, query_chunk: int = 1024,
                       reference_chunk: int = 8192, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Index and L1 distance of each query row's nearest reference row (first one on ties).

    >>> ref = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    >>> idx, dist = nearest_neighbours(np.array([[0.9, 1.2], [0.1, 0.0]]), ref, reference_chunk=1)
    >>> idx.tolist(), [round(float(d), 3) for d in dist]
    ([1, 0], [0.3, 0.1])
    """
    import torch

    q = torch.as_tensor(np.asarray(query, dtype=np.float32), device=device)
    r = torch.as_tensor(np.asarray(reference, dtype=np.float32), device=device)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise DataError(f"nearest_neighbours: shapes {tuple(q.shape)} and {tuple(r.shape)} do not pair up")
    if r.shape[0] == 0:
        raise DataError("nearest_neighbours: no reference rows to look up")
    if query_chunk < 1 or reference_chunk < 1:
        raise ValueError("chunk sizes must be >= 1")
    best_i = torch.zeros(q.shape[0], dtype=torch.int64, device=device)
    best_d = torch.full((q.shape[0],), float("inf"), dtype=torch.float32, device=device)
    for a in range(0, q.shape[0], query_chunk):
        qa = q[a:a + query_chunk]
        for b in range(0, r.shape[0], reference_chunk):
            d = torch.cdist(qa, r[b:b + reference_chunk], p=1.0)
            i_min = d.argmin(dim=1)  # the first minimum on ties (torch.argmin)
            d_min = d.gather(1, i_min[:, None])[:, 0]
            better = d_min < best_d[a:a + query_chunk]  # strict: an earlier block wins ties
            best_d[a:a + query_chunk] = torch.where(better, d_min, best_d[a:a + query_chunk])
            best_i[a:a + query_chunk] = torch.where(better, i_min + b, best_i[a:a + query_chunk])
    return best_i.cpu().numpy(), best_d.cpu().numpy()


def training_atoms(records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw site DOS ``(M, 400)``, atomic numbers ``(M,)`` and ``<id>#<atom>`` labels of every
    atom of the records that have a DOS (records without one are skipped)."""
    with_dos = [r for r in records if r.dos is not None]
    if not with_dos:
        raise DataError("the training split has no site DOS to look up")
    dos = np.concatenate([np.asarray(r.dos, dtype=np.float32) for r in with_dos])
    z = np.concatenate([np.asarray(r.atomic_numbers, dtype=np.int64) for r in with_dos])
    labels = [f"{r.structure_id}#{i}" for r in with_dos for i in range(r.num_atoms)]
    return dos, z, labels


def score_lookup(test: Sequence[Any], train: Sequence[Any], standardiser: Any, *, device: str = "cpu",
                 query_chunk: int = 1024, reference_chunk: int = 8192, inputs: dict[str, Any] | None = None,
                 per_structure_csv: str | Path | None = None) -> dict[str, Any]:
    """The lookup baseline's metrics JSON (module docstring) for ``test`` records against the
    atoms of ``train`` records, both with raw DOS; ``inputs`` (paths, subset, limit) is recorded."""
    test = require_site_dos(test, "to look up")
    tic = time.perf_counter()
    train_dos, train_z, labels = training_atoms(train)
    query = np.concatenate([standardiser.transform(r.dos) for r in test])
    idx, _ = nearest_neighbours(query, standardiser.transform(train_dos), query_chunk=query_chunk,
                                reference_chunk=reference_chunk, device=device)
    seconds = time.perf_counter() - tic
    offsets = np.concatenate([[0], np.cumsum([r.num_atoms for r in test])])
    looked_up = [train_z[idx[offsets[i]:offsets[i + 1]]] for i in range(len(test))]
    ref_types = [np.asarray(r.atomic_numbers) for r in test]
    formulas_lookup = [M.reduced_formula(z) for z in looked_up]
    formulas_ref = [M.reduced_formula(z) for z in ref_types]

    def set_metrics(part: Sequence[int]) -> dict[str, M.MetricResult]:
        return {"element_accuracy": M.ElementAccuracy().compute([looked_up[i] for i in part],
                                                                [ref_types[i] for i in part]),
                "composition_match_rate": M.CompositionMatchRate().from_formulas(
                    [formulas_lookup[i] for i in part], [formulas_ref[i] for i in part])}

    metrics = set_metrics(range(len(test)))
    by_source = metrics_by_source([r.structure_id for r in test], set_metrics)
    if per_structure_csv is not None:
        rows = [{"index": i, "source_id": r.structure_id, "formula_ref": formulas_ref[i],
                 "formula_lookup": formulas_lookup[i], **element_columns(looked_up[i], ref_types[i]),
                 "composition_match": int(formulas_lookup[i] == formulas_ref[i]),
                 "neighbours": ";".join(labels[j] for j in idx[offsets[i]:offsets[i + 1]])}
                for i, r in enumerate(test)]
        write_per_structure_csv(per_structure_csv, rows)
    return {"format": FORMAT, "version": 1, "guidance": GUIDANCE, "t0": None, "start": None, "n_structures": len(test),
            "metrics": {k: v.to_dict() for k, v in metrics.items()}, "by_source": by_source,
            "lookup": {"distance": "l1", "space": "standardised site DOS", "n_train_structures": len(train),
                       "n_train_structures_without_dos": sum(1 for r in train if r.dos is None),
                       "n_train_atoms": int(len(train_z)), **(inputs or {})},
            "seconds": {"lookup": seconds}}
