"""The scale test's synthetic store (issue 17, part 4; ``experiments/scale_test/scale_test.py``) is what it claims:
MP-20 atom counts, no overlapping atoms (periodic images included), non-negative finite site DOS
on the store's grid, and a store that loads back with the same arrays; the checker catches each
planted fault; the stage runner and the report's slopes work on tiny inputs."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.store import DOSStore, save_records
from dosmatgen.dos.grid import N_DOS

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("scale_test_script", ROOT / "experiments" / "scale_test" / "scale_test.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


S = _load_script()


@pytest.fixture(scope="module")
def records() -> list[CrystalRecord]:
    return S.synthetic_records(50, seed=3)


def test_synthetic_crystals_have_mp20_sizes_no_overlaps_and_plausible_dos(records):
    from dosmatgen.evaluate.metrics import Validity

    assert len(records) == 50 and len({r.structure_id for r in records}) == 50
    counts = np.array([r.num_atoms for r in records])
    assert counts.min() >= 1 and counts.max() <= 20
    assert len(set(counts.tolist())) >= 8  # a spread of sizes, not one
    for r in records:
        # two independent distance checks: LLL-reduced 27 images, and pymatgen's distance matrix
        assert S.periodic_min_distance(r.frac_coords, r.lattice) >= S.MIN_SEPARATION - 1e-9
        assert r.min_distance() >= S.MIN_SEPARATION - 1e-9
        assert abs(np.linalg.det(r.lattice)) / r.num_atoms == pytest.approx(S.VOLUME_PER_ATOM)
        assert r.dos.shape == (r.num_atoms, N_DOS)
        assert np.all(np.isfinite(r.dos)) and r.dos.min() >= 0
        assert np.all(r.dos.max(axis=1) > 0.1)  # every site has bands, not an empty DOS
    assert S.check_records(records) == []
    # the pipeline's own validity metric agrees: every synthetic crystal is valid
    assert Validity().compute([(r.atomic_numbers, r.frac_coords, r.lattice) for r in records]).value == 100.0
    # some compositions repeat (polymorphs), so novelty's same-formula buckets are not empty
    formulas = [S._reduced(r.atomic_numbers) for r in records]
    assert len(set(formulas)) < len(formulas)
    # the DOS depends on the element: two sites of the same element are closer than sites of two
    # different elements (on average), so element accuracy and lookups have something to read
    z = np.concatenate([r.atomic_numbers for r in records])
    dos = np.concatenate([r.dos for r in records]).astype(np.float64)
    rng = np.random.default_rng(0)
    i, j = rng.integers(len(z), size=(2, 4000))
    d = np.abs(dos[i] - dos[j]).mean(axis=1)
    same = (z[i] == z[j]) & (i != j)
    assert same.sum() > 20 and d[same].mean() < 0.5 * d[z[i] != z[j]].mean()


def test_generator_is_deterministic_in_seed(records):
    again = S.synthetic_records(50, seed=3)
    for a, b in zip(records, again):
        assert np.array_equal(a.atomic_numbers, b.atomic_numbers)
        assert np.array_equal(a.frac_coords, b.frac_coords) and np.array_equal(a.dos, b.dos)
    other = S.synthetic_records(50, seed=4)
    assert not all(np.array_equal(a.frac_coords, b.frac_coords) for a, b in zip(records, other)
                   if a.num_atoms == b.num_atoms)


def test_store_loads_back_with_equal_arrays(records, tmp_path):
    path = tmp_path / "store.npz"
    save_records(path, records)
    st = DOSStore(path)
    assert len(st) == len(records) and st.total_atoms == sum(r.num_atoms for r in records)
    for a, b in zip(records, st.records()):
        assert a.structure_id == b.structure_id
        assert np.array_equal(a.atomic_numbers, b.atomic_numbers)
        assert np.array_equal(a.frac_coords, b.frac_coords)
        assert np.array_equal(a.lattice, b.lattice)
        # the store keeps DOS in float16: equal to the float16 rounding of what was written
        assert np.array_equal(b.dos, a.dos.astype(np.float16).astype(np.float32))
        assert np.allclose(b.dos, a.dos, rtol=1e-3, atol=1e-4)


def test_checker_catches_each_planted_fault(records):
    """Negative control: every fault planted in a copy of a good crystal is reported, and only it."""
    base = next(r for r in records if r.num_atoms >= 3)

    def planted(edit) -> list[str]:
        r = copy.deepcopy(base)
        edit(r)
        return S.check_records([r])

    def overlap_across_boundary(r):  # close only through a periodic image: a naive check misses it
        r.frac_coords[0] = [0.002, 0.5, 0.5]
        r.frac_coords[1] = [0.998, 0.5, 0.5]

    def negative(r):
        r.dos[1, 17] = -0.05

    def not_finite(r):
        r.dos[0, 3] = np.nan

    assert S.check_records([copy.deepcopy(base)]) == []
    for edit, words in ((overlap_across_boundary, "apart"), (negative, "negative DOS"), (not_finite, "not finite")):
        found = planted(edit)
        assert len(found) == 1 and words in found[0], (edit.__name__, found)
    grid = np.stack(np.meshgrid(*[np.arange(3) / 3] * 3, indexing="ij"), -1).reshape(-1, 3)[:21]
    big = CrystalRecord("big", [8] * 21, grid, np.eye(3) * 12.0, np.ones((21, N_DOS)))
    assert [p for p in S.check_records([big])] == ["big: 21 atoms (MP-20 has 1-20)"]
    assert any("repeated id" in p for p in S.check_records([base, copy.deepcopy(base)]))


def test_stage_runner_measures_store_and_split_on_a_tiny_store(tmp_path):
    ctx = S.StageContext(30, tmp_path, {"seed": 0})
    row = S.run_stage_here("store", ctx)
    assert row["stage"] == "store" and row["size"] == 30
    assert row["wall_s"] > 0 and row["cpu_s"] >= 0 and row["peak_rss_mb"] >= row["rss_at_start_mb"] > 0
    assert row["detail"]["atoms"] == DOSStore(ctx.store).total_atoms
    row = S.run_stage_here("split", ctx)
    assert row["detail"]["n_train"] + row["detail"]["n_val"] + row["detail"]["n_test"] == 30
    assert ctx.standardiser.exists() and ctx.split.exists()


def test_stage_order_and_the_hook_for_a_later_stage():
    assert list(S.STAGES)[:7] == ["store", "split", "train_epoch", "regenerate", "score", "novelty",
                                  "novelty_stress"]
    assert "batched_relax" not in S.STAGES  # placeholder, registered once its module exists
    with pytest.raises(NotImplementedError):
        S.stage_batched_relax(None, None)


def test_slopes_and_report_flag_super_linear_stages():
    rows = [{"size": n, "stage": st, "wall_s": t(n), "cpu_s": t(n), "peak_rss_mb": 300.0 + n / 100}
            for n in (1000, 2000, 4000) for st, t in (("lin", lambda n: 0.01 * n), ("quad", lambda n: 1e-6 * n * n),
                                                       ("flat", lambda n: 5.0))]
    slopes = S.fit_slopes(rows)
    assert slopes["lin"] == pytest.approx(1.0, abs=1e-3) and slopes["quad"] == pytest.approx(2.0, abs=1e-3)
    assert slopes["flat"] == pytest.approx(0.0, abs=1e-3)
    md = S.render_markdown({"rows": rows, "command": "x", "note": "n", "environment": {}})
    line: dict[str, str] = {}
    for ln in md.splitlines():  # the first table (time, memory, slopes, bar) comes first
        if ln.startswith("| "):
            line.setdefault(ln.split("|")[1].strip(), ln)
    assert line["lin"].rstrip().endswith("| pass |") and line["flat"].rstrip().endswith("| pass |")
    assert line["quad"].rstrip().endswith("| FAIL |")


# ---------------------------------------------------------------------------------------------
# dosmatgen.evaluate.metrics.timed_fit matches LLL-reduced bases (found by the scale test: at
# N = 20,000 novelty hung on a "valid" generated crystal whose cell vectors were hundreds of Å
# long around a 5 Å reduced cell; pymatgen's Niggli reduction inside StructureMatcher searched an
# enormous image box in one C call that the SIGALRM timeout could not interrupt)
# ---------------------------------------------------------------------------------------------
def _skewed_copy():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.from_parameters(4.5, 5.4, 6.2, 101.5, 94.9, 110.8), ["Re", "O"],
                  [[0.1, 0.2, 0.3], [0.6, 0.55, 0.8]])
    u = np.array([[1, 40, 0], [0, 1, 40], [0, 0, 1]]) @ np.array([[1, 0, 0], [37, 1, 0], [0, 29, 1]])
    assert round(abs(np.linalg.det(u))) == 1  # unimodular: the same crystal on another basis
    lat = u @ s.lattice.matrix  # same Cartesian positions, new fractional coordinates
    return s, Structure(Lattice(lat), s.species, np.mod(s.cart_coords @ np.linalg.inv(lat), 1.0))


def _novelty_of_skewed_copy(queue) -> None:
    from dosmatgen.evaluate.metrics import Novelty, timed_fit

    s, skewed = _skewed_copy()
    queue.put((timed_fit(skewed, s, 10.0), Novelty([s, s.copy()]).compute([skewed, None]).value))


def test_matching_a_badly_skewed_cell_returns_and_finds_the_same_crystal():
    import multiprocessing as mp

    s, skewed = _skewed_copy()
    assert len(skewed) == 2 and max(skewed.lattice.abc) > 1000  # vs a ~6 Å reduced cell
    # a forked child with a hard limit: the old code sat in one C call for minutes (> 60 s
    # measured), which no signal interrupts
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_novelty_of_skewed_copy, args=(queue,))
    proc.start()
    proc.join(45)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail("StructureMatcher on a skewed basis did not return within 45 s")
    outcome, novelty = queue.get(timeout=5)
    assert outcome == "match"  # the same crystal
    assert novelty == 0.0  # so it is not novel against a training set that holds it


def test_lll_reduction_leaves_match_outcomes_unchanged(records):
    """Same outcome as StructureMatcher on the given bases, for matching and non-matching pairs."""
    from dosmatgen.evaluate.metrics import _make_matcher, lll_reduced, timed_fit

    m = _make_matcher()
    structs = [r.to_structure() for r in records if 2 <= r.num_atoms <= 4][:4]
    pairs = []
    for s in structs:
        r = s.copy()
        r.perturb(0.05)
        pairs += [(s, r), (s, s.make_supercell([1, 1, 2], in_place=False))]  # the same crystal
    pairs += list(zip(structs, structs[1:] + structs[:1]))  # different crystals
    got = [timed_fit(a, b, None, m) for a, b in pairs]
    want = ["match" if m.fit(a, b) else "no_match" for a, b in pairs]
    assert got == want and got.count("match") >= len(structs) and "no_match" in got
    s, skewed = _skewed_copy()
    red = lll_reduced(skewed)
    assert max(red.lattice.abc) < 10 and red.volume == pytest.approx(s.volume)
    assert red.composition == s.composition
