"""Formation energies: references, E_f arithmetic, resumable driver, SevenNet on tiny cells."""

import importlib.util
import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

from dosmatgen.errors import ConfigError
from dosmatgen.evaluate import formation as F


def fcc_au(a=4.08):
    lat = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return F.FormationItem("au", "src-au", np.array([79]), np.zeros((1, 3)), lat)


def au3ni(a=3.95):
    x = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    return F.FormationItem("au3ni", "src-au3ni", np.array([28, 79, 79, 79]), x, np.eye(3) * a)


def test_formation_energy_arithmetic():
    refs = {"Au": {"energy_per_atom": -3.0, "source": "mlff:dcdft"},
            "Ni": {"energy_per_atom": -5.0, "source": "mlff:dcdft"}}
    # E = 3*(-3) + (-5) - 4*0.1  ->  E_f = -0.1 eV/atom
    assert F.formation_energy_per_atom(["Ni", "Au", "Au", "Au"], -14.4, refs) == pytest.approx(-0.1)


def test_references_cached_and_fallback(tmp_path):
    cache = tmp_path / "refs.json"
    refs = F.ElementalReferences("emt", cache, steps=50)
    got = refs.get(["Au", "La"], EMT())  # La is not in dcdft (and EMT cannot do it anyway)
    assert got["Au"]["source"] == "mlff:dcdft"
    assert got["La"]["source"].startswith("mp-gga:mp-")
    assert -6 < got["La"]["energy_per_atom"] < -3
    # cached: a second object needs no calculator
    again = F.ElementalReferences("emt", cache, steps=50).get(["Au", "La"])
    assert again == got
    with pytest.raises(Exception):
        F.ElementalReferences("other-mlff", cache)  # a cache of another MLFF is refused


def test_references_of_other_relaxation_settings_are_never_reused(tmp_path):
    """Issue 34: an unconverged --steps 0 set is kept apart; a --steps 100 run computes its own,
    and the same setting is reused without a calculator (negative control)."""
    cache = tmp_path / "refs.json"
    zero = F.ElementalReferences("emt", cache, steps=0).get(["Au"], EMT())["Au"]
    hundred = F.ElementalReferences("emt", cache, steps=100).get(["Au"], EMT())["Au"]
    assert zero["converged"] is False and hundred["converged"] is True
    assert hundred["energy_per_atom"] < zero["energy_per_atom"] - 1e-4  # relaxed: lower energy
    with pytest.raises(ConfigError, match="not cached"):
        F.ElementalReferences("emt", cache, fmax=0.01, steps=100).get(["Au"])  # another fmax: not reused
    assert F.ElementalReferences("emt", cache, steps=0).get(["Au"]) == {"Au": zero}
    assert F.ElementalReferences("emt", cache, steps=100).get(["Au"]) == {"Au": hundred}


def test_nan_reference_falls_back_to_mp(tmp_path):
    class NaNCalc(EMT):
        def calculate(self, *a, **k):
            super().calculate(*a, **k)
            self.results["energy"] = float("nan")

    got = F.ElementalReferences("nan", tmp_path / "r.json", steps=2).get(["Cu"], NaNCalc())
    assert got["Cu"]["source"].startswith("mp-gga:")


def test_driver_emt_known_answers_and_resume(tmp_path, monkeypatch):
    bad = F.FormationItem("bad", "src-bad", np.array([79, 79]), np.array([[0, 0, 0], [0.01, 0, 0]]), np.eye(3) * 4)
    nan = F.FormationItem("nan", "src-nan", np.array([79]), np.full((1, 3), np.nan), np.eye(3) * 4)
    items = [fcc_au(), au3ni(), bad, nan]
    out = tmp_path / "f.json"
    res = F.compute_formation_energies(items, out, mlff="emt", calc=EMT(), refs_cache=tmp_path / "r.json",
                                       chunk_size=2, steps=100, progress=False)
    rows = {r["id"]: r for r in res["rows"]}
    # elemental Au in its own (relaxed) reference structure: E_f = 0 after relaxation
    assert rows["au"]["ef_relaxed"] == pytest.approx(0.0, abs=2e-3)
    assert rows["au3ni"]["status"] == "ok"
    assert rows["au3ni"]["ef_relaxed"] <= rows["au3ni"]["ef_unrelaxed"] + 1e-6
    assert rows["bad"]["status"] == "skipped_invalid:overlapping_atoms"
    assert rows["nan"]["status"] == "skipped_invalid:non_finite"
    assert res["status_counts"] == {"ok": 2, "skipped_invalid:overlapping_atoms": 1, "skipped_invalid:non_finite": 1}
    assert json.loads(out.read_text())["rows"] == res["rows"]
    assert out.with_suffix(".csv").read_text().count("\n") == 5
    # rerun: finished chunks are not recomputed
    monkeypatch.setattr(F, "evaluate_item", lambda *a, **k: pytest.fail("recomputed a finished chunk"))
    again = F.compute_formation_energies(items, out, mlff="emt", calc=EMT(), refs_cache=tmp_path / "r.json",
                                         chunk_size=2, steps=100, progress=False)
    assert again["rows"] == res["rows"]


def test_unknown_mlff_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown MLFF"):
        F.compute_formation_energies([fcc_au()], tmp_path / "x.json", mlff="nope", refs_cache=tmp_path / "r.json",
                                     progress=False)


@pytest.mark.skipif(importlib.util.find_spec("orb_models") is not None, reason="orb-models is installed")
def test_orb_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="orb-models"):
        F.compute_formation_energies([fcc_au()], tmp_path / "x.json", mlff="orb", refs_cache=tmp_path / "r.json",
                                     progress=False)


@pytest.mark.skipif(importlib.util.find_spec("sevenn") is None, reason="sevenn not installed")
def test_sevenn_tiny_cells(tmp_path):
    res = F.compute_formation_energies([fcc_au(4.17), au3ni()], tmp_path / "s.json", mlff="sevenn",
                                       refs_cache=tmp_path / "r.json", progress=False)
    rows = {r["id"]: r for r in res["rows"]}
    assert set(res["references"]) == {"Au", "Ni"}
    assert all(v["source"] == "mlff:dcdft" for v in res["references"].values())
    assert rows["au"]["ef_relaxed"] == pytest.approx(0.0, abs=0.01)
    # Au3Ni (L1_2) is a weakly bound / unstable alloy: E_f near zero, finite
    assert abs(rows["au3ni"]["ef_relaxed"]) < 0.5
    assert rows["au3ni"]["converged"] is True


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sevenn") is None, reason="sevenn not installed")
def test_sevenn_worker_pool_matches_serial(tmp_path):
    items = [fcc_au(4.17), au3ni()]
    kw = dict(mlff="sevenn", refs_cache=tmp_path / "r.json", progress=False)
    serial = F.compute_formation_energies(items, tmp_path / "a.json", workers=1, **kw)
    pooled = F.compute_formation_energies(items, tmp_path / "b.json", workers=2, chunk_size=1, **kw)
    for a, b in zip(serial["rows"], pooled["rows"]):
        assert a["ef_relaxed"] == pytest.approx(b["ef_relaxed"], abs=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("orb_models") is None, reason="orb-models not installed")
def test_orb_wiring_offline_with_random_weights(tmp_path):
    """orb-models present: a random-weight Orb-v2 file goes through get_calculator and evaluate_item."""
    import torch
    from orb_models.forcefield import pretrained

    from dosmatgen.evaluate.mlff import get_calculator

    torch.manual_seed(0)
    path = tmp_path / "orb_random.ckpt"
    torch.save(pretrained.orb_v2_architecture().state_dict(), path)
    calc = get_calculator("orb", weights=path)
    refs = {"Au": {"energy_per_atom": 0.0, "source": "mlff:dcdft"}, "Ni": {"energy_per_atom": 0.0, "source": "mlff:dcdft"}}
    row = F.evaluate_item(au3ni(), calc, refs, 0.05, 3)
    assert row["status"] == "ok" and np.isfinite(row["ef_unrelaxed"]) and np.isfinite(row["ef_relaxed"])


def test_element_without_reference_is_skipped_not_fatal():
    """A generated crystal with an element that has no elemental reference (no dcdft structure,
    no MP energy, or unknown to the MLFF) is reported, and the rest of the set goes on."""
    import numpy as np

    from dosmatgen.evaluate.formation import FormationItem, evaluate_item

    item = FormationItem("gen-0", "src-0", np.array([85, 8]), np.array([[0, 0, 0], [0.5, 0.5, 0.5]]),
                         np.eye(3) * 3.5)
    refs = {"O": {"energy_per_atom": -4.9, "source": "mlff:dcdft"}}
    row = evaluate_item(item, calc=None, refs=refs, fmax=0.05, steps=10)
    assert row["status"] == "skipped_no_reference:At"
    assert row["ef_relaxed"] is None
