"""The Materials Project downloader with the REAL ``mp-api`` client, offline: a loopback REST
stand-in and moto's S3 (own memory-capped process) serving real MP documents from
``tests/fixtures/mp_documents`` as the Delta-Lake tables the client reads (``tests/mp_standins.py``).

Needs the ``mp`` extra (mp-api, which brings deltalake and emmet) and moto; CI installs both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mp_api.client")
pytest.importorskip("moto")
pytest.importorskip("deltalake")

from mp_standins import RestStandIn, S3StandIn, free_port, real_documents  # noqa: E402

from dosmatgen.cli import main  # noqa: E402
from dosmatgen.data import mp as mp_module  # noqa: E402
from dosmatgen.data.mp import download_mp, merge_mp  # noqa: E402
from dosmatgen.data.store import DOSStore  # noqa: E402
from dosmatgen.dos.mp_convert import site_dos_from_complete_dos  # noqa: E402
from dosmatgen.errors import DataError  # noqa: E402

pytestmark = pytest.mark.timeout(300)

KEY = "k" * 32
#: Fe and Si fit the recipe; WO2 and TaZnCo2 are on 301 points; mp-2 has an electronic-structure
#: document without a DOS; mp-7 has none.
ALL = ["mp-2", "mp-7", "mp-13", "mp-149", "mp-25375", "mp-865805"]
FAST = dict(min_interval=0.0, max_retries=1, base_delay=0.01, progress=False)


@pytest.fixture(scope="module")
def documents():
    return real_documents()


@pytest.fixture(scope="module")
def s3(documents):
    with S3StandIn(documents) as stand_in:
        yield stand_in


@pytest.fixture()
def rest(documents, s3, monkeypatch):
    es = {m: task for m, (task, _) in documents.items()} | {"mp-2": None}
    summary = [{"material_id": m, "nsites": 2, "formula_pretty": "X"} for m in ALL]
    with RestStandIn(summary, es) as stand_in:
        monkeypatch.setenv("MP_API_ENDPOINT", stand_in.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
        monkeypatch.delenv("MP_API_KEY", raising=False)
        s3.outage(False)
        yield stand_in
    s3.outage(False)


def _ledger(folder: Path) -> dict:
    return json.loads((folder / "ledger.json").read_text())


def test_real_client_downloads_converts_and_skips(tmp_path, rest, documents):
    out = tmp_path / "mp"
    summary = download_mp(out, api_key=KEY, batch_size=3, **FAST)
    assert (summary.done, summary.failed, summary.pending) == (2, 4, 0) and summary.rate > 0
    ledger = _ledger(out)
    assert set(ledger["done"]) == {"mp-13", "mp-149"}
    assert "301 points" in ledger["failed"]["mp-25375"] and "301 points" in ledger["failed"]["mp-865805"]
    assert "no electronic-structure document" in ledger["failed"]["mp-7"]
    assert "no DOS" in ledger["failed"]["mp-2"]
    # one REST search of electronic-structure documents per batch of 3, not one call per material
    searches = [q for path, q in rest.requests if path.endswith("/materials/electronic_structure/")]
    assert [q["material_ids"] for q in searches] == ["mp-2,mp-7,mp-13", "mp-149,mp-25375,mp-865805"]
    merge_mp(out, tmp_path / "mp.npz")
    store = DOSStore(tmp_path / "mp.npz")
    for mid in ("mp-13", "mp-149"):  # the recipe applied directly to the same CompleteDos
        expected = site_dos_from_complete_dos(documents[mid][1])
        np.testing.assert_allclose(store[mid].dos, expected, rtol=2e-3, atol=1e-3)  # store keeps float16
        assert store[mid].provenance["dos_task_id"].startswith("mp-")  # the client gives it in its AlphaID form
    assert list(store["mp-149"].atomic_numbers) == [14, 14] and list(store["mp-13"].atomic_numbers) == [26]


def _outage_run(out: Path, rest: RestStandIn, s3: S3StandIn) -> None:
    """mp-13 is read, then S3 goes down before mp-149: mp-149 and mp-865805 are not readable."""
    rest.on_es_search = lambda ids: s3.outage(True) if ids == ["mp-149"] else None
    try:
        download_mp(out, api_key=KEY, material_ids=["mp-13", "mp-149", "mp-865805"], batch_size=1, **FAST)
    finally:
        rest.on_es_search = None
        s3.outage(False)


def test_s3_outage_leaves_materials_pending_and_a_rerun_completes_them(tmp_path, rest, s3):
    out = tmp_path / "mp"
    with pytest.raises(DataError, match="2 pending.*rerun the same command"):
        _outage_run(out, rest, s3)
    assert _ledger(out)["done"] == {"mp-13": "shard-00000.npz"} and _ledger(out)["failed"] == {}
    summary = download_mp(out, api_key=KEY, material_ids=["mp-13", "mp-149", "mp-865805"], batch_size=1, **FAST)
    assert (summary.new_done, summary.new_failed, summary.pending) == (1, 1, 0)
    assert set(_ledger(out)["done"]) == {"mp-13", "mp-149"} and "301 points" in _ledger(out)["failed"]["mp-865805"]


def test_negative_control_old_classification_loses_the_outage(tmp_path, rest, s3, monkeypatch):
    """With the old rule (a failed read is permanent), the same outage records mp-149 as failed
    and the rerun never fetches it: the check above would fail."""
    real = mp_module.classify
    monkeypatch.setattr(mp_module, "classify",
                        lambda exc: "no_data" if "Failed to retrieve object" in str(exc) else real(exc))
    out = tmp_path / "mp"
    _outage_run(out, rest, s3)  # no pending, so no error: the materials were written off
    assert "mp-149" in _ledger(out)["failed"]
    download_mp(out, api_key=KEY, material_ids=["mp-13", "mp-149", "mp-865805"], batch_size=1, **FAST)
    assert "mp-149" not in _ledger(out)["done"]


def test_429_storm_stops_with_the_rate_limit_message(tmp_path, rest):
    rest.storm = True
    t0 = time.monotonic()
    with pytest.raises(DataError, match="kept rate-limiting \\(HTTP 429\\).*rerun the same command"):
        download_mp(tmp_path / "mp", api_key=KEY, material_ids=["mp-13"], **FAST)
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "mp" / "ledger.json").exists() or _ledger(tmp_path / "mp")["failed"] == {}
    rest.storm = False
    assert download_mp(tmp_path / "mp", api_key=KEY, material_ids=["mp-13"], **FAST).done == 1  # resumes


def test_rejected_key_names_the_key(tmp_path, rest):
    rest.key = "r" * 32
    with pytest.raises(DataError, match="rejected the API key \\(HTTP 401\\).*MP_API_KEY"):
        download_mp(tmp_path / "mp", api_key=KEY, material_ids=["mp-13"], **FAST)
    assert not (tmp_path / "mp").exists()  # nothing written, not even an empty folder


def test_killed_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path, rest, s3):
    """``dosmatgen data download-mp`` killed (SIGKILL) while its second batch waits on the API,
    then run again: every material ends in exactly one place, each converted one in one shard."""
    out = tmp_path / "mp"
    release = threading.Event()
    rest.on_es_search = lambda ids: release.wait(60) if ids == ["mp-149"] else None
    env = dict(os.environ, MP_API_KEY=KEY)
    cmd = [sys.executable, "-m", "dosmatgen.cli", "data", "download-mp", "--out", str(out), "--ids", *ALL,
           "--batch-size", "1", "--min-interval", "0", "--max-retries", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "ledger.json").exists() and "mp-13" in _ledger(out)["done"]):
            assert proc.poll() is None and time.monotonic() < deadline, "the download did not get to mp-13"
            time.sleep(0.2)
        time.sleep(0.5)  # it is now waiting on the search of mp-149
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        release.set()
        rest.on_es_search = None
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = _ledger(out)
    assert "mp-149" not in before["done"] and "mp-13" in before["done"]
    assert main(["data", "download-mp", "--out", str(out), "--ids", *ALL, "--batch-size", "1",
                 "--min-interval", "0", "--max-retries", "1", "--api-key", KEY, "--no-progress"]) == 0
    after = _ledger(out)
    assert set(after["done"]) == {"mp-13", "mp-149"} and set(after["failed"]) == {"mp-2", "mp-7", "mp-25375", "mp-865805"}
    ids_in_shards = [i for shard in after["shards"] for i in DOSStore(out / shard).ids]
    assert sorted(ids_in_shards) == ["mp-13", "mp-149"]  # nothing lost, nothing twice
    assert after["done"]["mp-13"] == before["done"]["mp-13"]


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------------
def _cli_fails(tmp_path: Path, capsys, expect: str, *extra: str) -> None:
    out = tmp_path / "mp"
    code = main(["data", "download-mp", "--out", str(out), "--ids", "mp-13", "--max-retries", "1",
                 "--min-interval", "0", "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expect in err, err
    assert not out.exists()


def test_bad_input_no_key(tmp_path, rest, capsys):
    _cli_fails(tmp_path, capsys, "no Materials Project API key")


def test_bad_input_key_of_the_wrong_length(tmp_path, rest, capsys):
    _cli_fails(tmp_path, capsys, "has 10 characters; keys have 32", "--api-key", "0123456789")


def test_bad_input_network_refuses_connections(tmp_path, rest, capsys, monkeypatch):
    monkeypatch.setenv("MP_API_ENDPOINT", f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    _cli_fails(tmp_path, capsys, "cannot reach the Materials Project API", "--api-key", KEY)


def test_bad_input_unsupported_mp_api_version(tmp_path, rest, capsys, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.3" if name == "mp-api" else real(name))
    _cli_fails(tmp_path, capsys, "mp-api 0.45.3 is installed", "--api-key", KEY)
