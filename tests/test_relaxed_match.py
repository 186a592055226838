"""Structure match after an MLFF relaxation (dosmatgen.evaluate.relaxed_match): which pairs are
relaxed, how failures count, and that the match comes from the relaxation (negative control: a
relaxation that changes nothing leaves a distorted cell unmatched)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.metrics import StructureMatchRate
from dosmatgen.evaluate.relaxed_match import RelaxedStructureMatchRate, mlff_relax

FCC = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]


def rocksalt(a: float = 5.64, gamma: float = 90.0, species=("Na", "Cl")) -> Structure:
    coords = FCC + [[x + .5 if i == 0 else x for i, x in enumerate(c)] for c in FCC]
    return Structure(Lattice.from_parameters(a, a, a, 90, 90, gamma), [species[0]] * 4 + [species[1]] * 4, coords)


class Recording:
    """A relaxation that records what it was given and returns ``result(structure)``."""

    def __init__(self, result):
        self.result, self.seen = result, []

    def __call__(self, structures):
        self.seen.extend(structures)
        return [self.result(s) for s in structures]


def ideal(s: Structure) -> Structure:
    """A perfect relaxation of a sheared rock-salt cell: the cubic cell back, sites kept."""
    return Structure(Lattice.cubic(s.lattice.a), s.species, s.frac_coords)


def test_distorted_cell_matches_only_after_relaxation():
    target, sheared = rocksalt(), rocksalt(gamma=65)
    assert StructureMatchRate(timeout_s=None).outcomes([sheared], [target]) == ["no_match"]
    assert RelaxedStructureMatchRate(Recording(ideal), timeout_s=None).outcomes([sheared], [target]) == ["match"]
    # negative control: a relaxation that moves nothing cannot match what the unrelaxed cell did not
    assert RelaxedStructureMatchRate(Recording(lambda s: s), timeout_s=None).outcomes([sheared], [target]) == ["no_match"]


def test_only_composition_matched_crystals_are_relaxed():
    target = rocksalt()
    wrong = rocksalt(gamma=65, species=("K", "Cl"))
    relax = Recording(ideal)
    rate = RelaxedStructureMatchRate(relax, timeout_s=None)
    assert rate.outcomes([wrong, None, rocksalt(gamma=65)], [target] * 3) == ["no_match", "unbuildable", "match"]
    assert [s.composition.reduced_formula for s in relax.seen] == ["NaCl"]


def test_failed_relaxation_is_a_counted_miss():
    target = rocksalt()
    rate = RelaxedStructureMatchRate(Recording(lambda s: None), timeout_s=None)
    outcomes = rate.outcomes([rocksalt(gamma=65), target], [target, target])
    assert outcomes == ["relax_failed", "relax_failed"]
    result = rate.from_outcomes(outcomes + ["match"])
    assert result.name == "structure_match_rate_relaxed"
    assert result.value == pytest.approx(100 / 3) and result.n_used == 3
    assert result.counts["relax_failed_counted_as_miss"] == 2 and result.counts["matched"] == 1


def test_emt_relaxation_brings_a_sheared_copper_cell_back():
    target = Structure(Lattice.cubic(3.61), ["Cu"] * 4, FCC)
    sheared = Structure(Lattice.from_parameters(3.61, 3.61, 3.61, 90, 90, 65), target.species, target.frac_coords)
    (relaxed,) = mlff_relax("emt")([sheared])
    assert relaxed.lattice.angles == pytest.approx((90, 90, 90), abs=1.0)
    assert RelaxedStructureMatchRate(mlff_relax("emt", steps=0), timeout_s=None).outcomes([sheared], [target]) == ["no_match"]


def test_unknown_force_field_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="unknown MLFF"):
        mlff_relax("not-a-force-field")


def test_score_reports_the_relaxed_match_only_when_asked(monkeypatch, tmp_path):
    """``score_generated(relax_mlff=...)`` adds the metric, its per-structure column and the setting,
    relaxing the composition-matched crystals only; without it none of them appear."""
    import csv

    import numpy as np

    from dosmatgen.data.standardise import DOSStandardiser
    from dosmatgen.evaluate import relaxed_match
    from dosmatgen.evaluate.score import score_generated
    from dosmatgen.generate.generated import concat_generated
    from dosmatgen.model.surrogate import SurrogateConfig, SurrogateDOSModel
    from test_condition_metrics import one
    from test_regenerate import toy_records

    recs = toy_records()
    nacl, srtio3 = recs[0], recs[2]
    sur = SurrogateDOSModel.from_config(SurrogateConfig.tiny().to_dict()).eval()
    std = DOSStandardiser.fit([r.dos for r in recs])

    gen = concat_generated([one(nacl), one(srtio3, types=np.full(5, 8))], {"guidance": "cfg", "t0": 1000})
    refs = {r.structure_id: r for r in recs}
    relax = Recording(lambda s: s)
    monkeypatch.setattr(relaxed_match, "mlff_relax", lambda name, device, progress: relax)
    res = score_generated(gen, refs, sur, std, progress=False, relax_mlff="emt",
                          per_structure_csv=tmp_path / "m.per_structure.csv")
    assert res["metrics"]["structure_match_rate_relaxed"]["value"] == pytest.approx(50.0)
    assert res["settings"]["relax_mlff"] == "emt" and len(relax.seen) == 1  # the O5 crystal is not relaxed
    rows = list(csv.DictReader(open(tmp_path / "m.per_structure.csv")))
    assert [r["structure_match_relaxed"] for r in rows] == ["match", "no_match"]
    plain = score_generated(gen, refs, sur, std, progress=False, per_structure_csv=tmp_path / "p.per_structure.csv")
    assert "structure_match_rate_relaxed" not in plain["metrics"] and "relax_mlff" not in plain["settings"]
    assert "structure_match_relaxed" not in next(csv.DictReader(open(tmp_path / "p.per_structure.csv")))
