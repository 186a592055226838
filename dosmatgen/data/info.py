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

from dosmatgen.data.schema import CrystalRecord, element_symbol
from dosmatgen.data.split import SOURCES, record_source
from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_temp_path


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: The figure files ``data info`` draws, by extension.
FIGURE_SUFFIXES: tuple[str, ...] = (".png", ".pdf", ".svg")


def check_figure_path(path: str | Path, flag: str) -> None:
    """:class:`~dosmatgen.errors.ConfigError` unless ``path`` ends in one of :data:`FIGURE_SUFFIXES`
    (checked before any work, so a summary is never written and then its figure refused)."""
    from dosmatgen.errors import ConfigError

    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ConfigError(f"{flag} {path}: a figure is one of {', '.join(FIGURE_SUFFIXES)}, not "
                          f"{suffix or 'a file without extension'}")


def _save(fig: Any, out_path: str | Path) -> None:
    out_path = Path(out_path)
    with atomic_temp_path(out_path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=out_path.suffix.lstrip(".").lower())


def plot_site_dos(record: CrystalRecord, site: int | str, out_path: str | Path,
                  extra: dict[str, np.ndarray] | None = None) -> int:
    """Plot one site's DOS on :data:`ENERGY_GRID` (E − E_F) to ``out_path``; ``extra`` adds labelled
    curves (e.g. a generated DOS) on the same axes. Returns the site index used."""
    if record.dos is None:
        raise DataError(f"{record.structure_id} has no site DOS to plot")
    i = resolve_site_index(record, site)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    el = element_symbol(record.atomic_numbers[i])
    ax.plot(ENERGY_GRID, record.dos[i], color="k", lw=1.2, label=f"{record.formula} site {i} ({el})")
    for label, curve in (extra or {}).items():
        ax.plot(ENERGY_GRID, np.asarray(curve), lw=1.0, label=label)
    ax.axvline(0.0, color="grey", lw=0.6, ls="--")
    ax.set(xlabel="E − E$_F$ (eV)", ylabel="DOS (states/eV/site)", xlim=(ENERGY_GRID[0], ENERGY_GRID[-1]))
    ax.set_title(record.structure_id, fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    _save(fig, out_path)
    plt.close(fig)
    return i


def plot_dataset_figure(summary: dict[str, Any], out_path: str | Path, title: str = "") -> None:
    """Two panels: structures containing each element (by Z) and atoms-per-cell histogram; with more
    than one source (``summary["by_source"]``) the bars are stacked by source."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [3, 1]})
    els = list(summary["element_counts"])
    sizes = summary["size_histogram"]
    by_source = summary.get("by_source") or {}
    if len(by_source) > 1:
        el_bottom, size_bottom = np.zeros(len(els)), np.zeros(len(sizes))
        colours = {"prototypes": "tab:blue", "mp20": "tab:red", "mp": "tab:green", "other": "tab:grey"}
        for src, v in by_source.items():
            h = np.array([v["element_counts"].get(e, 0) for e in els], dtype=float)
            ax1.bar(range(len(els)), h, bottom=el_bottom, color=colours.get(src), label=f"{src} ({v['n_structures']})")
            el_bottom += h
            # JSON round trips turn the histogram's int keys into strings
            vs = {int(n): c for n, c in v["size_histogram"].items()}
            h = np.array([vs.get(int(n), 0) for n in sizes], dtype=float)
            ax2.bar([int(n) for n in sizes], h, bottom=size_bottom, color=colours.get(src))
            size_bottom += h
        ax1.legend(fontsize=8, frameon=False)
    else:
        ax1.bar(range(len(els)), [summary["element_counts"][e] for e in els], color="tab:blue")
        ax2.bar([int(n) for n in sizes], list(sizes.values()), color="tab:orange")
    ax1.set_xticks(range(len(els)))
    ax1.set_xticklabels(els, rotation=90, fontsize=7 if len(els) < 60 else 5)
    ax1.set(ylabel="structures containing element", xlim=(-0.7, len(els) - 0.3))
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set(xlabel="atoms per cell", ylabel="structures")
    fig.suptitle(title or f"{summary['n_structures']} structures, {summary['n_elements']} elements", fontsize=10)
    fig.tight_layout()
    _save(fig, out_path)
    plt.close(fig)
