"""The experiment scripts' figures redraw from a result JSON alone (issue 36 item 6): the MP-20 parity
figures (``experiments/mp20_parity``), the MP-vs-GPAW site DOS (``experiments/mp_vs_gpaw``) and the
scale test (``experiments/scale_test``) each write a PNG + PDF in the package's figure style from a
tiny JSON, computing nothing; a JSON without the rows (or curves) they need gives a clear error and
no figure."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dosmatgen.plots.style import read_png_caption

ROOT = Path(__file__).resolve().parents[1]


def _load(rel: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- MP-20 parity ---------------------------------------------------------------------------------
def _parity_json(P) -> dict:
    rows = []
    for i, (mp_gap, gap, mp_ef, ef, corr) in enumerate([(0.0, 0.01, -0.2, -0.25, 0.0), (1.5, 1.2, -2.7, -2.0, -0.687),
                                                        (3.0, 0.0, -1.0, -0.8, -0.2), (0.0, 2.5, -0.5, -0.45, 0.0)]):
        rows.append({"id": f"mp20-mp-{i}", "formula": f"X{i}O", "mp_band_gap": mp_gap, "gap_gpaw": gap,
                     "mp_formation_energy_per_atom": mp_ef, "ef_mlff_relaxed": ef, "mp2020_correction": corr})
    rows.append({"id": "mp20-mp-9", "formula": "Y", "mp_band_gap": 1.0, "gap_gpaw": None,  # gap = inf: excluded
                 "mp_formation_energy_per_atom": -0.1, "ef_mlff_relaxed": -0.1, "mp2020_correction": 0.0})
    g = P.gap_parity({r["id"]: (float("inf") if r["gap_gpaw"] is None else r["gap_gpaw"]) for r in rows},
                     {r["id"]: r["mp_band_gap"] for r in rows})
    e = P.ef_parity({r["id"]: r["ef_mlff_relaxed"] for r in rows},
                    {r["id"]: r["mp_formation_energy_per_atom"] for r in rows},
                    {r["id"]: r["mp2020_correction"] for r in rows})
    return {"rows": rows, "gap": g, "formation": e}


def test_mp20_parity_redraws_both_figures_from_the_json(tmp_path):
    P = _load("experiments/mp20_parity/mp20_parity.py", "mp20_parity_figures")
    src = tmp_path / "parity.json"
    src.write_text(json.dumps(_parity_json(P)))
    paths = P.redraw(src, tmp_path / "fig" / "gap.png", tmp_path / "fig" / "ef.png")
    assert sorted(p.name for p in paths) == ["ef.pdf", "ef.png", "gap.pdf", "gap.png"]
    assert _is_png(tmp_path / "fig" / "gap.png") and _is_png(tmp_path / "fig" / "ef.png")
    assert "band gaps" in read_png_caption(tmp_path / "fig" / "gap.png")[0]
    assert "formation energies" in read_png_caption(tmp_path / "fig" / "ef.png")[0]
    # without formation energies only the gap figure is drawn
    d = _parity_json(P)
    d["formation"] = None
    src.write_text(json.dumps(d))
    assert [p.name for p in P.redraw(src, tmp_path / "g2.png", tmp_path / "e2.png")] == ["g2.png", "g2.pdf"]


def test_mp20_parity_redraw_refuses_a_json_missing_rows(tmp_path, capsys):
    P = _load("experiments/mp20_parity/mp20_parity.py", "mp20_parity_figures")
    d = _parity_json(P)
    src = tmp_path / "parity.json"
    d["rows"] = d["rows"][:2]  # the summaries name crystals whose rows are gone
    src.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="have no row in 'rows'"):
        P.redraw(src, tmp_path / "gap.png", tmp_path / "ef.png")
    src.write_text(json.dumps({"gap": d["gap"]}))
    assert P.main(["--redraw-from", str(src), "--fig-gap", str(tmp_path / "gap.png"),
                   "--fig-ef", str(tmp_path / "ef.png")]) == 2
    assert "no per-crystal 'rows'" in capsys.readouterr().err
    # rows and summary from different runs: the numbers drawn would not be the recorded ones
    d = _parity_json(P)
    d["gap"]["mae"] += 0.1
    src.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="not from one run"):
        P.redraw(src, tmp_path / "gap.png", tmp_path / "ef.png")
    assert not list(tmp_path.glob("*.png"))


# ---- MP vs GPAW -----------------------------------------------------------------------------------
def _dos_doc() -> dict:
    grid = np.linspace(-10, 10, 400)
    curve = np.exp(-grid ** 2 / 8)
    case = {"label": "Si", "mp_id": "mp-149", "dos_task_id": "mp-1",
            "curves_site0": {"mp_recipe": (0.4 * curve).tolist(), "gpaw": curve.tolist(),
                             "mp_total_dos_per_site": (0.9 * curve).tolist()},
            "site0": {"integral_below_EF_mp": 1.5, "integral_below_EF_gpaw": 3.7, "l1_mean_abs_diff": 0.25,
                      "cosine_similarity": 0.9},
            "mp": {"diagnostics": {"smoothing_sigma_eV": 0.48, "efermi_minus_vbm_eV": 0.004},
                   "total_dos_per_site_integral_below_EF": 3.6},
            "gpaw": {"spin_polarised": False, "reference": "VBM"},
            "gpaw_rebroadened_to_mp_sigma_site0": {"cosine_similarity": 0.95, "integral_below_EF": 3.6,
                                                   "l1_mean_abs_diff": 0.2}}
    return {"energy_grid": {"points": 400, "min_eV": -10.0, "max_eV": 10.0},
            "protocols": {"gpaw_engine": {"sigma": 0.15}}, "cases": [case]}


def test_mp_vs_gpaw_redraws_from_the_json_without_gpaw(tmp_path, capsys):
    M = _load("experiments/mp_vs_gpaw/mp_vs_gpaw_figure.py", "mp_vs_gpaw_figures")
    src = tmp_path / "dos.json"
    src.write_text(json.dumps(_dos_doc()))
    out = tmp_path / "fig" / "dos.png"
    assert M.main(["--redraw-from", str(src), "--out-figure", str(out), "--gpaw-python", "/nonexistent"]) == 0
    assert _is_png(out) and out.with_suffix(".pdf").exists()
    # with the re-broadened curve stored (JSONs written since) it is drawn as well
    doc = _dos_doc()
    doc["cases"][0]["curves_site0"]["gpaw_rebroadened_to_mp_sigma"] = doc["cases"][0]["curves_site0"]["mp_recipe"]
    assert [p.name for p in M.draw(doc, tmp_path / "b.png")] == ["b.png", "b.pdf"]
    # negative control: a case without its curves
    doc = _dos_doc()
    del doc["cases"][0]["curves_site0"]
    src.write_text(json.dumps(doc))
    assert M.main(["--redraw-from", str(src), "--out-figure", str(tmp_path / "bad.png")]) == 2
    assert "case Si: the result JSON lacks 'curves_site0'" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


# ---- scale test -----------------------------------------------------------------------------------
def test_scale_test_redraws_the_figure_only(tmp_path, capsys):
    S = _load("experiments/scale_test/scale_test.py", "scale_test_figures")
    rows = [{"size": n, "stage": st, "wall_s": w * n / 1000, "cpu_s": 1.0, "peak_rss_mb": 300.0 + n / 10}
            for n in (1000, 2000) for st, w in (("store", 1.0), ("split", 0.5))]
    src = tmp_path / "scale.json"
    src.write_text(json.dumps({"rows": rows, "command": "scale_test.py --sizes 1000 2000"}))
    before = src.read_text()
    out = tmp_path / "fig" / "scale.png"
    assert S.main(["--redraw-from", str(src), "--out-fig", str(out)]) == 0
    assert _is_png(out) and out.with_suffix(".pdf").exists() and src.read_text() == before
    assert "--sizes 1000 2000" in read_png_caption(out)[1]
    src.write_text(json.dumps({"rows": [{"size": 1000, "stage": "store", "error": "killed"}]}))
    assert S.main(["--redraw-from", str(src), "--out-fig", str(tmp_path / "bad.png")]) == 2
    assert "no successful rows" in capsys.readouterr().err and not (tmp_path / "bad.png").exists()
