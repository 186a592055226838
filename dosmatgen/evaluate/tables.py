"""Tables 1 and 2 (and a formation-energy summary) with our numbers beside the paper's.

Inputs are the metrics JSONs of :mod:`dosmatgen.evaluate.score` (one per guidance and T, found in
a folder) and, optionally, formation-energy JSONs of :mod:`dosmatgen.evaluate.formation` whose
file stem names the set (``cfg_T1000.json``, ``classifier_T200.json``, ``ground_truth.json``).

Besides the paper's rows (classifier, CFG), two baselines get rows when their metrics files are
there (:data:`BASELINES`): the unconditional model (``uncond``, one file per T, scored like the
CFG rows) and the DOS lookup (``lookup``, :mod:`dosmatgen.evaluate.lookup`: ``t0`` null, one file;
its CSV ``T`` is empty and the Markdown grid repeats it under every T). The paper has no numbers
for them. Old results without these files, or without ``element_accuracy``, give the same rows
as before with empty cells.

Outputs in ``out_dir`` (the columns are the keys of the row functions):

* ``table1_dos_mae.csv|md`` -- :func:`table1_rows`: MAEs in states/eV/site beside the paper's,
  the training-mean baseline ``mae_mean_dos_y``, ``excluded`` = ``reason:count;...``;
* ``table2_match_rates.csv|md`` -- :func:`table2_rows`: percentages beside the paper's
  (``element_accuracy`` per atom, not in the paper);
* ``formation_energies.csv|md`` (when formation files are given) -- :func:`formation_rows`:
  eV/atom; fractions of rows with a value; relaxed values below ``MIN_PLAUSIBLE_EF``, MLFF
  blow-ups on collapsed cells, are left out of the relaxed statistics and counted in ``n_implausible_ef``;
* ``provenance.json`` -- a copy of the given provenance file (left alone when it already is that
  file), or, without one, the provenance gathered from the metrics files.

``subset`` is ``all`` (the whole test split, the paper's rows) or, when the test split mixes
sources (built-in prototypes and real MP-20 crystals), the source of the rows after it
(:func:`dosmatgen.data.split.record_source`); the Markdown shows them in a table of their own.

Missing values are empty in CSV and "—" in Markdown. Numbers are printed as measured; the paper's
are from :mod:`dosmatgen.evaluate.paper`.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
from pathlib import Path
from typing import Any, Sequence

from dosmatgen.errors import DataError
from dosmatgen.evaluate import paper as P
from dosmatgen.evaluate.score import FORMAT as METRICS_FORMAT
from dosmatgen.io import atomic_save_json, atomic_write

#: (guidance, T); T is None for a row that does not depend on it (the DOS lookup).
Key = tuple[str, int | None]
#: Rows that are not in the paper, in table order: the unconditional model, the DOS lookup.
BASELINES: tuple[str, ...] = ("uncond", "lookup")
ROW_LABELS: dict[str, str] = {**P.GUIDANCE_LABELS, "uncond": "Unconditional (ω = −1)", "lookup": "DOS lookup (1-NN)"}


def collect_metrics(metrics_dir: str | Path) -> dict[Key, dict[str, Any]]:
    """Every metrics JSON in ``metrics_dir`` keyed by (guidance, T); other JSON files are ignored."""
    metrics_dir = Path(metrics_dir)
    if not metrics_dir.is_dir():
        raise DataError(f"metrics folder {metrics_dir} does not exist")
    out: dict[Key, dict[str, Any]] = {}
    for path in sorted(metrics_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("format") != METRICS_FORMAT:
            continue
        t0 = data.get("t0")
        key = (str(data.get("guidance")), None if t0 is None else int(t0))
        if key in out:
            raise DataError(f"two metrics files for guidance {key[0]} at T = {key[1]} in {metrics_dir}")
        data["_path"] = str(path)
        out[key] = data
    if not out:
        raise DataError(f"no dosmatgen metrics files (format '{METRICS_FORMAT}') in {metrics_dir}")
    return out


def _keys(metrics: dict[Key, Any]) -> list[Key]:
    """The paper's six (guidance, T) first, in its order, then any others we have: other T of the
    paper's guidances, then the baselines, then anything else; by T within a guidance."""
    paper_keys: list[Key] = [(g, t) for g in P.GUIDANCES for t in P.T_VALUES]
    rank = {g: i for i, g in enumerate((*P.GUIDANCES, *BASELINES))}
    extra = sorted((k for k in metrics if k not in paper_keys),
                   key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1] is None, k[1] or 0))
    return paper_keys + extra


def set_name(key: Key) -> str:
    """``cfg_T1000`` for a (guidance, T) key, ``lookup`` when T does not apply.

    >>> set_name(("cfg", 1000)), set_name(("lookup", None))
    ('cfg_T1000', 'lookup')
    """
    return key[0] if key[1] is None else f"{key[0]}_T{key[1]}"


def _metric(m: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    return None if m is None else m.get("metrics", {}).get(name)


def _value(m: dict[str, Any] | None, name: str) -> float | None:
    return (_metric(m, name) or {}).get("value")


def _reasons(r: dict[str, Any] | None) -> str:
    return ";".join(f"{k}:{v}" for k, v in sorted((r or {}).get("excluded", {}).items()))


def _parts(m: dict[str, Any] | None) -> list[tuple[str, dict[str, Any] | None]]:
    """``("all", m)`` and, when the test split mixes sources, ``(source, its part)`` for each
    (``by_source`` of :mod:`dosmatgen.evaluate.score`)."""
    return [("all", m)] + sorted(((src, part) for src, part in ((m or {}).get("by_source") or {}).items()))


def table1_rows(metrics: dict[Key, dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 1 rows; sets without a T (the DOS lookup: no generated crystal, no MAE) are left out.
    A set whose test split mixes sources gets a row per source after its ``all`` row (no paper
    numbers: the paper's are for its whole test split)."""
    rows = []
    for key in _keys(metrics):
        if key[1] is None:
            continue
        for subset, m in _parts(metrics.get(key)):
            whole = subset == "all"
            p = P.TABLE1.get(key, {}) if whole else {}
            r = _metric(m, "mae_gen_y")
            rows.append({
                "guidance": key[0], "T": key[1], "subset": subset,
                "mae_gen_y": _value(m, "mae_gen_y"), "paper_mae_gen_y": p.get("mae_gen_y"),
                "mae_gen_yhat": _value(m, "mae_gen_yhat"), "paper_mae_gen_yhat": p.get("mae_gen_yhat"),
                "mae_yhat_y": _value(m, "mae_yhat_y"),
                "paper_mae_yhat_y": P.SURROGATE_MAE if whole and key in P.TABLE1 else None,
                "mae_mean_dos_y": _value(m, "mae_mean_dos_y"), "n_structures": (m or {}).get("n_structures"),
                "n_used": (r or {}).get("n_used"), "n_excluded": (r or {}).get("n_excluded"), "excluded": _reasons(r),
                "paper_n_excluded": P.TABLE1_EXCLUDED.get(key, 0) if whole and key in P.TABLE1 else None,
            })
    return rows


def table2_rows(metrics: dict[Key, dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 2 rows, with a row per source after a mixed set's ``all`` row (as Table 1)."""
    rows = []
    for key in _keys(metrics):
        for subset, m in _parts(metrics.get(key)):
            whole = subset == "all"
            p = P.TABLE2.get(key, {}) if whole else {}
            r = _metric(m, "structure_match_rate")
            rows.append({
                "guidance": key[0], "T": key[1], "subset": subset,
                "structure_match_rate": _value(m, "structure_match_rate"),
                "paper_structure_match_rate": p.get("structure_match_rate"),
                "structure_match_rate_relaxed": _value(m, "structure_match_rate_relaxed"),
                "composition_match_rate": _value(m, "composition_match_rate"),
                "paper_composition_match_rate": p.get("composition_match_rate"),
                "element_accuracy": _value(m, "element_accuracy"),
                "validity": _value(m, "validity"), "uniqueness": _value(m, "uniqueness"),
                "novelty": _value(m, "novelty"), "n_structures": (m or {}).get("n_structures"),
                "n_match_excluded": (r or {}).get("n_excluded"), "match_excluded": _reasons(r),
                "paper_n_match_excluded": P.TABLE2_EXCLUDED.get(key, 0) if whole and key in P.TABLE2 else None,
            })
    return rows


_SET_RE = re.compile(r"^(cfg|classifier)_T(\d+)$")
#: Columns of :func:`formation_rows` computed for the unrelaxed and the relaxed E_f alike.
_FORMATION_STATS = (("median_ef", statistics.median), ("mean_ef", statistics.fmean),
                    ("frac_below_0", lambda v: sum(x < 0 for x in v) / len(v)))


def formation_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Summary row per formation-energy file (see the module docstring)."""
    from dosmatgen.evaluate.formation import MIN_PLAUSIBLE_EF, load_formation

    rows = []
    for path in paths:
        data = load_formation(path)
        stem = Path(path).stem
        match = _SET_RE.match(stem)
        unrelaxed = [r["ef_unrelaxed"] for r in data["rows"] if r.get("ef_unrelaxed") is not None]
        relaxed_all = [r["ef_relaxed"] for r in data["rows"] if r.get("ef_relaxed") is not None]
        relaxed = [v for v in relaxed_all if v >= MIN_PLAUSIBLE_EF]  # below: MLFF blow-ups, counted apart
        rows.append({
            "set": stem, "guidance": match.group(1) if match else "", "T": int(match.group(2)) if match else None,
            "mlff": data.get("mlff"), "n": data.get("n"),
            "n_ok": sum(1 for r in data["rows"] if r.get("status") == "ok"),
            **{f"{stat}_{state}": fn(v) if v else None for stat, fn in _FORMATION_STATS
               for state, v in (("unrelaxed", unrelaxed), ("relaxed", relaxed))},
            "n_implausible_ef": len(relaxed_all) - len(relaxed),
            "status": ";".join(f"{k}:{v}" for k, v in sorted(data.get("status_counts", {}).items())),
        })
    return rows


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        raise DataError(f"no rows for {path}")
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in r.items()})


def _pair(ours: Any, theirs: Any, digits: int) -> str:
    return f"{_fmt(ours, digits)} ({_fmt(theirs, digits)})"


def _provenance_lines(prov: dict[str, Any] | None) -> list[str]:
    if not prov:
        return []
    keys = ("profile", "description", "data_source", "device", "git", "dosmatgen")
    got = [f"{k}: {prov[k]}" for k in keys if k in prov and not isinstance(prov[k], (dict, list))]
    return ["", "Run: " + "; ".join(got)] if got else []


def _ours_paper_grid(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], digits: int) -> list[str]:
    """Markdown header, separator and one line per guidance mode: for every T and every
    ``(label, key)`` column, our value with the paper's (``paper_<key>``) in parentheses. A row
    without a T (the DOS lookup) fills every T column."""
    ts = sorted({r["T"] for r in rows if r["T"] is not None})
    guid = list(dict.fromkeys(r["guidance"] for r in rows))
    by = {(r["guidance"], r["T"]): r for r in rows}
    head = "| Guidance | " + " | ".join(f"T={t} {label}" for t in ts for label, _ in columns) + " |"
    lines = [head, "|" + "---|" * (1 + len(columns) * len(ts))]
    for g in guid:
        cell = {t: by.get((g, t)) or by.get((g, None)) or {} for t in ts}
        cells = [_pair(cell[t].get(key), cell[t].get(f"paper_{key}"), digits) for t in ts for _, key in columns]
        lines.append(f"| {ROW_LABELS.get(g, g)} | " + " | ".join(cells) + " |")
    return lines


def whole_split_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows over the whole test split, without the per-source ones (rows without a
    ``subset``, e.g. read from tables written before it existed, are whole-split rows)."""
    return [r for r in rows if r.get("subset", "all") in ("all", "")]


def _by_source_lines(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]]) -> list[str]:
    """A Markdown table of the per-source rows (none: no lines)."""
    part = [r for r in rows if r.get("subset", "all") != "all" and r.get("n_structures") is not None]
    if not part:
        return []
    lines = ["", "By source of the test crystal (ours; `prototypes`: built-in prototype substitutions, `mp20`: "
             "real Materials Project crystals; the paper has no such split):", "",
             "| Guidance | T | Source | n | " + " | ".join(label for label, _, _ in columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for r in part:
        lines.append(f"| {ROW_LABELS.get(r['guidance'], r['guidance'])} | {_fmt(r['T'])} | {r['subset']} | "
                     f"{r['n_structures']} | " + " | ".join(_fmt(r.get(key), d) for _, key, d in columns) + " |")
    return lines


def table1_markdown(rows: Sequence[dict[str, Any]], prov: dict[str, Any] | None = None) -> str:
    every, rows = rows, whole_split_rows(rows)
    lines = ["# Table 1: DOS MAE of regenerated test structures — ours (paper)", "",
             "MAE in states/eV/site (per-atom mean over 400 bins, mean over atoms, mean over structures); "
             "the paper's values in parentheses.", ""]
    lines += _ours_paper_grid(rows, [("MAE(ŷ_gen, y)", "mae_gen_y"), ("MAE(ŷ_gen, ŷ)", "mae_gen_yhat")], 3)
    yhat = [r["mae_yhat_y"] for r in rows if r.get("mae_yhat_y") is not None]
    base = [r["mae_mean_dos_y"] for r in rows if r.get("mae_mean_dos_y") is not None]
    lines += ["", f"Surrogate's own error MAE(ŷ, y): {_fmt(yhat[0] if yhat else None)} (paper {P.SURROGATE_MAE}).",
              f"Baseline, training-mean site DOS for every atom, MAE(ȳ_train, y): {_fmt(base[0] if base else None)} "
              "(not in the paper).", "", "Structures and exclusions (ours; paper):"]
    for r in rows:
        if r.get("n_structures") is None and not r.get("paper_n_excluded"):
            continue
        lines.append(f"- {ROW_LABELS.get(r['guidance'], r['guidance'])}, T={r['T']}: "
                     f"{_fmt(r.get('n_structures'))} generated, {_fmt(r.get('n_excluded'))} excluded"
                     f"{' (' + r['excluded'] + ')' if r.get('excluded') else ''}; "
                     f"paper {_fmt(r.get('paper_n_excluded'))} of {P.N_TEST}")
    lines += _by_source_lines(every, [("MAE(ŷ_gen, y)", "mae_gen_y", 3), ("MAE(ŷ_gen, ŷ)", "mae_gen_yhat", 3),
                                      ("surrogate MAE(ŷ, y)", "mae_yhat_y", 3)])
    return "\n".join(lines + _provenance_lines(prov)) + "\n"


def table2_markdown(rows: Sequence[dict[str, Any]], prov: dict[str, Any] | None = None) -> str:
    every, rows = rows, whole_split_rows(rows)
    lines = ["# Table 2: match rates of regenerated test structures — ours (paper)", "",
             "StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) against the conditioning test structure; "
             "timeouts excluded; the paper's values in parentheses.", ""]
    lines += _ours_paper_grid(rows, [("Struct. match %", "structure_match_rate"),
                                     ("Comp. match %", "composition_match_rate"),
                                     ("Elem. acc. %", "element_accuracy")], 2)
    present = {r["guidance"] for r in rows if r.get("n_structures") is not None}
    lines += ["", "Elem. acc.: percentage of atoms, pooled over structures, whose generated element is that of "
              "the test atom whose DOS conditioned them (atom i against atom i); not in the paper (—)."]
    if "uncond" in present:
        lines.append(f"{ROW_LABELS['uncond']}: the same diffusion model with every atom's DOS condition masked "
                     "(classifier-free guidance at ω = −1), regenerated and scored like the CFG rows; "
                     "not in the paper (—).")
    if "lookup" in present:
        lines.append(f"{ROW_LABELS['lookup']}: no model; each test atom takes the element of the training atom "
                     "whose standardised DOS is nearest in L1. It predicts no structure (struct. match —) and "
                     "does not depend on T: the same value stands under every T. Not in the paper (—).")
    lines += ["", "Validity / uniqueness / novelty (ours, %; not in the paper):", "",
              "| Guidance | T | Validity | Uniqueness | Novelty | n | match exclusions (ours; paper) |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("n_structures") is None:
            continue
        excl = f"{_fmt(r.get('n_match_excluded'))}{' (' + r['match_excluded'] + ')' if r.get('match_excluded') else ''}"
        lines.append(f"| {ROW_LABELS.get(r['guidance'], r['guidance'])} | {_fmt(r['T'])} | {_fmt(r['validity'], 1)} | "
                     f"{_fmt(r['uniqueness'], 1)} | {_fmt(r['novelty'], 1)} | {r['n_structures']} | "
                     f"{excl}; {_fmt(r.get('paper_n_match_excluded'))} |")
    lines += _by_source_lines(every, [("Struct. match %", "structure_match_rate", 2),
                                      ("Comp. match %", "composition_match_rate", 2),
                                      ("Elem. acc. %", "element_accuracy", 2), ("Validity %", "validity", 1),
                                      ("Uniqueness %", "uniqueness", 1), ("Novelty %", "novelty", 1)])
    return "\n".join(lines + _relaxed_match_lines(every) + _provenance_lines(prov)) + "\n"


def _relaxed_match_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The structure match after an MLFF relaxation, for the rows that have it (none: no lines)."""
    part = [r for r in rows if r.get("structure_match_rate_relaxed") is not None]
    if not part:
        return []
    lines = ["", "Structure match after an MLFF relaxation (ours; not in the paper, which matches unrelaxed and "
             "relaxes only for its formation energies): each generated crystal with its target's reduced formula "
             "relaxed (`evaluate.mlff`, FIRE + cell filter), then matched as above; a relaxation that blows up "
             "is a miss.", "", "| Guidance | T | Source | n | Struct. match % | after relaxation % |",
             "|---|---|---|---|---|---|"]
    for r in part:
        lines.append(f"| {ROW_LABELS.get(r['guidance'], r['guidance'])} | {_fmt(r['T'])} | {r.get('subset', 'all')} | "
                     f"{_fmt(r.get('n_structures'))} | {_fmt(r.get('structure_match_rate'), 2)} | "
                     f"{_fmt(r['structure_match_rate_relaxed'], 2)} |")
    return lines


def formation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["# Formation energies (Fig. 2, B.1 summary) — eV/atom", "",
             "The paper shows these only as histograms (Orb-v2): CFG sets overlap the ground truth, mostly "
             "below 0 eV/atom; classifier-guidance sets are shifted to higher energies.", "",
             "Relaxed E_f below -5 eV/atom (MLFF blow-ups on collapsed cells) are left out of the relaxed "
             "columns and counted as implausible.", "",
             "| Set | MLFF | n | ok | median E_f unrelaxed | median E_f relaxed | mean E_f relaxed | "
             "E_f<0 unrelaxed | E_f<0 relaxed | implausible |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['mlff']} | {r['n']} | {r['n_ok']} | {_fmt(r['median_ef_unrelaxed'])} | "
                     f"{_fmt(r['median_ef_relaxed'])} | {_fmt(r['mean_ef_relaxed'])} | "
                     f"{_fmt(r['frac_below_0_unrelaxed'], 2)} | {_fmt(r['frac_below_0_relaxed'], 2)} | "
                     f"{r.get('n_implausible_ef', 0)} |")
    return "\n".join(lines) + "\n"


def gather_provenance(metrics: dict[Key, dict[str, Any]]) -> dict[str, Any]:
    """Provenance from the metrics files alone (used when no provenance file is given)."""
    from dosmatgen.checkpoint import code_version

    sets = {}
    for key in _keys(metrics):
        m = metrics.get(key)
        if m is None:
            continue
        meta = m.get("generated", {}).get("meta", {}) or m.get("lookup", {})
        sets[set_name(key)] = {"metrics": m.get("_path"), "generated": m.get("generated", {}).get("path"),
                             "n_structures": m.get("n_structures"),
                             **{k: meta.get(k) for k in ("checkpoint", "regressor", "store", "split", "steps", "seed",
                                                         "command", "code") if k in meta},
                             "surrogate": m.get("surrogate", {}).get("path")}
    return {"source": "dosmatgen evaluate tables (no --provenance given)", "code": code_version(), "sets": sets}


def write_tables(metrics_dir: str | Path, out_dir: str | Path, *, provenance: str | Path | None = None,
                 formation: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Write every table of the module docstring; returns name -> path."""
    out_dir = Path(out_dir)
    metrics = collect_metrics(metrics_dir)
    prov = None
    written: dict[str, Path] = {}
    prov_out = out_dir / "provenance.json"
    if provenance is not None:
        provenance = Path(provenance)
        try:
            prov = json.loads(provenance.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read provenance file {provenance}: {exc}") from exc
        if not prov_out.exists() or not prov_out.samefile(provenance):
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = prov_out.with_name(".provenance.json.tmp")
            shutil.copyfile(provenance, tmp)
            tmp.replace(prov_out)
    else:
        prov = gather_provenance(metrics)
        atomic_save_json(prov_out, prov)
    written["provenance"] = prov_out
    t1, t2 = table1_rows(metrics), table2_rows(metrics)
    tables = [("table1_dos_mae", t1, table1_markdown(t1, prov)), ("table2_match_rates", t2, table2_markdown(t2, prov))]
    if formation:
        rows = formation_rows(formation)
        tables.append(("formation_energies", rows, formation_markdown(rows)))
    for name, rows, md in tables:
        write_csv(out_dir / f"{name}.csv", rows)
        with atomic_write(out_dir / f"{name}.md", "w") as f:
            f.write(md)
        written[name] = out_dir / f"{name}.csv"
    return written
