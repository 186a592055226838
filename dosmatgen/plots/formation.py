"""Formation-energy distributions of generated structures (paper Fig. 2 and Fig. B.1).

Fig. 2: structures regenerated from the test split at T = 1000 with (a) classifier-based and
(b) classifier-free guidance; per panel the distributions of E_f (eV/atom) of the ground-truth
test structures, of the generated structures as sampled (unrelaxed) and after MLFF relaxation.
Fig. B.1: the same for T ∈ {200, 500}, one row per T. All energies come from one MLFF
(:mod:`dosmatgen.evaluate.mlff`) with elemental references from the same MLFF.

Inputs are formation-energy tables written by ``dosmatgen evaluate formation`` (CSV or JSON);
:func:`load_formation` reads either and returns ``{"unrelaxed": array, "relaxed": array}``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dosmatgen.errors import DataError
from dosmatgen.plots.style import COLORS, GUIDANCE_LABELS, figure_style, new_figure, save_figure

#: ``{"unrelaxed": E_f array, "relaxed": E_f array}`` in eV/atom (NaN = relaxation failed).
FormationSet = Mapping[str, np.ndarray]


def _state_of(column: str) -> str | None:
    """Which state a column holds: names such as ``e_form_relaxed``, ``formation_energy_unrelaxed``,
    ``ef_relaxed`` (eV/atom)."""
    name = column.lower()
    if not any(tag in name for tag in ("form", "e_f", "ef_")):
        return None
    if "unrelaxed" in name or "initial" in name:
        return "unrelaxed"
    if "relaxed" in name or "final" in name:
        return "relaxed"
    return None


def _columns_to_set(columns: Mapping[str, Sequence], path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        state = _state_of(name)
        if state is not None and state not in out:
            out[state] = np.array([np.nan if v in (None, "", "nan", "NaN") else float(v) for v in values],
                                  dtype=float)
    if not out:
        raise DataError(f"{path}: no formation-energy column (looked for names with 'form'/'e_f' and "
                        f"'relaxed'/'unrelaxed'; found {sorted(columns)})")
    return out


def load_formation(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a formation-energy table (CSV with a header, or JSON) into ``{state: array}``.

    JSON may be a list of row dicts, a dict of columns, or a dict with a ``"rows"``/``"records"``
    list. States missing from the file are simply absent from the result.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"formation-energy table {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                fields = reader.fieldnames or []
    except (UnicodeDecodeError, ValueError, csv.Error) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"formation-energy table {path} cannot be read: {' '.join(str(exc).split())}") from None
    if path.suffix.lower() == ".json":
        if isinstance(data, dict):
            for key in ("rows", "records", "structures"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if isinstance(data, list):
            keys = sorted({k for row in data if isinstance(row, dict) for k in row})
            columns = {k: [row.get(k) for row in data] for k in keys}
        elif isinstance(data, dict):
            columns = {k: v for k, v in data.items() if isinstance(v, list)}
        else:
            raise DataError(f"{path}: expected a JSON list of rows or a dict of columns")
        return _columns_to_set(columns, path)
    return _columns_to_set({k: [row.get(k) for row in rows] for k in fields}, path)


def _finite(values: np.ndarray | Sequence[float] | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


#: Widest axis drawn, eV/atom: real compounds lie well inside; beyond are exploded relaxations.
PHYSICAL_RANGE = (-8.0, 8.0)


def common_bins(series: Sequence[np.ndarray], n_bins: int | None = None, clip_quantile: float = 0.005) -> np.ndarray:
    """Shared histogram edges over all series; the range drops the outer ``clip_quantile`` tails
    and never exceeds :data:`PHYSICAL_RANGE` (a few exploded structures would otherwise squash
    the distributions). ``n_bins`` defaults to ~2·sqrt(n) of the largest series, between 10 and 40."""
    finite = [_finite(s) for s in series]
    pooled = np.concatenate(finite) if finite else np.zeros(0)
    if n_bins is None:
        largest = max((f.size for f in finite), default=0)
        n_bins = int(np.clip(2 * np.sqrt(largest), 10, 40))
    if pooled.size == 0:
        return np.linspace(-4.0, 2.0, n_bins + 1)
    lo, hi = np.quantile(pooled, [clip_quantile, 1.0 - clip_quantile])
    lo, hi = max(lo, PHYSICAL_RANGE[0]), min(hi, PHYSICAL_RANGE[1])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, n_bins + 1)


def _legend_label(name: str, values: np.ndarray, n_total: int, edges: np.ndarray) -> str:
    """Two lines: the series name; n, median, values beyond the drawn range ("off-axis", not
    drawn) and failed (NaN) values."""
    stats = f"n={values.size}"
    if values.size:
        stats += f", median {np.median(values):+.3g}"
    outside = int(np.sum((values < edges[0]) | (values > edges[-1])))
    if outside:
        stats += f", {outside} off-axis"
    if n_total > values.size:
        stats += f", {n_total - values.size} failed"
    return f"{name}\n{stats}"


def formation_panel(ax, generated: FormationSet | None, ground_truth: FormationSet | None, *,
                    title: str, edges: np.ndarray | None = None, xlabel: bool = True) -> None:
    """Draw one panel: ground truth (grey; its relaxed E_f when present, else as stored) and the
    generated relaxed (green, solid) / unrelaxed (orange, dashed, on top) E_f distributions, each a
    probability density on shared bins (seaborn ``histplot``), with E_f = 0 marked. Values beyond the
    axis are not drawn but counted in the legend, as are NaN (failed relaxations)."""
    import seaborn as sns
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

    generated, truth = generated or {}, ground_truth or {}
    series = [("ground truth", truth.get("relaxed", truth.get("unrelaxed")), "0.55", "-"),
              ("generated, relaxed", generated.get("relaxed"), COLORS["relaxed"], "-"),
              ("generated, unrelaxed", generated.get("unrelaxed"), COLORS["unrelaxed"], "--")]
    series = [s for s in series if s[1] is not None]
    if edges is None:
        edges = common_bins([s[1] for s in series])
    handles, labels = [], []
    for name, values, colour, style in series:
        finite = _finite(values)
        labels.append(_legend_label(name, finite, int(np.asarray(values).size), edges))
        handles.append(Patch(facecolor=to_rgba(colour, 0.2), edgecolor=colour, linestyle=style, linewidth=1.5))
        sns.histplot(x=finite[(finite >= edges[0]) & (finite <= edges[-1])], bins=edges, stat="density",
                     element="step", color=colour, alpha=0.2, linestyle=style, linewidth=1.5, ax=ax)
    ax.axvline(0.0, color="0.4", linestyle=":", linewidth=0.8)
    ax.set_xlim(edges[0], edges[-1])
    if xlabel:
        ax.set_xlabel("formation energy (eV/atom)")
    ax.set_ylabel("density (per eV/atom)")
    ax.set_title(title, loc="left")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.26 if xlabel else -0.08))


def _panel_title(guidance: str, t0: int) -> str:
    return f"{GUIDANCE_LABELS.get(guidance, guidance).capitalize()}, T = {t0}"


def plot_formation_grid(generated: Mapping[tuple[str, int], FormationSet], ground_truth: FormationSet | None,
                        t_values: Sequence[int], out_dir: str | os.PathLike, stem: str, *,
                        guidances: Sequence[str] = ("classifier", "cfg"), title: str = "",
                        caption: str = "") -> list[Path]:
    """Rows = start steps ``t_values``, columns = guidance modes; one :func:`formation_panel` each.

    All panels share bins (so widths and densities compare across panels). Missing
    (guidance, T) combinations are drawn as empty panels saying so. Returns the PNG and PDF paths.
    """
    with figure_style():
        fig, axes = new_figure(len(t_values), len(guidances), panel_size=(3.6, 3.3), sharex=True)
        pooled = [v for s in generated.values() for v in s.values()]
        pooled += [v for v in (ground_truth or {}).values()]
        edges = common_bins(pooled)
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        for r, t0 in enumerate(t_values):
            for c, guidance in enumerate(guidances):
                ax = axes[r][c]
                key = (guidance, int(t0))
                panel_title = f"({next(letters)}) {_panel_title(guidance, t0)}"
                bottom = r == len(t_values) - 1
                if key in generated:
                    formation_panel(ax, generated[key], ground_truth, title=panel_title, edges=edges, xlabel=bottom)
                else:
                    ax.set_title(panel_title, loc="left")
                    ax.text(0.5, 0.5, "not generated in this run", transform=ax.transAxes, ha="center", color="0.4")
                    if bottom:
                        ax.set_xlabel("formation energy (eV/atom)")
        return save_figure(fig, out_dir, stem, title=title, caption=caption)


#: Display names of the MLFF spellings of ``dosmatgen evaluate formation --mlff``.
MLFF_NAMES = {"sevenn": "SevenNet (7net-0)", "7net-0": "SevenNet (7net-0)", "chgnet": "CHGNet", "orb": "Orb-v2",
              "orb-v2": "Orb-v2", "emt": "EMT (toy)"}


def mlff_display_name(name: str) -> str:
    return MLFF_NAMES.get(name.lower(), name)


def _caption(which: str, mlff: str) -> str:
    """The caption of Fig. 2 / B.1: ``which`` structures, against the ground truth, with the legend's key."""
    mlff = mlff_display_name(mlff)
    return (f"Formation energy per atom (eV/atom) of structures regenerated {which}, unrelaxed and after {mlff} "
            f"relaxation, against the {mlff}-relaxed test structures (ground truth). Legends give n, the median, "
            "values outside the drawn range (off-axis, not drawn) and failed relaxations.")


def plot_fig2(generated: Mapping[tuple[str, int], FormationSet], ground_truth: FormationSet | None,
              out_dir: str | os.PathLike, *, stem: str = "fig2_formation_T1000", mlff: str = "MLFF") -> list[Path]:
    """Paper Fig. 2: E_f distributions at T = 1000, (a) classifier-based, (b) classifier-free."""
    caption = _caption("from the test split at T = 1000 with (a) classifier-based and (b) classifier-free guidance",
                       mlff)
    return plot_formation_grid(generated, ground_truth, [1000], out_dir, stem,
                               title="Fig. 2: formation energies at T = 1000", caption=caption)


def plot_figB1(generated: Mapping[tuple[str, int], FormationSet], ground_truth: FormationSet | None,
               out_dir: str | os.PathLike, *, t_values: Sequence[int] = (200, 500),
               stem: str = "figB1_formation_T200_T500", mlff: str = "MLFF") -> list[Path]:
    """Paper Fig. B.1: the Fig. 2 panels for the partial-noise starts T ∈ {200, 500}."""
    ts = ", ".join(str(t) for t in t_values)
    caption = _caption(f"at T ∈ {{{ts}}} (rows) with classifier-based and classifier-free guidance (columns)", mlff)
    return plot_formation_grid(generated, ground_truth, list(t_values), out_dir, stem,
                               title=f"Fig. B.1: formation energies at T = {ts}", caption=caption)
