"""The committed demo results are self-consistent: the paper's ordering claims recomputed from the
committed tables give exactly the committed verdicts (nothing edited by hand), and the tables
carry the paper's numbers beside ours."""

from pathlib import Path

import pytest

from dosmatgen.evaluate.claims import evaluate_claims, load_results

RESULTS = Path(__file__).resolve().parents[1] / "results"

pytestmark = pytest.mark.skipif(not (RESULTS / "claims.json").exists(), reason="no committed results/")


def test_claims_recomputed_from_committed_tables_match_committed_verdicts():
    import json

    res, formation = load_results(RESULTS)
    recomputed = {c.id: c.status for c in evaluate_claims(res, formation)}
    committed = {c["id"]: c["status"] for c in json.loads((RESULTS / "claims.json").read_text())}
    assert recomputed == committed
    # the checks the evaluation issue names are all evaluated on our numbers, none skipped
    for cid in ("cfg_beats_classifier_mae_T1000", "cfg_beats_classifier_match_T1000",
                "match_rates_fall_with_T_cfg", "mae_rises_with_T_cfg", "cfg_reads_condition_T1000"):
        assert committed[cid] in ("PASS", "FAIL")


def test_committed_tables_show_paper_numbers_beside_ours():
    t1 = (RESULTS / "table1_dos_mae.md").read_text()
    t2 = (RESULTS / "table2_match_rates.md").read_text()
    assert "(0.120)" in t1 and "(0.268)" in t1  # paper Table 1, CFG and classifier at T = 1000
    assert "(14.70)" in t2 and "(81.60)" in t2  # paper Table 2
    assert "nan" not in (t1 + t2).lower()
