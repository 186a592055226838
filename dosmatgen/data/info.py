"""What is in a dataset store: counts, elements, cell sizes, provenance (text), and two figures —
one site's DOS, and the element + atoms-per-cell histograms.

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
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_temp_path


def _symbol(z: int) -> str:
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(int(z)).symbol


def dataset_summary(records: Iterable[CrystalRecord], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts of a dataset (a list of records or a :class:`~dosmatgen.data.store.DOSStore`).

    ``element_counts``: number of *structures* containing each element (ordered by Z);
    ``element_atoms``: number of *atoms* of each element; ``size_histogram``: atoms per cell →
    number of structures; ``sources``: "source / engine" → number of structures.
    """
    from dosmatgen.data.store import DOSStore

    n_struct = n_atoms = n_labelled = 0
    struct_with: Counter[int] = Counter()
    atoms_of: Counter[int] = Counter()
    sizes: Counter[int] = Counter()
    sources: Counter[str] = Counter()
    if isinstance(records, DOSStore):  # fast path: arrays only, no DOS decompression
        meta = meta if meta is not None else records.meta
        has_dos = records.has_dos
        rows = ((records.atomic_numbers(i), bool(has_dos[i]), records.provenance(i)) for i in range(len(records)))
    else:
        rows = ((r.atomic_numbers, r.dos is not None, r.provenance) for r in records)
    for numbers, labelled, prov in rows:
        n_struct += 1
        n_atoms += len(numbers)
        n_labelled += labelled
        zs = [int(z) for z in numbers]
        atoms_of.update(zs)
        struct_with.update(set(zs))
        sizes[len(zs)] += 1
        prov = prov or {}
        key = str(prov.get("source", "unknown"))
        if prov.get("engine"):
            key += f" / {prov['engine']}"
        sources[key] += 1
    if n_struct == 0:
        raise DataError("the dataset is empty")
    return {
        "n_structures": n_struct,
        "n_atoms": n_atoms,
        "n_labelled": n_labelled,
        "n_elements": len(atoms_of),
        "element_counts": {_symbol(z): struct_with[z] for z in sorted(struct_with)},
        "element_atoms": {_symbol(z): atoms_of[z] for z in sorted(atoms_of)},
        "size_histogram": {n: sizes[n] for n in sorted(sizes)},
        "sources": dict(sources.most_common()),
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
    symbols = [_symbol(z) for z in record.atomic_numbers]
    if site not in symbols:
        raise DataError(f"{record.structure_id} ({record.formula}) has no {site} site")
    return symbols.index(site)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_path: str | Path) -> None:
    out_path = Path(out_path)
    with atomic_temp_path(out_path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=out_path.suffix.lstrip(".") or "png")


def plot_site_dos(record: CrystalRecord, site: int | str, out_path: str | Path,
                  extra: dict[str, np.ndarray] | None = None) -> int:
    """Plot one site's DOS on :data:`ENERGY_GRID` (E − E_F) to ``out_path``; ``extra`` adds labelled
    curves (e.g. a generated DOS) on the same axes. Returns the site index used."""
    if record.dos is None:
        raise DataError(f"{record.structure_id} has no site DOS to plot")
    i = resolve_site_index(record, site)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    el = _symbol(record.atomic_numbers[i])
    ax.plot(ENERGY_GRID, record.dos[i], color="k", lw=1.2, label=f"{record.formula} site {i} ({el})")
    for label, curve in (extra or {}).items():
        ax.plot(ENERGY_GRID, np.asarray(curve), lw=1.0, label=label)
    ax.axvline(0.0, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("E − E$_F$ (eV)")
    ax.set_ylabel("DOS (states/eV/site)")
    ax.set_xlim(ENERGY_GRID[0], ENERGY_GRID[-1])
    ax.set_title(record.structure_id, fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    _save(fig, out_path)
    plt.close(fig)
    return i


def plot_dataset_figure(summary: dict[str, Any], out_path: str | Path, title: str = "") -> None:
    """Two panels: structures containing each element (by Z) and atoms-per-cell histogram."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [3, 1]})
    els = list(summary["element_counts"])
    ax1.bar(range(len(els)), [summary["element_counts"][e] for e in els], color="tab:blue")
    ax1.set_xticks(range(len(els)))
    ax1.set_xticklabels(els, rotation=90, fontsize=7 if len(els) < 60 else 5)
    ax1.set_ylabel("structures containing element")
    ax1.set_xlim(-0.7, len(els) - 0.3)
    sizes = summary["size_histogram"]
    ax2.bar(list(sizes), list(sizes.values()), color="tab:orange")
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("atoms per cell")
    ax2.set_ylabel("structures")
    fig.suptitle(title or f"{summary['n_structures']} structures, {summary['n_elements']} elements", fontsize=10)
    fig.tight_layout()
    _save(fig, out_path)
    plt.close(fig)
