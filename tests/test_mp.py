"""Materials Project source, offline: CompleteDos conversion checked against hand-computed numbers,
and the downloader driven through a fake MPRester (resume, 429, backoff, missing key, no network)."""

from __future__ import annotations

import inspect
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Orbital, Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

from dosmatgen.data.mp import RetryPolicy, download_mp, fetch_mp_target, merge_mp
from dosmatgen.data.store import DOSStore
from dosmatgen.dos.grid import ENERGY_GRID
from dosmatgen.dos.mp_convert import ConversionSkipped, record_from_complete_dos, site_dos_from_complete_dos
from dosmatgen.errors import DataError


def _nacl() -> Structure:
    return Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cdos(structure: Structure, energies: np.ndarray, efermi: float, pdos: dict) -> CompleteDos:
    """CompleteDos with ``pdos[i] = {Orbital: {Spin: array}}`` for site i."""
    total = Dos(efermi, energies, {Spin.up: np.ones_like(energies)})
    return CompleteDos(structure, total, {structure[i]: v for i, v in pdos.items()})


def _simple_cdos(n_points: int = 2001, scale: float = 1.0) -> CompleteDos:
    e = np.linspace(-8.0, 8.0, n_points)
    c = np.ones_like(e)
    return _cdos(_nacl(), e, 0.5, {0: {Orbital.s: {Spin.up: scale * c, Spin.down: scale * c}},
                                  1: {Orbital.px: {Spin.up: 2 * scale * c}}})


# ---- conversion -----------------------------------------------------------------------------------
def test_conversion_matches_hand_computed_grid():
    e = np.linspace(-6.0, 14.0, 2001)  # 0.01 eV spacing
    efermi = 4.0  # relative energies span exactly [-10, 10]
    k, h = 1000, 50.0  # spike at E - E_F = 0.0
    spike_up = np.zeros_like(e)
    spike_up[k] = h
    const = np.full_like(e, 0.3)
    ramp = 0.1 * (e - efermi) + 2.0
    pdos = {
        0: {Orbital.s: {Spin.up: spike_up, Spin.down: spike_up / 2},
            Orbital.px: {Spin.up: const}, Orbital.py: {Spin.up: const}, Orbital.pz: {Spin.up: const},
            Orbital.f0: {Spin.up: np.full_like(e, 100.0)}},  # f is not part of s+p+d
        1: {Orbital.dxy: {Spin.up: ramp / 2, Spin.down: ramp / 2}},
    }
    got = site_dos_from_complete_dos(_cdos(_nacl(), e, efermi, pdos))
    assert got.shape == (2, 400)

    # site 0 by hand: 0.9 (three p channels) + a discrete Gaussian (sigma 7 points, truncated at
    # 4 sigma = 28 points, normalised) of weight 1.5 h centred on point k, then linear interpolation
    m = np.arange(-28, 29)
    w = np.exp(-m**2 / (2 * 7.0**2))
    w /= w.sum()
    smoothed = np.full(e.size, 0.9)
    smoothed[k - 28:k + 29] += 1.5 * h * w
    u = (ENERGY_GRID - (-10.0)) / 0.01
    i0 = np.clip(np.floor(u).astype(int), 0, e.size - 2)
    frac = u - i0
    expected0 = (1 - frac) * smoothed[i0] + frac * smoothed[i0 + 1]
    np.testing.assert_allclose(got[0], expected0, rtol=1e-9, atol=1e-9)
    assert got[0].max() > 4.0  # the spike survived smoothing (peak 1.5 h w[28] + 0.9 ~ 5.2 between grid points)

    # site 1: a linear DOS is unchanged by a symmetric Gaussian away from the edges
    interior = np.abs(ENERGY_GRID) < 9.5
    np.testing.assert_allclose(got[1][interior], 0.1 * ENERGY_GRID[interior] + 2.0, rtol=1e-9)

    with_f = site_dos_from_complete_dos(_cdos(_nacl(), e, efermi, pdos), orbitals=("s", "p", "d", "f"))
    np.testing.assert_allclose(with_f[0] - got[0], 100.0, rtol=1e-9)


def test_zero_outside_computed_window_and_fermi_shift():
    e = np.linspace(-3.0, 3.0, 2001)
    c = np.full_like(e, 0.7)
    got = site_dos_from_complete_dos(_cdos(_nacl(), e, 1.0, {0: {Orbital.s: {Spin.up: c}},
                                                              1: {Orbital.s: {Spin.up: c}}}))
    inside = (ENERGY_GRID >= -4.0) & (ENERGY_GRID <= 2.0)  # window relative to E_F = 1
    np.testing.assert_allclose(got[:, inside], 0.7, rtol=1e-12)
    assert np.all(got[:, ~inside] == 0.0)


def test_skips_with_reasons():
    with pytest.raises(ConversionSkipped, match="1000 points.*2001") as info:
        site_dos_from_complete_dos(_simple_cdos(1000))
    assert "2001" in info.value.reason
    assert site_dos_from_complete_dos(_simple_cdos(1000), required_points=None).shape == (2, 400)
    assert site_dos_from_complete_dos(_simple_cdos(1000), required_points=1000).shape == (2, 400)
    e = np.linspace(-8, 8, 2001)
    partial = _cdos(_nacl(), e, 0.0, {0: {Orbital.s: {Spin.up: np.ones_like(e)}}})
    with pytest.raises(ConversionSkipped, match="site 1 .*Cl.* no projected DOS"):
        site_dos_from_complete_dos(partial)
    with pytest.raises(ConversionSkipped, match="not a CompleteDos"):
        site_dos_from_complete_dos(Dos(0.0, e, {Spin.up: np.ones_like(e)}))


def test_record_from_complete_dos():
    rec = record_from_complete_dos(_simple_cdos(), "mp-22862", provenance={"material_id": "mp-22862"})
    assert rec.structure_id == "mp-22862" and list(rec.atomic_numbers) == [11, 17]
    assert rec.provenance["source"] == "mp" and rec.provenance["efermi"] == 0.5
    # constant 2 (Na, s up + down) and 2 (Cl, px) inside the window [-8.5, 7.5] eV
    inside = (ENERGY_GRID > -8.4) & (ENERGY_GRID < 7.4)
    np.testing.assert_allclose(rec.dos[:, inside], 2.0, rtol=1e-6)


# ---- a fake MPRester -------------------------------------------------------------------------------
class HTTPError(OSError):
    def __init__(self, status: int, retry_after: str | None = None):
        super().__init__(f"HTTP {status}")
        self.response = SimpleNamespace(status_code=status,
                                        headers={"Retry-After": retry_after} if retry_after else {})


class MPRestError(Exception):
    """Stands in for mp_api.client.core.MPRestError."""


class FakeMPRester:
    """The public surface of mp-api 0.46's MPRester that the downloader uses; the DOS task id of
    material ``mp-N`` is ``mp-N`` itself. ``errors[id]`` are raised by the DOS reads of that id."""

    def __init__(self, key, dos, errors=None, search_docs=None):
        self.key = key
        self._dos = dos
        self._errors = {k: list(v) for k, v in (errors or {}).items()}
        self._docs = search_docs if search_docs is not None else [{"material_id": m, "nsites": 2} for m in IDS]
        self.calls: list[str] = []
        self.es_searches: list[list[str]] = []
        self.search_kwargs = None
        self.closed = False
        self.materials = SimpleNamespace(
            summary=SimpleNamespace(search=self._search),
            electronic_structure=SimpleNamespace(search=self._es_search),
            electronic_structure_dos=SimpleNamespace(get_dos_from_task_id=self._dos_from_task))

    def _search(self, **kwargs):
        self.search_kwargs = kwargs
        return self._docs

    def _es_search(self, material_ids, fields):
        assert set(fields) == {"material_id", "dos"}
        self.es_searches.append(list(material_ids))
        return [{"material_id": m, "dos": {"task_id": m}} for m in material_ids if m in self._dos]

    def _dos_from_task(self, task_id, load_projections=False):
        assert load_projections, "site projections must be requested"
        self.calls.append(task_id)
        queue = self._errors.get(task_id)
        if queue:
            raise queue.pop(0)
        return self._dos[task_id]

    def __exit__(self, *exc):
        self.closed = True


def _factory(fake):
    made = []

    def factory(key):
        fake.key = key
        made.append(key)
        return fake
    factory.made = made
    return factory


IDS = ["mp-1", "mp-2", "mp-3", "mp-4", "mp-5"]


def _dos_table():
    return {"mp-1": _simple_cdos(scale=1.0), "mp-2": _simple_cdos(scale=2.0), "mp-3": _simple_cdos(1000),
            "mp-5": _simple_cdos(scale=5.0)}  # mp-3: wrong grid, mp-4: no DOS at all


def _download(tmp_path, fake, **kw):
    kw.setdefault("batch_size", 2)
    kw.setdefault("min_interval", 0.0)
    kw.setdefault("sleep", lambda s: None)
    return download_mp(tmp_path / "mp", api_key="k" * 32, rester_factory=_factory(fake), progress=False, **kw)


def test_download_convert_merge(tmp_path):
    docs = [{"material_id": m} for m in ["mp-5", "mp-10", "mp-1", "mp-2", "mp-3", "mp-4"]]
    fake = FakeMPRester(None, _dos_table(), search_docs=docs)
    summary = _download(tmp_path, fake, limit=5)
    assert fake.search_kwargs["has_props"] == ["dos"] and "material_id" in fake.search_kwargs["fields"]
    assert fake.calls == ["mp-1", "mp-2", "mp-3", "mp-5"]  # sorted by number, mp-10 cut by limit; mp-4 has no DOS task
    assert fake.closed
    assert (summary.total, summary.done, summary.failed) == (5, 3, 2)
    ledger = json.loads((tmp_path / "mp" / "ledger.json").read_text())
    assert ledger["shards"] == ["shard-00000.npz", "shard-00001.npz"]  # batch {mp-3, mp-4} wrote none
    assert set(ledger["done"]) == {"mp-1", "mp-2", "mp-5"}
    assert "2001" in ledger["failed"]["mp-3"] and "no electronic-structure document" in ledger["failed"]["mp-4"]
    assert fake.es_searches == [["mp-1", "mp-2"], ["mp-3", "mp-4"], ["mp-5"]]  # one REST search per batch
    assert json.loads((tmp_path / "mp" / "ids.json").read_text())["ids"] == IDS + ["mp-10"]
    assert merge_mp(tmp_path / "mp", tmp_path / "mp.npz") == 3
    store = DOSStore(tmp_path / "mp.npz")
    assert store.ids == ["mp-1", "mp-2", "mp-5"]
    assert store.meta["source"] == "mp" and store.meta["failed"] == 2
    np.testing.assert_allclose(store["mp-2"].dos, site_dos_from_complete_dos(_simple_cdos(scale=2.0)), rtol=2e-3)


def test_resume_skips_done_and_failed(tmp_path):
    fake = FakeMPRester(None, _dos_table(), errors={"mp-5": [KeyboardInterrupt()]})
    with pytest.raises(KeyboardInterrupt):
        _download(tmp_path, fake)
    ledger = json.loads((tmp_path / "mp" / "ledger.json").read_text())
    assert set(ledger["done"]) == {"mp-1", "mp-2"} and set(ledger["failed"]) == {"mp-3", "mp-4"}

    def no_search(**kw):
        raise AssertionError("ids.json must be reused on resume")
    fake2 = FakeMPRester(None, _dos_table())
    fake2.materials.summary.search = no_search
    summary = _download(tmp_path, fake2)
    assert fake2.calls == ["mp-5"]
    assert (summary.done, summary.failed, summary.new_done) == (3, 2, 1)
    fake3 = FakeMPRester(None, _dos_table())
    assert _download(tmp_path, fake3).new_done == 0 and fake3.calls == []


def test_rate_limit_and_backoff(tmp_path):
    sleeps: list[float] = []
    errors = {"mp-1": [HTTPError(429, retry_after="7"), HTTPError(429)],
              "mp-2": [MPRestError("REST query returned with error status code 503 on URL x")]}
    fake = FakeMPRester(None, _dos_table(), errors=errors)
    summary = _download(tmp_path, fake, material_ids=["mp-1", "mp-2"], base_delay=2.0, sleep=sleeps.append)
    assert summary.done == 2
    assert fake.calls == ["mp-1", "mp-1", "mp-1", "mp-2", "mp-2"]
    assert sleeps == [7.0, 4.0, 2.0]  # Retry-After wins over 2 s; then 2*2^1; then 2*2^0 for the 503


def test_min_interval_between_calls():
    t = [100.0]
    sleeps: list[float] = []

    def sleep(s):
        sleeps.append(s)
        t[0] += s
    policy = RetryPolicy(min_interval=0.25, sleep=sleep, clock=lambda: t[0])
    policy.wait_turn()
    t[0] += 0.05
    policy.wait_turn()
    t[0] += 1.0
    policy.wait_turn()
    assert sleeps == [pytest.approx(0.2)]


def test_network_unreachable(tmp_path):
    sleeps: list[float] = []
    fake = FakeMPRester(None, _dos_table(), errors={"mp-1": [ConnectionError("Name or service not known")] * 10})
    with pytest.raises(DataError, match="cannot reach the Materials Project.*4 attempts"):
        _download(tmp_path, fake, material_ids=["mp-1"], max_retries=3, base_delay=1.0, sleep=sleeps.append)
    assert sleeps == [1.0, 2.0, 4.0]
    assert not list((tmp_path / "mp").glob("shard-*"))


def test_persistent_429_and_rejected_key(tmp_path):
    fake = FakeMPRester(None, _dos_table(), errors={"mp-1": [HTTPError(429)] * 10})
    with pytest.raises(DataError, match="rate-limiting"):
        _download(tmp_path, fake, material_ids=["mp-1"], max_retries=2)
    fake = FakeMPRester(None, _dos_table(), errors={"mp-1": [HTTPError(401)]})
    with pytest.raises(DataError, match="rejected the API key.*MP_API_KEY"):
        _download(tmp_path / "b", fake, material_ids=["mp-1"])


def test_missing_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    fake = FakeMPRester(None, _dos_table())
    with pytest.raises(DataError, match="MP_API_KEY"):
        download_mp(tmp_path, rester_factory=_factory(fake), progress=False)
    assert fake.calls == []
    monkeypatch.setenv("MP_API_KEY", "e" * 32)
    factory = _factory(fake)
    download_mp(tmp_path, material_ids=["mp-1"], rester_factory=factory, progress=False, min_interval=0)
    assert factory.made == ["e" * 32]
    monkeypatch.setenv("MP_API_KEY", "short")
    with pytest.raises(DataError, match="has 5 characters; keys have 32"):
        download_mp(tmp_path / "other", rester_factory=factory, progress=False)
    assert not (tmp_path / "other").exists()


def test_fetch_mp_target():
    fake = FakeMPRester(None, _dos_table())
    y = fetch_mp_target("mp-2", 1, api_key="k" * 32, rester_factory=_factory(fake))
    np.testing.assert_allclose(y, site_dos_from_complete_dos(_simple_cdos(scale=2.0))[1], rtol=1e-6)
    y_cl = fetch_mp_target("mp-2", "Cl", api_key="k" * 32, rester_factory=_factory(fake))
    np.testing.assert_array_equal(y, y_cl)
    with pytest.raises(DataError, match="no Fe site"):
        fetch_mp_target("mp-2", "Fe", api_key="k" * 32, rester_factory=_factory(fake))
    with pytest.raises(DataError, match="no usable DOS for mp-4"):
        fetch_mp_target("mp-4", 0, api_key="k" * 32, rester_factory=_factory(fake))


def test_mp_api_client_interface():
    """The real client (optional extra) has the calls the downloader makes."""
    client = pytest.importorskip("mp_api.client")
    from mp_api.client.routes.materials.electronic_structure import DosRester, ElectronicStructureRester
    from mp_api.client.routes.materials.summary import SummaryRester

    assert {"has_props", "fields", "num_sites"} <= set(inspect.signature(SummaryRester.search).parameters)
    assert {"material_ids", "fields"} <= set(inspect.signature(ElectronicStructureRester.search).parameters)
    assert "load_projections" in inspect.signature(DosRester.get_dos_from_task_id).parameters
    assert client.MPRester is not None


@pytest.mark.parametrize("version, ok", [("0.46.5", True), ("0.46.0rc1", True), ("0.45.3", False),
                                         ("0.41.2", False), ("0.47.0", False), ("1.0", False)])
def test_supported_mp_api_versions(version, ok):
    from dosmatgen.data.mp import check_mp_api_version

    if ok:
        check_mp_api_version(version)
    else:
        with pytest.raises(DataError, match=f"mp-api {re.escape(version)} is installed"):
            check_mp_api_version(version)
