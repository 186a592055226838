"""Materials Project source (DESIGN §3.2, "mp"): download every material with a DOS, convert each
calculation with :mod:`dosmatgen.dos.mp_convert`, and write resumable shards.

Layout of ``out_dir``::

    ids.json            the material ids to fetch (queried once, then reused on resume)
    ledger.json         {"shards": [...], "done": {id: shard}, "failed": {id: reason}}
    shard-00000.npz     dosmatgen stores, one per batch

A rerun skips every id in ``done`` or ``failed``; a batch interrupted half way is simply redone.
Calls are spaced by ``min_interval`` seconds; failures that look temporary (HTTP 429, 5xx,
connection errors) are retried with exponential backoff (honouring ``Retry-After``); an
unreachable server or a rejected key stops the run with a :class:`DataError` (exit code 2).

``mp-api`` is an optional dependency (``pip install dosmatgen[mp]``), imported only when used.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.data.store import concat_stores, save_records
from dosmatgen.dos.mp_convert import MP_GRID_POINTS, ConversionSkipped, record_from_complete_dos
from dosmatgen.errors import DataError
from dosmatgen.io import atomic_save_json

API_KEY_ENV = "MP_API_KEY"
SUMMARY_FIELDS = ["material_id", "nsites", "formula_pretty"]
_STATUS_RE = re.compile(r"status code (\d{3})")


# ---- retries and rate limiting ---------------------------------------------------------------
@dataclass
class RetryPolicy:
    """How to space and retry calls to the MP API."""

    max_retries: int = 5
    base_delay: float = 2.0  # seconds; doubles on each retry
    max_delay: float = 120.0
    min_interval: float = 0.2  # seconds between consecutive calls
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _last_call: float | None = field(default=None, repr=False)

    def wait_turn(self) -> None:
        if self._last_call is not None and self.min_interval > 0:
            remaining = self.min_interval - (self.clock() - self._last_call)
            if remaining > 0:
                self.sleep(remaining)
        self._last_call = self.clock()

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2.0 ** attempt))


class _PermanentFailure(Exception):
    """A call that will not succeed by retrying (no data for this id, bad request...)."""


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    m = _STATUS_RE.search(str(exc))
    return int(m.group(1)) if m else None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _is_network_error(exc: BaseException) -> bool:
    # requests' exceptions derive from OSError; urllib3 and socket errors too.
    return isinstance(exc, (OSError, TimeoutError, ConnectionError)) or "Max retries exceeded" in str(exc) \
        or "Connection" in type(exc).__name__


def call_with_retries(fn: Callable[[], Any], what: str, policy: RetryPolicy) -> Any:
    """Run ``fn`` under ``policy``. Temporary failures are retried; a rejected key or an unreachable
    server raises :class:`DataError`; anything else raises :class:`_PermanentFailure`."""
    last: BaseException | None = None
    for attempt in range(policy.max_retries + 1):
        policy.wait_turn()
        try:
            return fn()
        except (KeyboardInterrupt, DataError):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            last = exc
            code = _status_code(exc)
            if code in (401, 403):
                raise DataError(f"the Materials Project rejected the API key (HTTP {code}) while {what}; "
                                f"check {API_KEY_ENV}") from exc
            if code == 429:
                delay = max(_retry_after(exc) or 0.0, policy.backoff(attempt))
            elif (code is not None and code >= 500) or (code is None and _is_network_error(exc)):
                delay = policy.backoff(attempt)
            else:
                raise _PermanentFailure(f"{type(exc).__name__}: {exc}") from exc
            if attempt < policy.max_retries:
                policy.sleep(delay)
    code = _status_code(last) if last else None
    if code == 429:
        raise DataError(f"the Materials Project kept rate-limiting (HTTP 429) while {what}, "
                        f"{policy.max_retries + 1} attempts; wait and rerun the same command to resume")
    raise DataError(f"cannot reach the Materials Project API while {what} after {policy.max_retries + 1} "
                    f"attempts ({type(last).__name__}: {last}); check the network connection and rerun "
                    "the same command to resume") from last


# ---- client ----------------------------------------------------------------------------------
def resolve_api_key(api_key: str | None = None) -> str:
    key = api_key or os.environ.get(API_KEY_ENV, "")
    if not key.strip():
        raise DataError(f"no Materials Project API key: set the {API_KEY_ENV} environment variable "
                        "(or pass --api-key); get a key at https://next-gen.materialsproject.org/api")
    return key.strip()


def _default_rester_factory(api_key: str) -> Any:
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise DataError("the Materials Project source needs the optional package mp-api: "
                        "pip install 'dosmatgen[mp]' (or pip install mp-api)") from exc
    return MPRester(api_key, mute_progress_bars=True)


def _open_rester(api_key: str | None, rester_factory: Callable[[str], Any] | None) -> Any:
    key = resolve_api_key(api_key)
    factory = rester_factory or _default_rester_factory
    try:
        return factory(key)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - mp-api checks the key / server on construction
        code = _status_code(exc)
        if code in (401, 403):
            raise DataError(f"the Materials Project rejected the API key (HTTP {code}); check {API_KEY_ENV}") from exc
        if _is_network_error(exc):
            raise DataError(f"cannot reach the Materials Project API ({type(exc).__name__}: {exc}); "
                            "check the network connection") from exc
        raise DataError(f"cannot start the Materials Project client: {type(exc).__name__}: {exc}") from exc


def _close(mpr: Any) -> None:
    """Close the client's HTTP session (MPRester is a context manager)."""
    exit_ = getattr(mpr, "__exit__", None)
    if exit_ is not None:
        try:
            exit_(None, None, None)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _doc_get(doc: Any, key: str) -> Any:
    return doc.get(key) if isinstance(doc, dict) else getattr(doc, key, None)


def _get_complete_dos(mpr: Any, material_id: str) -> Any:
    try:
        return mpr.get_dos_by_material_id(material_id, load_projections=True)
    except TypeError:  # mp-api releases before load_projections returned a CompleteDos by default
        return mpr.get_dos_by_material_id(material_id)


def list_dos_material_ids(mpr: Any, policy: RetryPolicy, max_sites: int | None = None,
                          limit: int | None = None) -> list[str]:
    """Ids of every material with a DOS (``has_props=["dos"]``), sorted, optionally ≤ ``max_sites``."""
    kwargs: dict[str, Any] = {"has_props": ["dos"], "fields": SUMMARY_FIELDS}
    if max_sites is not None:
        kwargs["num_sites"] = (1, int(max_sites))
    try:
        docs = call_with_retries(lambda: mpr.materials.summary.search(**kwargs), "listing materials with a DOS",
                                 policy)
    except _PermanentFailure as exc:
        raise DataError(f"the Materials Project summary query failed: {exc}") from exc
    ids = sorted({str(_doc_get(d, "material_id")) for d in docs if _doc_get(d, "material_id") is not None},
                 key=_id_sort_key)
    return ids[:limit] if limit is not None else ids


def _id_sort_key(mid: str) -> tuple[str, int, str]:
    prefix, _, num = mid.rpartition("-")
    return (prefix, int(num), mid) if num.isdigit() else (mid, -1, mid)


# ---- download --------------------------------------------------------------------------------
@dataclass
class DownloadSummary:
    total: int
    done: int
    failed: int
    new_done: int
    new_failed: int
    shards: list[str]

    def __str__(self) -> str:
        return (f"{self.done} of {self.total} materials converted ({self.new_done} new), "
                f"{self.failed} skipped ({self.new_failed} new), {len(self.shards)} shard(s)")


def _load_ledger(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "ledger.json"
    if not path.exists():
        return {"shards": [], "done": {}, "failed": {}}
    try:
        ledger = json.loads(path.read_text())
        assert isinstance(ledger.get("shards"), list) and isinstance(ledger.get("done"), dict) \
            and isinstance(ledger.get("failed"), dict)
    except (ValueError, AssertionError, AttributeError) as exc:
        raise DataError(f"{path} is corrupt; delete it (and the shards) to start over") from exc
    return ledger


def download_mp(out_dir: str | Path, api_key: str | None = None, limit: int | None = None,
                batch_size: int = 200, *, max_sites: int | None = None,
                material_ids: list[str] | None = None,
                required_points: int | None = MP_GRID_POINTS, min_interval: float = 0.2,
                max_retries: int = 5, base_delay: float = 2.0,
                rester_factory: Callable[[str], Any] | None = None,
                sleep: Callable[[float], None] = time.sleep, progress: bool = True) -> DownloadSummary:
    """Download and convert the MP DOS set into shards under ``out_dir`` (resumable).

    Args:
        limit: keep only the first ``limit`` ids (sorted by number) — for small runs.
        batch_size: materials per shard; the ledger is updated after each shard.
        max_sites: only materials with at most this many sites.
        material_ids: fetch exactly these ids instead of querying the summary endpoint.
        required_points: energy-grid length a calculation must have (MP: 2001).
        min_interval, max_retries, base_delay: rate limiting and exponential backoff.
        rester_factory: ``api_key -> MPRester``-like object (tests pass a fake).
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = RetryPolicy(max_retries=max_retries, base_delay=base_delay, min_interval=min_interval, sleep=sleep)
    ledger = _load_ledger(out)
    mpr = _open_rester(api_key, rester_factory)
    try:
        ids_path = out / "ids.json"
        if material_ids is not None:
            ids = list(dict.fromkeys(str(m) for m in material_ids))
        elif ids_path.exists():
            try:
                ids = [str(m) for m in json.loads(ids_path.read_text())["ids"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{ids_path} is corrupt; delete it to query the ids again") from exc
        else:
            ids = list_dos_material_ids(mpr, policy, max_sites=max_sites)
            atomic_save_json(ids_path, {"ids": ids, "max_sites": max_sites, "queried": time.strftime("%Y-%m-%d")})
        if limit is not None:
            ids = ids[:limit]
        todo = [m for m in ids if m not in ledger["done"] and m not in ledger["failed"]]
        new_done = new_failed = 0
        bar = _progress(len(todo), progress)
        try:
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                records: list[CrystalRecord] = []
                failed: dict[str, str] = {}
                for mid in batch:
                    try:
                        cdos = call_with_retries(lambda m=mid: _get_complete_dos(mpr, m), f"fetching the DOS of {mid}",
                                                 policy)
                        records.append(record_from_complete_dos(
                            cdos, mid, required_points=required_points,
                            provenance={"material_id": mid, "retrieved": time.strftime("%Y-%m-%d")}))
                    except ConversionSkipped as exc:
                        failed[mid] = exc.reason
                    except _PermanentFailure as exc:
                        failed[mid] = str(exc)
                    bar.update(1)
                shard = None
                if records:
                    shard = f"shard-{len(ledger['shards']):05d}.npz"
                    save_records(out / shard, records, {"source": "mp", "required_points": required_points})
                    ledger["shards"].append(shard)
                    ledger["done"].update({r.structure_id: shard for r in records})
                ledger["failed"].update(failed)
                atomic_save_json(out / "ledger.json", ledger)
                new_done += len(records)
                new_failed += len(failed)
        finally:
            bar.close()
    finally:
        _close(mpr)
    return DownloadSummary(total=len(ids), done=sum(1 for m in ids if m in ledger["done"]),
                           failed=sum(1 for m in ids if m in ledger["failed"]), new_done=new_done,
                           new_failed=new_failed, shards=list(ledger["shards"]))


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="MP DOS", unit="material", disable=not enabled)


def merge_mp(out_dir: str | Path, store_path: str | Path) -> int:
    """Merge the shards of :func:`download_mp` into one store; returns the number of structures."""
    out = Path(out_dir)
    if not out.is_dir():
        raise DataError(f"download folder {out} does not exist")
    ledger = _load_ledger(out)
    if not ledger["shards"]:
        raise DataError(f"{out} has no shards yet; run `dosmatgen data download-mp --out {out}` first")
    meta = {"source": "mp", "shards": len(ledger["shards"]), "failed": len(ledger["failed"]),
            "merged": time.strftime("%Y-%m-%d")}
    return concat_stores([out / s for s in ledger["shards"]], store_path, meta, on_duplicate="keep-first")


# ---- single targets --------------------------------------------------------------------------
def fetch_mp_record(material_id: str, api_key: str | None = None, *,
                    required_points: int | None = MP_GRID_POINTS,
                    rester_factory: Callable[[str], Any] | None = None,
                    policy: RetryPolicy | None = None) -> CrystalRecord:
    """One MP material as a :class:`CrystalRecord` with its site DOS."""
    policy = policy or RetryPolicy()
    mpr = _open_rester(api_key, rester_factory)
    try:
        try:
            cdos = call_with_retries(lambda: _get_complete_dos(mpr, material_id),
                                     f"fetching the DOS of {material_id}", policy)
        except _PermanentFailure as exc:
            raise DataError(f"no usable DOS for {material_id} on the Materials Project: {exc}") from exc
    finally:
        _close(mpr)
    return record_from_complete_dos(cdos, material_id, required_points=required_points,
                                    provenance={"material_id": material_id})


def fetch_mp_target(material_id: str, site_index: int | str, api_key: str | None = None, **kwargs: Any) -> np.ndarray:
    """(400,) DOS of one site of an MP material (e.g. the Ni site of Au3Ni, ``mp-976806``).

    ``site_index`` is a site number or an element symbol (first site of that element).
    """
    from dosmatgen.data.info import resolve_site_index

    rec = fetch_mp_record(material_id, api_key, **kwargs)
    assert rec.dos is not None
    return rec.dos[resolve_site_index(rec, site_index)].copy()
