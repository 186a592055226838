"""What is in a dataset store: counts, elements, cell sizes, provenance (text); its two figures
(one site's DOS, the element and atoms-per-cell histograms) are drawn by :mod:`dosmatgen.plots.dataset`.

>>> import numpy as np
>>> r = CrystalRecord("x", [8, 12], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 3, np.ones((2, 400)),
...                   {"source": "test"})
>>> s = dataset_summary([r]); s["n_structures"], s["n_elements"], s["element_counts"]
(1, 2, {'O': 1, 'Mg': 1})
>>> resolve_site_index(r, "Mg"), resolve_site_index(r, 0)
(1, 0)
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

import numpy as np

from dosmatgen.data.schema import CrystalRecord, element_symbol
from dosmatgen.data.split import SOURCES, record_source
from dosmatgen.errors import DataError


def dataset_summary(records: Iterable[CrystalRecord], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts of a dataset (a list of records or a :class:`~dosmatgen.data.store.DOSStore`).

    ``element_counts``: number of *structures* containing each element (ordered by Z);
    ``element_atoms``: number of *atoms* of each element; ``size_histogram``: atoms per cell →
    number of structures; ``sources``: "source / engine" (provenance) → number of structures;
    ``by_source``: per source of :func:`dosmatgen.data.split.record_source` (prototypes, mp20, mp,
    other; from the id prefix, the strata of the split), its structure, labelled, atom and element
    counts, atoms-per-cell histogram and structures containing each element.
    """
    from dosmatgen.data.store import DOSStore

    sources: Counter[str] = Counter()
    per_source: dict[str, dict[str, Any]] = {}
    if isinstance(records, DOSStore):  # fast path: arrays only, no DOS decompression
        meta = meta if meta is not None else records.meta
        has_dos, ids = records.has_dos, records.ids
        rows = ((ids[i], records.atomic_numbers(i), bool(has_dos[i]), records.provenance(i))
                for i in range(len(records)))
    else:
        rows = ((r.structure_id, r.atomic_numbers, r.dos is not None, r.provenance) for r in records)
    for sid, numbers, labelled, prov in rows:
        zs = [int(z) for z in numbers]
        src = per_source.setdefault(record_source(str(sid)), {"n": 0, "labelled": 0, "atoms": Counter(),
                                                               "with": Counter(), "sizes": Counter()})
        src["n"] += 1
        src["labelled"] += labelled
        src["atoms"].update(zs)
        src["with"].update(set(zs))
        src["sizes"][len(zs)] += 1
        prov = prov or {}
        key = str(prov.get("source", "unknown"))
        if prov.get("engine"):
            key += f" / {prov['engine']}"
        sources[key] += 1
    if not per_source:
        raise DataError("the dataset is empty")
    struct_with, atoms_of, sizes = (sum((v[k] for v in per_source.values()), Counter())
                                    for k in ("with", "atoms", "sizes"))
    return {
        "n_structures": sum(v["n"] for v in per_source.values()),
        "n_atoms": sum(atoms_of.values()),
        "n_labelled": sum(v["labelled"] for v in per_source.values()),
        "n_elements": len(atoms_of),
        "element_counts": {element_symbol(z): struct_with[z] for z in sorted(struct_with)},
        "element_atoms": {element_symbol(z): atoms_of[z] for z in sorted(atoms_of)},
        "size_histogram": {n: sizes[n] for n in sorted(sizes)},
        "sources": dict(sources.most_common()),
        "by_source": {
            name: {"n_structures": v["n"], "n_labelled": v["labelled"], "n_atoms": sum(v["atoms"].values()),
                   "n_elements": len(v["with"]),
                   "size_histogram": {n: v["sizes"][n] for n in sorted(v["sizes"])},
                   "element_counts": {element_symbol(z): v["with"][z] for z in sorted(v["with"])}}
            for name in SOURCES if name in per_source for v in [per_source[name]]},
        "meta": dict(meta or {}),
    }


def format_summary(summary: dict[str, Any], name: str = "dataset") -> str:
    """Human-readable text of :func:`dataset_summary`."""
    s = summary
    lines = [
        f"{name}",
        f"  structures: {s['n_structures']}  (with site DOS: {s['n_labelled']})",
        f"  atoms:      {s['n_atoms']}  (mean {s['n_atoms'] / s['n_structures']:.2f} per cell)",
        f"  elements:   {s['n_elements']}",
        "  atoms per cell: " + ", ".join(f"{n}: {c}" for n, c in s["size_histogram"].items()),
        "  structures containing each element:",
    ]
    items = list(s["element_counts"].items())
    for k in range(0, len(items), 8):
        lines.append("    " + "  ".join(f"{el:>2} {c:<5d}" for el, c in items[k:k + 8]).rstrip())
    lines.append("  sources:")
    lines += [f"    {src}: {c}" for src, c in s["sources"].items()]
    by_source = s.get("by_source") or {}
    if by_source:
        lines.append("  by source (id prefix; the strata of `dosmatgen data split`):")
    for src, v in by_source.items():
        lines.append(f"    {src}: {v['n_structures']} structures ({v['n_labelled']} with site DOS), "
                     f"{v['n_atoms']} atoms, {v['n_elements']} elements")
        if len(by_source) == 1:
            lines[-1] += " (the whole dataset, as above)"
            continue
        lines.append("      atoms per cell: " + ", ".join(f"{n}: {c}" for n, c in v["size_histogram"].items()))
        els = [f"{el} {c}" for el, c in v["element_counts"].items()]
        for k in range(0, len(els), 12):
            lines.append(("      elements: " if k == 0 else "                ") + ", ".join(els[k:k + 12]))
    if s.get("meta"):
        lines.append("  store meta:")
        for k, v in sorted(s["meta"].items()):
            text = str(v)
            lines.append(f"    {k}: {text if len(text) <= 100 else text[:97] + '...'}")
    return "\n".join(lines)


def resolve_site_index(record: CrystalRecord, site: int | str) -> int:
    """A site number from an int / digit string, or the first site of an element symbol."""
    if isinstance(site, str) and site.strip().lstrip("-").isdigit():
        site = int(site)
    if isinstance(site, (int, np.integer)):
        i = int(site)
        if not -record.num_atoms <= i < record.num_atoms:
            raise DataError(f"{record.structure_id} has {record.num_atoms} sites; site {i} does not exist")
        return i % record.num_atoms
    symbols = [element_symbol(z) for z in record.atomic_numbers]
    if site not in symbols:
        raise DataError(f"{record.structure_id} ({record.formula}) has no {site} site")
    return symbols.index(site)


def store_site_dos(store: Any, spec: str) -> tuple[np.ndarray, list[int], CrystalRecord]:
    """``ID`` (every site) or ``ID:0,2`` / ``ID:Ni`` of a :class:`~dosmatgen.data.store.DOSStore`
    -> (raw site DOS rows, site indices, the record)."""
    sid, _, sites = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if sid not in store:
        raise DataError(f"structure id {sid!r} is not in store {store.path}")
    rec = store[sid]
    if rec.dos is None:
        raise DataError(f"{sid} has no site DOS in {store.path}")
    idx = list(range(rec.num_atoms)) if not sites else [resolve_site_index(rec, s.strip()) for s in sites.split(",")]
    return rec.dos[idx], idx, rec
