"""The Python API and ``dosmatgen sample`` on a real VASP ``vasprun.xml`` (issue 36, item 4): a DOS
run of Cs2SnI6 from sumo's test data (MIT licence; source, licence and checksum in
tests/fixtures/vasprun/README.md), 9 sites (I 0-5, Cs 6-7, Sn 8) with projected DOS. The target is
read from the file, scaled to the training data with its notice, and crystals are sampled from it
with the shipped demo model; a few reverse steps keep this a few seconds. Bad input (issue 36) is
derived from the same real file: the file minus its projected DOS, the file with its DOS cut to
E_F +- 5 eV; each gives one line, a DataError in Python and exit 2 with nothing written on the CLI."""

from __future__ import annotations

import gzip
import json
import lzma
import re
from pathlib import Path

import numpy as np
import pytest

from dosmatgen import api
from dosmatgen.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
VASPRUN = ROOT / "tests" / "fixtures" / "vasprun" / "Cs2SnI6_vasprun.xml.xz"
DIFFUSION = str(ROOT / "results" / "demo_run" / "diffusion.pt")
SITES = [8, 6, 0]  # Sn, Cs, I


@pytest.fixture(scope="module")
def demo():
    return api.load_model("demo")


@pytest.fixture(scope="module")
def target():
    with pytest.warns(UserWarning, match="scaled to the training data"):
        return api.target_from_file(VASPRUN, sites=SITES)


@pytest.fixture(scope="module")
def run():
    from pymatgen.io.vasp import Vasprun

    return Vasprun(str(VASPRUN), parse_potcar_file=False, parse_eigen=False)


def test_the_fixture_is_the_upstream_file():
    """The README's checksum: the XML is sumo's file byte for byte, only recompressed."""
    import hashlib

    digest = hashlib.sha256(lzma.decompress(VASPRUN.read_bytes())).hexdigest()
    assert digest == "3a3cd743c569911ecbbb447b531b80406af8ed25a122c0aadfc4e05e4c1c140d"
    assert digest in (VASPRUN.parent / "README.md").read_text()


def test_a_target_from_the_real_vasprun(target, run):
    from dosmatgen.api import electrons_below_fermi, training_electrons_below_fermi

    assert target.dos.shape == (3, 400) and target.sites == SITES
    assert [run.final_structure[i].specie.symbol for i in SITES] == ["Sn", "Cs", "I"]
    means = training_electrons_below_fermi()
    assert electrons_below_fermi(target.dos) == pytest.approx([means[50], means[55], means[53]], rel=1e-9)
    raw = api.target_from_dos(run.complete_dos, SITES, normalise=False)  # negative control: VASP's own scale
    assert not np.allclose(raw.dos, target.dos)
    for scaled_row, raw_row in zip(target.dos, raw.dos):
        ratio = scaled_row / np.where(raw_row > 1e-6, raw_row, np.nan)
        assert np.nanstd(ratio) < 1e-9 * np.nanmean(ratio)  # one factor per site: the shape is kept


def test_crystals_from_the_real_vasprun(demo, target):
    from pymatgen.core import Structure

    found = api.generate_crystals(demo, target, num_atoms=9, n=4, steps=10, seed=0, progress=False)
    assert len(found) == 4 and all(isinstance(c, api.Candidate) for c in found)
    valid = [c for c in found if c.valid]
    assert valid, [c.reason for c in found]
    for c in valid:
        assert isinstance(c.structure, Structure) and len(c.structure) == 9
        assert c.site_dos.shape == (9, 400) and np.all(np.isfinite(c.site_dos))
        assert c.distance == pytest.approx(float(np.abs(c.site_dos[:3] - target.dos).mean()))
    assert all(c.reason for c in found if not c.valid)


def _cli(argv):
    from dosmatgen.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_cli_sample_from_the_real_vasprun_gzipped(tmp_path, capsys):
    """``--target-vasprun FILE:SITES`` on the same run as VASP users keep it (vasprun.xml.gz)."""
    copy = tmp_path / "vasprun.xml.gz"
    copy.write_bytes(gzip.compress(lzma.decompress(VASPRUN.read_bytes()), compresslevel=1))
    out = tmp_path / "gen"
    code = _cli(["sample", "--checkpoint", DIFFUSION, "--target-vasprun", f"{copy}:8,6", "--num-atoms", "3",
                 "--n", "2", "--steps", "5", "--seed", "0", "--device", "cpu", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, err
    notes = [line for line in err if "note:" in line]
    assert len(notes) == 1 and "scaled to the training data" in notes[0] and str(copy) in notes[0], err
    settings = json.loads((out / "sample.json").read_text())
    assert settings["target_sites"] == [8, 6] and settings["condition_atoms"] == [0, 1]
    assert settings["target_vasprun"] == f"{copy}:8,6"
    rows = (out / "summary.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # a header and one row per crystal


def test_cli_vasprun_site_out_of_range(tmp_path, capsys):
    code = _cli(["sample", "--checkpoint", DIFFUSION, "--target-vasprun", f"{VASPRUN}:9", "--num-atoms", "2",
                 "--n", "1", "--steps", "2", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "gen")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "site 9 does not exist (the structure has 9 sites" in err[0], err
    assert not (tmp_path / "gen").exists()


def test_api_vasprun_site_out_of_range():
    with pytest.raises(DataError, match=r"vasprun.xml.xz: site 99 does not exist \(the structure has 9 sites, 0..8\)$"):
        api.target_from_file(VASPRUN, sites=[99])


def without_projections(xml: str) -> str:
    """The run as VASP writes it without LORBIT: its ``<partial>`` block (inside ``<dos>``) removed."""
    assert xml.count("<partial>") == 1
    return re.sub(r"[ \t]*<partial>.*?</partial>\n", "", xml, flags=re.S)


def cut_to_5ev(xml: str) -> str:
    """The run with every DOS row (total and projected alike) outside E_F +- 5 eV removed."""
    head, dos, tail = re.split(r"(?=<dos>)|(?<=</dos>)", xml, maxsplit=2)
    efermi = float(re.search(r'name="efermi">\s*(\S+)', dos).group(1))
    keep = lambda m: m.group(0) if abs(float(m.group(1)) - efermi) <= 5 else ""
    cut = re.sub(r"[ \t]*<r>\s*(\S+)[^<]*</r>\n", keep, dos)
    assert 0 < cut.count("<r>") < dos.count("<r>") / 3  # 10 eV of the 39 eV window left, in every block
    return head + cut + tail


@pytest.mark.parametrize("edit, words", [
    (without_projections, "vasprun.xml has no projected DOS (run VASP with LORBIT >= 10)"),
    (cut_to_5ev, "vasprun.xml: its energies cover [-5.00, 5.00] eV around E_F; the model's grid needs [-10, 10] eV"),
])
def test_a_vasprun_that_cannot_be_a_target(tmp_path, capsys, edit, words):
    """The real file made unusable one way: a clear one-line DataError in Python; on the command
    line exit 2, that line alone on stderr, no output folder."""
    path = tmp_path / "vasprun.xml"
    path.write_text(edit(lzma.decompress(VASPRUN.read_bytes()).decode()))
    with pytest.raises(DataError) as info:
        api.target_from_file(path, sites=[8])
    assert str(info.value).startswith(str(path)) and str(info.value).endswith(words), str(info.value)
    assert "\n" not in str(info.value)
    out = tmp_path / "gen"
    code = _cli(["sample", "--checkpoint", DIFFUSION, "--target-vasprun", f"{path}:8", "--num-atoms", "2",
                 "--n", "1", "--steps", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].endswith(words), err
    assert not out.exists()
