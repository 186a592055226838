"""The Python API (issue 36, first part): the shipped demo model, targets from arrays, a real
Materials Project CompleteDos (bcc Fe, mp-13, tests/fixtures/mp_documents) and a store, crystals
as pymatgen structures with their surrogate DOS; bad input raises a named exception (and on the
command line exits 2 with one line, writing nothing), including real MP documents edited to be bad:
energies cut to E_F +- 5 eV, a spin-polarised DOS whose projections lost their second spin."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dosmatgen import api
from dosmatgen.errors import CheckpointError, ConfigError, DataError

FE_DOS = Path(__file__).parent / "fixtures" / "mp_documents" / "emmet_Fe_dos.json.gz"
SPIN_DOS = FE_DOS.with_name("dos-spin-polarization-mp-865805.json.gz")  # TaZnCo2, spin-polarised, 301 points
STORE = Path(__file__).resolve().parents[1] / "resources" / "builtin_dos.npz"
DIFFUSION = str(Path(__file__).resolve().parents[1] / "results" / "demo_run" / "diffusion.pt")


@pytest.fixture(scope="module")
def demo():
    return api.load_model("demo")


def test_demo_model_loads_without_training(demo):
    assert demo.surrogate is not None and demo.regressor is not None and demo.name == "demo"


def test_fe_target_from_a_real_mp_complete_dos():
    target = api.target_from_file(FE_DOS, sites=[0])
    assert target.dos.shape == (1, 400) and target.sites == [0]
    below = target.dos[0, :200].sum() * 20 / 399  # states below E_F within the window
    assert 3 < below < 12  # bcc Fe: 8 valence electrons, of which the s+p+d projection holds most


def test_generate_from_the_fe_target(demo):
    target = api.target_from_file(FE_DOS, sites=[0])
    found = api.generate_crystals(demo, target, num_atoms=2, n=3, steps=10, seed=0, progress=False)
    assert len(found) == 3
    valid = [c for c in found if c.valid]
    assert all(c.structure is not None and len(c.structure) == 2 for c in valid)
    assert all(c.site_dos.shape == (2, 400) and c.distance >= 0 for c in valid)
    again = api.generate_crystals(demo, target, num_atoms=2, n=3, steps=10, seed=0, progress=False)
    assert [c.structure for c in again] == [c.structure for c in found]  # seeded


def test_target_from_an_array_on_another_energy_grid():
    energies = np.linspace(-15, 12, 541)
    dos = np.exp(-((energies + 2.0) ** 2))
    target = api.target_from_array(dos, energies, efermi=0.0)
    assert target.dos.shape == (1, 400)
    assert abs(np.linspace(-10, 10, 400)[int(np.argmax(target.dos[0]))] + 2.0) < 0.06  # the peak stays at -2 eV


def test_target_from_the_store():
    target = api.target_from_store(STORE, "builtin-L12-Ni-Au:Ni")
    assert target.dos.shape == (1, 400) and target.sites == [0]


@pytest.mark.parametrize("make, error, words", [
    (lambda: api.load_model("banana"), ConfigError, "unknown model 'banana'"),
    (lambda: api.load_model(Path(__file__).parent), CheckpointError, "is a folder"),
    (lambda: api.target_from_array(np.full(400, np.nan)), DataError, "NaN"),
    (lambda: api.target_from_array(np.ones(100), np.linspace(-5, 5, 100)), DataError, "cover"),
    (lambda: api.target_from_file(FE_DOS, sites=[3]), DataError, "site 3 does not exist"),
    (lambda: api.target_from_file(Path("missing.json")), DataError, "does not exist"),
])
def test_bad_input_raises_a_named_exception(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_a_spin_polarised_target_sums_both_spins():
    """A spin-polarised DOS is never read as one spin: each site's target from the real TaZnCo2
    document (mp-865805, 4 sites, s/p/d projections only) equals the sum of both spins' projections,
    taken here from pymatgen's own CompleteDos and smoothed and resampled with the same public
    function. Negative control: spin up alone, or twice spin up (the spins differ), is clearly off."""
    from monty.serialization import loadfn
    from pymatgen.electronic_structure.core import Spin

    from dosmatgen.dos.mp_convert import smooth_and_regrid

    cdos = loadfn(SPIN_DOS)
    rel = np.asarray(cdos.energies) - cdos.efermi

    def summed(spins):
        return np.stack([smooth_and_regrid(rel, sum(np.asarray(by_spin[s]) for by_spin in cdos.pdos[site].values()
                                                    for s in spins)) for site in cdos.structure])

    target = api.target_from_file(SPIN_DOS, normalise=False)
    both, up = summed((Spin.up, Spin.down)), summed((Spin.up,))
    np.testing.assert_allclose(target.dos, both, rtol=1e-10, atol=1e-14)
    assert np.all(np.abs(target.dos - up).max(1) > 0.3 * both.max(1))  # measured 0.39-0.68
    assert (np.abs(target.dos - 2 * up).max(1) / both.max(1)).max() > 0.3  # measured 0.51 (Ta)


def edited_document(src: Path, dest: Path, edit) -> Path:
    """The real CompleteDos document ``src`` after ``edit(doc)``, written to ``dest`` (.json.gz)."""
    doc = json.loads(gzip.decompress(src.read_bytes()))
    edit(doc)
    dest.write_bytes(gzip.compress(json.dumps(doc).encode(), compresslevel=1))
    return dest


def cut_to_5ev(doc: dict) -> None:
    """Every array on the energy grid (energies, total, projected and summed DOS alike) cut to E_F +- 5 eV."""
    keep = np.abs(np.asarray(doc["energies"]) - doc["efermi"]) <= 5

    def cut(x):
        if isinstance(x, dict):
            return {k: cut(v) for k, v in x.items()}
        if isinstance(x, list):
            return [v for v, k in zip(x, keep) if k] if len(x) == keep.size else [cut(v) for v in x]
        return x

    doc.update(cut(doc))
    assert len(doc["energies"]) == keep.sum() == len(doc["pdos"][0]["s"]["densities"]["-1"]) < keep.size


def one_spin(doc: dict) -> None:
    """A file that claims spin polarisation (its total DOS has both spins) but whose projections
    carry spin up only: summed as they are, the target would silently lose the spin-down states."""
    assert set(doc["densities"]) == {"1", "-1"}
    for site in doc["pdos"]:
        for orbital in site.values():
            del orbital["densities"]["-1"]


@pytest.mark.parametrize("src, edit, words", [
    (FE_DOS, cut_to_5ev, r"its energies cover \[-4.97, 4.90\] eV around E_F; the model's grid needs \[-10, 10\] eV$"),
    (SPIN_DOS, one_spin, r"site 0 \(Ta\): the total DOS is spin-polarised but its \w+ projection has one spin "
                         "channel$"),
])
def test_a_real_document_made_bad(tmp_path, capsys, src, edit, words):
    """One line naming the file and the problem: a DataError in Python; on the command line exit 2,
    that line alone on stderr, no output folder."""
    path = edited_document(src, tmp_path / "dos.json.gz", edit)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {words}"):
        api.target_from_file(path)
    out = tmp_path / "gen"
    code = _cli(["sample", "--checkpoint", DIFFUSION, "--target-dos", str(path), "--num-atoms", "4", "--n", "1",
                 "--steps", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(words, err[0]), err
    assert not out.exists()


def test_the_readme_snippet_runs(capsys, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- python snippet -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 3 <= len(block.strip().splitlines()) <= 5
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("[") and "(" in printed  # at least one valid crystal with its distance


def test_the_public_names_are_the_api_and_documented():
    import dosmatgen

    for name in dosmatgen.__all__:
        obj = getattr(dosmatgen, name)
        assert obj is getattr(api, name), name  # not shadowed by a subpackage of the same name
        assert (obj.__doc__ or "").strip(), name


def undocumented_arguments(obj) -> list[str]:
    """Parameters of ``obj`` (a function, or a class's constructor) that its docstring, what
    ``help(obj)`` shows, does not name; a dataclass field whose ``help`` metadata explains it (the
    fields of ``SamplerOptions``, shown by ``dosmatgen sample --help``) counts as documented."""
    import dataclasses
    import inspect
    import re

    doc = inspect.getdoc(obj) or ""
    fields = dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ()
    helped = {f.name for f in fields if f.metadata.get("help")}
    return [name for name in inspect.signature(obj).parameters
            if name not in helped and not re.search(rf"\b{re.escape(name)}\b", doc)]


def test_help_of_every_public_name_documents_every_argument():
    import dosmatgen

    gaps = {name: undocumented_arguments(getattr(dosmatgen, name)) for name in dosmatgen.__all__}
    assert {name: missing for name, missing in gaps.items() if missing} == {}


def test_an_undocumented_argument_is_found():
    """Negative control: a made-up function and class with an argument their docstrings never name."""
    from dataclasses import dataclass, field

    def make(target, n=1, *, seed=None, **extra):
        """Make ``n`` things like ``target``; ``extra`` goes on (a ``seeded`` run: no word boundary)."""

    @dataclass
    class Thing:
        """A ``size``."""
        size: int
        colour: str = ""
        weight: float = field(default=0.0, metadata={"help": "in kg"})

    assert undocumented_arguments(make) == ["seed"]
    assert undocumented_arguments(Thing) == ["colour"]


def test_a_vasp_target_is_scaled_to_the_training_data_with_a_notice():
    from dosmatgen.api import electrons_below_fermi, training_electrons_below_fermi

    with pytest.warns(UserWarning, match="scaled to the training data"):
        scaled = api.target_from_file(FE_DOS, sites=[0])
    raw = api.target_from_file(FE_DOS, sites=[0], normalise=False)  # negative control: as MP computed it
    assert electrons_below_fermi(scaled.dos)[0] == pytest.approx(training_electrons_below_fermi()[26], rel=1e-9)
    assert electrons_below_fermi(raw.dos)[0] == pytest.approx(6.61, abs=0.05)  # results/mp_vs_gpaw_Si_Fe.json
    ratio = scaled.dos[0] / np.where(raw.dos[0] > 0, raw.dos[0], np.nan)
    assert np.nanstd(ratio) < 1e-9  # one factor: the shape is kept


def _cli(argv):
    from dosmatgen.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_cli_sample_from_a_complete_dos_json(tmp_path, capsys):
    out = tmp_path / "gen"
    code = _cli(["sample", "--checkpoint", DIFFUSION, "--target-dos", f"{FE_DOS}:0",
                 "--num-atoms", "2", "--n", "2", "--steps", "5", "--device", "cpu", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, err
    assert len(err) == 1 and "note:" in err[0] and "scaled to the training data" in err[0]
    import json

    settings = json.loads((out / "sample.json").read_text())
    assert settings["target_sites"] == [0] and settings["condition_atoms"] == [0]


@pytest.mark.parametrize("flag, value, words", [
    ("--target-vasprun", "missing/vasprun.xml", "does not exist"),
    ("--target-dos", f"{FE_DOS}:5", "site 5 does not exist"),
])
def test_cli_foreign_target_bad_input(tmp_path, capsys, flag, value, words):
    code = _cli(["sample", "--checkpoint", DIFFUSION, flag, value, "--num-atoms", "2",
                 "--n", "1", "--steps", "2", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "gen")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "gen").exists()


def test_relax_and_rank_orders_by_formation_energy(tmp_path):
    """EMT on two hand-made candidates (fcc Cu near and far from its equilibrium cell) and an
    invalid one: both valid ones relax to fcc Cu, formation energy ~0, the invalid one last."""
    from ase.calculators.emt import EMT
    from pymatgen.core import Lattice, Structure

    cu = lambda a: Structure(Lattice.cubic(a), ["Cu"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    cands = [api.Candidate(None, False, "overlapping_atoms"), api.Candidate(cu(3.9), True, distance=0.2),
             api.Candidate(cu(3.6), True, distance=0.1)]
    ranked = api.relax_and_rank(cands, calc=EMT(), refs_cache=tmp_path / "refs.json", steps=200, progress=False)
    assert ranked[-1].structure is None and ranked[-1].formation_energy is None
    assert all(abs(c.formation_energy) < 0.02 for c in ranked[:2])  # relaxed fcc Cu is its own reference
    assert abs(ranked[0].relaxed.lattice.a - ranked[1].relaxed.lattice.a) < 0.02  # both reach one lattice
