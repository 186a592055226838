"""Tables 1-2 side by side with the paper, provenance, and the claims checks."""

import csv
import json

import pytest

from dosmatgen.errors import DataError
from dosmatgen.evaluate import claims as C
from dosmatgen.evaluate import paper as P
from dosmatgen.evaluate import tables as TB
from dosmatgen.evaluate.metrics import MetricResult
from dosmatgen.evaluate.score import write_metrics


def fake_metrics(g, t, mae_y, mae_yhat, sm, cm, n=10, excluded=None, timeouts=0):
    excl = excluded or {}
    n_ex = sum(excl.values())
    mk = lambda name, v, unit, ex=None: MetricResult(name, v, unit, n, n - sum((ex or {}).values()), ex or {}, {}).to_dict()
    return {"format": "dosmatgen-metrics", "version": 1, "guidance": g, "t0": t, "start": "prior", "n_structures": n,
            "metrics": {"mae_gen_y": mk("dos_mae", mae_y, "states/eV/site", excl),
                        "mae_gen_yhat": mk("dos_mae", mae_yhat, "states/eV/site", excl),
                        "mae_yhat_y": mk("dos_mae", 0.05, "states/eV/site"),
                        "structure_match_rate": mk("structure_match_rate", sm, "%", {"timeout": timeouts} if timeouts else {}),
                        "composition_match_rate": mk("composition_match_rate", cm, "%"),
                        "validity": mk("validity", 90.0, "%"), "uniqueness": mk("uniqueness", 100.0, "%")},
            "generated": {"path": f"{g}_T{t}.npz", "meta": {"checkpoint": "d.pt", "seed": 0}},
            "surrogate": {"path": "s.pt"}}


def write_set(d, rows):
    d.mkdir(parents=True, exist_ok=True)
    for r in rows:
        write_metrics(d / f"{r['guidance']}_T{r['t0']}.json", r)


GOOD = [fake_metrics("cfg", 200, .06, .03, 80., 90.), fake_metrics("cfg", 500, .07, .04, 40., 70.),
        fake_metrics("cfg", 1000, .08, .06, 10., 50.),
        fake_metrics("classifier", 200, .07, .05, 60., 70.), fake_metrics("classifier", 500, .15, .14, 5., 6.),
        fake_metrics("classifier", 1000, .25, .24, 0., 2., excluded={"too_many_images": 2}, timeouts=1)]


def test_tables_side_by_side(tmp_path):
    write_set(tmp_path / "m", GOOD)
    (tmp_path / "m" / "notes.json").write_text("{}")  # foreign JSON is ignored
    prov = tmp_path / "prov_in.json"
    prov.write_text(json.dumps({"profile": "ci", "git": "abc"}))
    written = TB.write_tables(tmp_path / "m", tmp_path / "res", provenance=prov)
    rows = list(csv.DictReader(open(written["table1_dos_mae"])))
    assert [(r["guidance"], r["T"]) for r in rows] == [(g, str(t)) for g in P.GUIDANCES for t in P.T_VALUES]
    last = rows[-1]
    assert float(last["mae_gen_y"]) == pytest.approx(0.08) and float(last["paper_mae_gen_y"]) == pytest.approx(0.120)
    cl = rows[2]
    assert cl["excluded"] == "too_many_images:2" and cl["n_excluded"] == "2" and cl["paper_n_excluded"] == "314"
    t2 = list(csv.DictReader(open(written["table2_match_rates"])))
    assert float(t2[1]["paper_structure_match_rate"]) == pytest.approx(4.23)
    assert t2[2]["match_excluded"] == "timeout:1" and t2[2]["paper_n_match_excluded"] == "372"
    md = (tmp_path / "res" / "table1_dos_mae.md").read_text()
    assert "0.080 (0.120)" in md and "Classifier-free" in md and "profile: ci" in md
    assert "0.05" in md and "(paper 0.096)" in md
    md2 = (tmp_path / "res" / "table2_match_rates.md").read_text()
    assert "10.00 (14.70)" in md2
    assert json.loads((tmp_path / "res" / "provenance.json").read_text()) == {"profile": "ci", "git": "abc"}


def test_tables_with_missing_sets_and_without_provenance(tmp_path):
    write_set(tmp_path / "m", [fake_metrics("cfg", 1000, .1, .08, 12., 55.), fake_metrics("cfg", 350, .1, .08, 12., 55.)])
    TB.write_tables(tmp_path / "m", tmp_path / "res")
    rows = list(csv.DictReader(open(tmp_path / "res" / "table1_dos_mae.csv")))
    assert len(rows) == 7 and rows[-1]["T"] == "350" and rows[-1]["paper_mae_gen_y"] == ""
    assert rows[0]["mae_gen_y"] == ""  # classifier T=200 not run
    assert "—" in (tmp_path / "res" / "table1_dos_mae.md").read_text()
    prov = json.loads((tmp_path / "res" / "provenance.json").read_text())
    assert prov["sets"]["cfg_T1000"]["checkpoint"] == "d.pt"


def test_tables_get_a_row_per_source_and_claims_read_the_whole_split(tmp_path):
    m = fake_metrics("cfg", 1000, .08, .06, 10., 50., n=10)
    real = fake_metrics("cfg", 1000, .20, .15, 0., 25., n=4)
    proto = fake_metrics("cfg", 1000, .02, .01, 17., 67., n=6)
    m["by_source"] = {"mp20": {"n_structures": 4, "metrics": real["metrics"]},
                      "prototypes": {"n_structures": 6, "metrics": proto["metrics"]}}
    write_set(tmp_path / "m", [m])
    TB.write_tables(tmp_path / "m", tmp_path / "res")
    rows = [r for r in csv.DictReader(open(tmp_path / "res" / "table1_dos_mae.csv")) if r["T"] == "1000"
            and r["guidance"] == "cfg"]
    assert [(r["subset"], r["n_structures"]) for r in rows] == [("all", "10"), ("mp20", "4"), ("prototypes", "6")]
    assert float(rows[1]["mae_gen_y"]) == pytest.approx(0.20) and rows[1]["paper_mae_gen_y"] == ""
    assert float(rows[0]["paper_mae_gen_y"]) == pytest.approx(0.120)  # the paper's numbers stay on the whole split
    t2 = [r for r in csv.DictReader(open(tmp_path / "res" / "table2_match_rates.csv")) if r["subset"] == "mp20"]
    assert len(t2) == 1 and float(t2[0]["composition_match_rate"]) == pytest.approx(25.0)
    md = (tmp_path / "res" / "table1_dos_mae.md").read_text()
    assert "By source" in md and "| mp20 | 4 | 0.200 |" in md
    assert "0.080 (0.120)" in md  # the main grid is the whole split, not a source
    res, _ = C.load_results(tmp_path / "res")
    assert res[("cfg", 1000)]["mae_gen_y"] == pytest.approx(0.08)  # claims read the whole-split rows
    write_set(tmp_path / "one", [fake_metrics("cfg", 1000, .08, .06, 10., 50.)])
    TB.write_tables(tmp_path / "one", tmp_path / "res_one")
    assert "By source" not in (tmp_path / "res_one" / "table1_dos_mae.md").read_text()


def test_tables_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TB.collect_metrics(tmp_path / "nope")
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="no dosmatgen metrics"):
        TB.collect_metrics(tmp_path / "e")
    write_set(tmp_path / "d", [fake_metrics("cfg", 200, .1, .1, 1., 1.)])
    write_metrics(tmp_path / "d" / "copy.json", fake_metrics("cfg", 200, .1, .1, 1., 1.))
    with pytest.raises(DataError, match="two metrics files"):
        TB.collect_metrics(tmp_path / "d")


def test_claims_pass_on_the_papers_own_numbers():
    claims = C.evaluate_claims(C.paper_results())
    status = {c.id: c.status for c in claims}
    condition = ("cfg_reads_condition_T1000", "cfg_T1000_vs_dos_lookup")  # the paper has no such rows
    assert all(s == C.PASS for k, s in status.items()
               if not k.startswith(("formation", "cfg_T1000_mae_over")) and k not in condition)
    assert status["cfg_reads_condition_T1000"] == C.SKIP and status["cfg_T1000_vs_dos_lookup"] == C.INFO
    ratio = next(c for c in claims if c.id == "cfg_T1000_mae_over_surrogate_error")
    assert ratio.status == C.INFO and ratio.numbers["ratio"] == pytest.approx(1.25, abs=0.01)


@pytest.mark.parametrize("cfg, uncond, expected", [
    ((70.0, 38.0), (5.0, 0.0), "PASS"),
    ((70.0, 0.0), (5.0, 0.0), "FAIL"),  # elements right but no composition better than chance: not read
    ((4.0, 1.0), (5.0, 0.0), "FAIL"),
])
def test_condition_claim_compares_cfg_with_the_unconditional_model(cfg, uncond, expected):
    res = {("cfg", 1000): {"element_accuracy": cfg[0], "composition_match_rate": cfg[1]},
           ("uncond", 1000): {"element_accuracy": uncond[0], "composition_match_rate": uncond[1]},
           ("lookup", 0): {"element_accuracy": 48.0, "composition_match_rate": 17.0}}
    claims = {c.id: c for c in C._condition_claims(res)}
    assert claims["cfg_reads_condition_T1000"].status == expected
    assert claims["cfg_T1000_vs_dos_lookup"].numbers["lookup_element_accuracy"] == 48.0


def formation_file(path, values_unrelaxed, values_relaxed):
    rows = [{"id": str(i), "status": "ok", "ef_unrelaxed": u, "ef_relaxed": r}
            for i, (u, r) in enumerate(zip(values_unrelaxed, values_relaxed))]
    path.write_text(json.dumps({"format": "dosmatgen-formation", "mlff": "sevenn", "n": len(rows),
                                "status_counts": {"ok": len(rows)}, "rows": rows}))
    return path


def test_claims_on_our_results_with_failures_and_formation(tmp_path):
    bad = [dict(m) for m in GOOD]
    bad[4] = fake_metrics("classifier", 500, .30, .29, 5., 6.)  # MAE at T=500 above T=1000 -> not monotone
    write_set(tmp_path / "m", bad)
    f1 = formation_file(tmp_path / "cfg_T1000.json", [-0.5, -0.2, 0.1], [-0.6, -0.3, -0.1])
    f2 = formation_file(tmp_path / "classifier_T1000.json", [0.5, 0.2, 0.1], [0.4, 0.1, -0.1])
    TB.write_tables(tmp_path / "m", tmp_path / "res", formation=[f1, f2])
    fr = list(csv.DictReader(open(tmp_path / "res" / "formation_energies.csv")))
    assert fr[0]["set"] == "cfg_T1000" and float(fr[0]["median_ef_relaxed"]) == pytest.approx(-0.3)
    assert float(fr[0]["frac_below_0_unrelaxed"]) == pytest.approx(2 / 3)
    claims = C.write_claims(tmp_path / "res")
    status = {c.id: c.status for c in claims}
    assert status["mae_rises_with_T_classifier"] == C.FAIL
    assert status["mae_rises_with_T_cfg"] == C.PASS
    assert status["cfg_beats_classifier_mae_T1000"] == C.PASS
    assert status["cfg_beats_classifier_match_T1000"] == C.PASS
    assert status["classifier_more_graph_failures_T1000"] == C.PASS
    assert status["formation_cfg_T1000_mostly_negative"] == C.PASS
    assert status["formation_classifier_shifted_up_T1000"] == C.PASS
    ratio = next(c for c in claims if c.id == "cfg_T1000_mae_over_surrogate_error")
    assert ratio.numbers["ratio"] == pytest.approx(0.08 / 0.05)
    md = (tmp_path / "res" / "claims.md").read_text()
    assert "| FAIL |" in md and "0.3" in md
    assert len(json.loads((tmp_path / "res" / "claims.json").read_text())) == len(claims)


def test_claims_skip_when_numbers_are_missing(tmp_path):
    write_set(tmp_path / "m", [fake_metrics("cfg", 1000, .1, .08, 12., 55.)])
    TB.write_tables(tmp_path / "m", tmp_path / "res")
    status = {c.id: c.status for c in C.write_claims(tmp_path / "res")}
    assert status["cfg_beats_classifier_mae_T1000"] == C.SKIP
    assert status["formation_cfg_T1000_mostly_negative"] == C.SKIP
    with pytest.raises(DataError, match="evaluate tables"):
        C.load_results(tmp_path / "nothing")


def test_graph_failure_claim_needs_strictly_more_classifier_failures(tmp_path):
    """A tie (the same number lost by both guidance modes) does not show the paper's 314-vs-0 gap."""
    tie = [dict(m) for m in GOOD]
    tie[2] = fake_metrics("cfg", 1000, .08, .06, 10., 50., excluded={"too_many_images": 2})
    write_set(tmp_path / "m", tie)
    TB.write_tables(tmp_path / "m", tmp_path / "res")
    status = {c.id: c.status for c in C.write_claims(tmp_path / "res")}
    assert status["classifier_more_graph_failures_T1000"] == C.FAIL


def test_formation_table_counts_mlff_blowups_apart(tmp_path):
    """A relaxed E_f of -6,650 eV/atom (a collapsed cell) must not drag the mean or the fractions."""
    f = formation_file(tmp_path / "cfg_T500.json", [0.2, 0.1, 9.0e7], [-0.4, 0.2, -6650.0])
    (row,) = TB.formation_rows([f])
    assert row["n_implausible_ef"] == 1
    assert row["mean_ef_relaxed"] == pytest.approx(-0.1) and row["median_ef_relaxed"] == pytest.approx(-0.1)
    assert row["frac_below_0_relaxed"] == pytest.approx(0.5)
    assert "| 1 |" in TB.formation_markdown([row]).splitlines()[-1]


def test_table2_shows_the_relaxed_match_only_where_scored(tmp_path):
    """A set scored with ``--relaxed-match`` gets a row beside its unrelaxed structure match; the
    others none, and without any relaxed set the section is absent (negative control)."""
    relaxed = fake_metrics("cfg", 1000, .08, .06, 10., 50.)
    relaxed["metrics"]["structure_match_rate_relaxed"] = MetricResult("structure_match_rate_relaxed", 17.5, "%",
                                                                       10, 10).to_dict()
    write_set(tmp_path / "m", [relaxed, *GOOD[3:]])
    md = TB.table2_markdown(TB.table2_rows(TB.collect_metrics(tmp_path / "m")))
    assert "after relaxation %" in md
    assert f"| {TB.ROW_LABELS['cfg']} | 1000 | all | 10 | 10.00 | 17.50 |" in md.splitlines()
    assert sum("| 17.50 |" in line for line in md.splitlines()) == 1
    write_set(tmp_path / "plain", GOOD)
    assert "after relaxation" not in TB.table2_markdown(TB.table2_rows(TB.collect_metrics(tmp_path / "plain")))
