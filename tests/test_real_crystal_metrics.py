"""The two diagnostics of issue 35 on hand-made sets with known answers: crystals wrong only by
group homologues, and equal-DOS site pairs given two elements."""

from __future__ import annotations

import numpy as np
import pytest

from dosmatgen.evaluate.metrics import EqualDOSPairsSplit, HomologueOnlyMiss

Z = np.array


@pytest.mark.parametrize("generated, reference, kind", [
    (Z([53, 11]), Z([35, 11]), "homologue_only"),       # I for Br
    (Z([20, 9]), Z([56, 17]), "homologue_only"),        # Ca for Ba and F for Cl, both one group apart in period
    (Z([16, 22]), Z([8, 22]), "homologue_only"),        # S for O
    (Z([58, 8]), Z([57, 8]), "other_miss"),             # Ce for La: group 3 both, the same period (control)
    (Z([53, 12]), Z([35, 11]), "other_miss"),           # a homologue and a wrong group
    (Z([8, 11]), Z([8, 11]), "all_correct"),
    (Z([53, 11, 11]), Z([35, 11]), "other_miss"),       # atom counts differ: no pairing
])
def test_homologue_classes(generated, reference, kind):
    assert HomologueOnlyMiss.classify(generated, reference) == kind


def test_homologue_rate_counts_crystals():
    r = HomologueOnlyMiss().compute([Z([53, 11]), Z([8, 11]), None, Z([58, 8])],
                                    [Z([35, 11]), Z([8, 11]), Z([8, 11]), Z([57, 8])])
    assert r.value == pytest.approx(25.0)
    assert r.counts == {"homologue_only": 1, "all_correct": 1, "other_miss": 2}


def _dos(*rows):
    return np.array(rows, dtype=float)


def test_equal_dos_pairs_known_answers():
    flat = np.ones(400)
    other = np.linspace(0, 2, 400)
    metric = EqualDOSPairsSplit(tolerance=0.02)
    ref = Z([8, 8, 8, 26])
    dos = _dos(flat, flat + 0.01, other, other)  # sites 0, 1 nearly equal; 2 differs; 3 equals 2 but is Fe
    assert metric.pairs(ref, dos) == [(0, 1)]
    split = metric.compute([Z([8, 16, 8, 26])], [ref], [dos])
    kept = metric.compute([Z([16, 16, 8, 26])], [ref], [dos])   # negative control: one element, not split
    assert (split.value, split.counts) == (100.0, {"pairs": 1, "split": 1})
    assert (kept.value, kept.counts) == (0.0, {"pairs": 1, "split": 0})


def test_equal_dos_pairs_tolerance_and_missing_crystals():
    flat = np.ones(400)
    metric = EqualDOSPairsSplit(tolerance=0.02)
    far = _dos(flat, flat + 0.05)                          # mean |Δ| 0.05: not a pair
    assert metric.compute([Z([8, 16])], [Z([8, 8])], [far]).counts == {"pairs": 0, "split": 0}
    near = _dos(flat, flat)
    assert metric.compute([None], [Z([8, 8])], [near]).counts == {"pairs": 1, "split": 1}  # nothing generated
