"""Materials Project source (docs/data.md, "mp"): download every material with a DOS, convert each
calculation with :mod:`dosmatgen.dos.mp_convert`, and write resumable shards.

Layout of ``out_dir``::

    ids.json            the material ids to fetch (queried once, then reused on resume)
    ledger.json         {"shards": [...], "done": {id: shard}, "failed": {id: reason}}
    shard-00000.npz     dosmatgen stores, one per batch

How the real ``mp-api`` client (0.46.x) is used, per batch of ``batch_size`` materials: one REST
search of the electronic-structure documents of all of them (``material_ids=[...]``; the client
splits it into calls of 100 ids) gives each material's DOS task id; then each DOS is read from the
Materials Project's public Delta-Lake tables (``get_dos_from_task_id``, site projections
included), which does not go through the REST API or its rate limit.

What happens to a material:

- converted: its record goes into a shard and ``done``;
- **permanently** unusable (no electronic-structure document, no DOS in it, no DOS rows for its
  task, a calculation the recipe skips such as a 301-point grid): ``failed`` with the reason; a
  rerun does not ask again;
- **temporarily** unavailable (a Delta/S3 read error, a timeout, HTTP 5xx after the client's own
  retries, an error nobody classified): retried with exponential backoff, then left **pending**
  (in no list): a rerun asks again. After ``max_consecutive_pending`` pending materials in a row
  (an outage) the run stops asking and leaves the rest pending too. The run then ends with a
  :class:`DataError` saying how many are pending (after writing everything it has).
- the API keeps answering HTTP 429 after the client's and our retries, rejects the key (401/403),
  or cannot be reached at all: the run stops with one line (exit code 2); rerunning resumes.

REST calls are spaced by ``min_interval`` seconds. ``mp-api`` is an optional dependency
(``pip install 'dosmatgen[mp]'``), imported only when used; releases before 0.46 read the DOS from
another S3 layout through boto3 and are refused with their version named.
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
from dosmatgen.io import atomic_save_json, check_writable

API_KEY_ENV = "MP_API_KEY"
#: The endpoint the client talks to (the client's own default when unset).
ENDPOINT_ENV = "MP_API_ENDPOINT"
#: Length of a Materials Project API key (the client refuses other lengths).
API_KEY_LENGTH = 32
#: mp-api releases this code works with: from 0.46 (Delta-Lake DOS tables, ``load_projections``).
SUPPORTED_MP_API = ((0, 46), (0, 47))
SUMMARY_FIELDS = ["material_id", "nsites", "formula_pretty"]
_STATUS_RE = re.compile(r"status code (\d{3})")
_TOO_MANY_RE = re.compile(r"too many (\d{3}) error responses")
#: Messages of the real client that mean "this material has no usable DOS" (permanent).
_NO_DATA = ("No electronic structure data found", "No density of states data found", "No DOS data found")


@dataclass
class RetryPolicy:
    """How to space and retry calls to the MP API."""

    max_retries: int = 5
    base_delay: float = 2.0  # seconds; doubles on each retry
    max_delay: float = 120.0
    min_interval: float = 0.2  # seconds between consecutive REST calls
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
    """A call that will not succeed by retrying (no data for this id)."""


class _Pending(Exception):
    """A call that failed temporarily on every attempt: ask again on the next run."""


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    text = str(exc)
    m = _TOO_MANY_RE.search(text) or _STATUS_RE.search(text)
    return int(m.group(1)) if m else None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _is_network_error(exc: BaseException) -> bool:
    # requests' exceptions derive from OSError; urllib3 and socket errors too. The client turns
    # them into MPRestError(str(exc)), whose text keeps urllib3's "Max retries exceeded".
    text = str(exc)
    return isinstance(exc, (OSError, TimeoutError, ConnectionError)) or "Max retries exceeded" in text \
        or "Connection" in type(exc).__name__ or "Connection refused" in text


def classify(exc: BaseException) -> str:
    """What a failed call means: ``"auth"`` (401/403), ``"rate_limit"`` (429, also after the
    client's own retries), ``"transient"`` (a Delta/S3 read error, a timeout, 5xx, anything
    unrecognised), ``"unreachable"`` (the REST API refuses or cannot resolve) or ``"no_data"``."""
    text = str(exc)
    code = _status_code(exc)
    if code in (401, 403):
        return "auth"
    if code == 429:
        return "rate_limit"
    if "Failed to retrieve object" in text:
        return "transient"  # the Delta-Lake read (S3), whatever the cause underneath
    if any(marker in text for marker in _NO_DATA):
        return "no_data"
    if code is not None and code >= 500:
        return "transient"
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "transient"
    if _is_network_error(exc):
        return "unreachable"
    return "transient"


def call_with_retries(fn: Callable[[], Any], what: str, policy: RetryPolicy, *, rest: bool = True) -> Any:
    """Run ``fn`` under ``policy`` (``rest``: a REST call, spaced by ``min_interval``).

    Raises :class:`DataError` for a rejected key, persistent rate limiting or an unreachable API
    (the run stops), :class:`_PermanentFailure` when the material has no data, and
    :class:`_Pending` when temporary failures outlast the retries."""
    last: BaseException | None = None
    kind = "transient"
    for attempt in range(policy.max_retries + 1):
        if rest:
            policy.wait_turn()
        try:
            return fn()
        except (KeyboardInterrupt, DataError):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            last, kind = exc, classify(exc)
            if kind == "auth":
                raise DataError(f"the Materials Project rejected the API key (HTTP {_status_code(exc)}) while "
                                f"{what}; check {API_KEY_ENV}") from exc
            if kind == "no_data":
                raise _PermanentFailure(_short(exc)) from exc
            delay = policy.backoff(attempt)
            if kind == "rate_limit":
                delay = max(_retry_after(exc) or 0.0, delay)
            if attempt < policy.max_retries:
                policy.sleep(delay)
    attempts = policy.max_retries + 1
    if kind == "rate_limit":
        raise DataError(f"the Materials Project kept rate-limiting (HTTP 429) while {what}, {attempts} attempts "
                        "after the client's own retries; wait a while and rerun the same command to resume") from last
    if kind == "unreachable":
        raise DataError(f"cannot reach the Materials Project API while {what} after {attempts} attempts "
                        f"({_short(last)}); check the network connection and rerun the same command to "
                        "resume") from last
    raise _Pending(f"{what}: {_short(last)}") from last


def _short(exc: BaseException | None, limit: int = 240) -> str:
    if exc is None:
        return ""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit] + "..."


def resolve_api_key(api_key: str | None = None) -> str:
    """The key from ``api_key`` or ``MP_API_KEY``, checked for its length before any call."""
    key = (api_key or os.environ.get(API_KEY_ENV, "")).strip()
    if not key:
        raise DataError(f"no Materials Project API key: set the {API_KEY_ENV} environment variable "
                        "(or pass --api-key); get a key at https://next-gen.materialsproject.org/api")
    if len(key) != API_KEY_LENGTH:
        raise DataError(f"the Materials Project API key has {len(key)} characters; keys have {API_KEY_LENGTH} "
                        f"(check {API_KEY_ENV} or --api-key)")
    return key


def check_mp_api_version(installed: str) -> None:
    """:class:`DataError` naming ``installed`` unless it is in :data:`SUPPORTED_MP_API`."""
    parts = re.findall(r"\d+", installed)[:2]
    low, high = SUPPORTED_MP_API
    if len(parts) < 2 or not low <= (int(parts[0]), int(parts[1])) < high:
        raise DataError(f"mp-api {installed} is installed; dosmatgen works with mp-api >= {low[0]}.{low[1]}, "
                        f"< {high[0]}.{high[1]} (earlier releases read the DOS from another S3 layout): "
                        f"pip install 'mp-api>={low[0]}.{low[1]},<{high[0]}.{high[1]}'")


def _default_rester_factory(api_key: str) -> Any:
    import importlib.metadata

    try:
        installed = importlib.metadata.version("mp-api")
        from mp_api.client import MPRester
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        raise DataError("the Materials Project source needs the optional package mp-api: "
                        "pip install 'dosmatgen[mp]'") from exc
    check_mp_api_version(installed)
    return MPRester(api_key, endpoint=os.environ.get(ENDPOINT_ENV) or None, mute_progress_bars=True)


def _open_rester(api_key: str | None, rester_factory: Callable[[str], Any] | None) -> Any:
    key = resolve_api_key(api_key)
    factory = rester_factory or _default_rester_factory
    try:
        return factory(key)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - mp-api calls the server on construction
        kind = classify(exc)
        if kind == "auth":
            raise DataError(f"the Materials Project rejected the API key (HTTP {_status_code(exc)}); "
                            f"check {API_KEY_ENV}") from exc
        if kind == "unreachable":
            raise DataError(f"cannot reach the Materials Project API ({_short(exc)}); check the network "
                            "connection") from exc
        raise DataError(f"cannot start the Materials Project client: {_short(exc)}") from exc


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


def dos_task_ids(mpr: Any, material_ids: list[str], policy: RetryPolicy) -> dict[str, str | None]:
    """{material id: DOS task id, or None when its electronic-structure document has no DOS}; ids
    without an electronic-structure document are absent. One REST search for all of them."""
    docs = call_with_retries(
        lambda: mpr.materials.electronic_structure.search(material_ids=list(material_ids),
                                                          fields=["material_id", "dos"]),
        f"searching the electronic-structure documents of {len(material_ids)} material(s)", policy)
    out: dict[str, str | None] = {}
    for doc in docs or []:
        mid, dos = _doc_get(doc, "material_id"), _doc_get(doc, "dos")
        task = _doc_get(dos, "task_id") if dos is not None else None
        out[str(mid)] = None if task is None else str(task)
    return out


def complete_dos(mpr: Any, task_id: str, policy: RetryPolicy) -> Any:
    """The ``CompleteDos`` (site projections included) of one DOS calculation, from the Delta tables."""
    return call_with_retries(
        lambda: mpr.materials.electronic_structure_dos.get_dos_from_task_id(task_id, load_projections=True),
        f"reading the DOS of task {task_id}", policy, rest=False)


def list_dos_material_ids(mpr: Any, policy: RetryPolicy, max_sites: int | None = None) -> list[str]:
    """Ids of every material with a DOS (``has_props=["dos"]``), sorted, optionally ≤ ``max_sites``."""
    kwargs: dict[str, Any] = {"has_props": ["dos"], "fields": SUMMARY_FIELDS}
    if max_sites is not None:
        kwargs["num_sites"] = (1, int(max_sites))
    try:
        docs = call_with_retries(lambda: mpr.materials.summary.search(**kwargs), "listing materials with a DOS",
                                 policy)
    except (_PermanentFailure, _Pending) as exc:
        raise DataError(f"the Materials Project summary query failed ({exc}); rerun to try again") from exc
    return sorted({str(_doc_get(d, "material_id")) for d in docs if _doc_get(d, "material_id") is not None},
                  key=_id_sort_key)


def _id_sort_key(mid: str) -> tuple[str, int, str]:
    prefix, _, num = mid.rpartition("-")
    return (prefix, int(num), mid) if num.isdigit() else (mid, -1, mid)


@dataclass
class DownloadSummary:
    total: int
    done: int
    failed: int
    new_done: int
    new_failed: int
    shards: list[str]
    pending: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float | None:
        """Materials settled (converted or skipped) per second in this run."""
        n = self.new_done + self.new_failed
        return n / self.seconds if self.seconds > 0 and n else None

    def __str__(self) -> str:
        rate = f"; {self.rate:.3g} materials/s" if self.rate else ""
        pending = f", {self.pending} pending (rerun to complete them)" if self.pending else ""
        return (f"{self.done} of {self.total} materials converted ({self.new_done} new), "
                f"{self.failed} skipped ({self.new_failed} new){pending}, {len(self.shards)} shard(s){rate}")


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
                max_retries: int = 5, base_delay: float = 2.0, max_consecutive_pending: int = 3,
                rester_factory: Callable[[str], Any] | None = None,
                sleep: Callable[[float], None] = time.sleep, progress: bool = True) -> DownloadSummary:
    """Download and convert the MP DOS set into shards under ``out_dir`` (resumable; see the module
    docstring for what happens to each material).

    Args:
        limit: keep only the first ``limit`` ids (sorted by number) — for small runs.
        batch_size: materials per REST search and per shard; the ledger is updated after each.
        max_sites: only materials with at most this many sites.
        material_ids: fetch exactly these ids instead of querying the summary endpoint.
        required_points: energy-grid length a calculation must have (MP: 2001).
        min_interval, max_retries, base_delay: REST spacing and exponential backoff.
        max_consecutive_pending: after this many pending materials in a row, stop asking (an outage).
        rester_factory: ``api_key -> MPRester``-like object (tests pass stand-ins or fakes).

    Returns the summary; raises :class:`DataError` after writing everything when materials are
    left pending, so that a pipeline does not merge an incomplete download unknowingly.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    policy = RetryPolicy(max_retries=max_retries, base_delay=base_delay, min_interval=min_interval, sleep=sleep)
    ledger = _load_ledger(out)
    check_writable(out, "download folder")
    mpr = _open_rester(api_key, rester_factory)  # the folder is created by the first file written
    t0 = time.monotonic()
    fetcher = _BatchFetcher(mpr, policy, required_points, max_consecutive_pending)
    new_done = new_failed = 0
    try:
        ids = _material_ids(mpr, policy, out / "ids.json", material_ids, max_sites)[:limit]
        todo = [m for m in ids if m not in ledger["done"] and m not in ledger["failed"]]
        with tqdm(total=len(todo), desc="MP DOS", unit="material", disable=not progress) as bar:
            for start in range(0, len(todo), batch_size):
                fetched = fetcher.fetch(todo[start:start + batch_size], bar)
                if fetched is None:
                    continue
                records, failed = fetched
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
        _close(mpr)
    pending = fetcher.pending
    summary = DownloadSummary(total=len(ids), done=sum(1 for m in ids if m in ledger["done"]),
                              failed=sum(1 for m in ids if m in ledger["failed"]), new_done=new_done,
                              new_failed=new_failed, shards=list(ledger["shards"]), pending=len(pending),
                              seconds=time.monotonic() - t0)
    if pending:
        raise DataError(f"{summary}; {len(pending)} material(s) failed only temporarily (e.g. {pending[0]}: "
                        "a Delta/S3 read error, a timeout or HTTP 5xx) and are pending: rerun the same command "
                        "to fetch them")
    return summary


def _material_ids(mpr: Any, policy: RetryPolicy, ids_path: Path, material_ids: list[str] | None,
                  max_sites: int | None) -> list[str]:
    """The ids to fetch: ``material_ids`` when given, else the list in ``ids_path``, else the
    summary endpoint's (then saved to ``ids_path`` so that a resumed run asks for the same ones)."""
    if material_ids is not None:
        return list(dict.fromkeys(str(m) for m in material_ids))
    if ids_path.exists():
        try:
            return [str(m) for m in json.loads(ids_path.read_text())["ids"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{ids_path} is corrupt; delete it to query the ids again") from exc
    ids = list_dos_material_ids(mpr, policy, max_sites=max_sites)
    atomic_save_json(ids_path, {"ids": ids, "max_sites": max_sites, "queried": time.strftime("%Y-%m-%d")})
    return ids


@dataclass
class _BatchFetcher:
    """Fetches and converts the batches of :func:`download_mp`, keeping the materials left pending
    and how many were pending in a row (``max_in_a_row`` of them: an outage, stop asking)."""

    mpr: Any
    policy: RetryPolicy
    required_points: int | None
    max_in_a_row: int
    pending: list[str] = field(default_factory=list)
    in_a_row: int = 0

    def fetch(self, batch: list[str], bar: Any) -> tuple[list[CrystalRecord], dict[str, str]] | None:
        """The records and the reasons of permanent failures of ``batch`` (the rest is pending);
        None when the whole batch is left pending (an outage, or its search failed temporarily)."""
        if self.in_a_row >= self.max_in_a_row:  # an outage: leave the rest for the next run
            self.pending += batch
            return None
        try:
            tasks = dos_task_ids(self.mpr, batch, self.policy)
        except _Pending:
            self.pending += batch
            self.in_a_row += len(batch)
            bar.update(len(batch))
            return None
        records: list[CrystalRecord] = []
        failed: dict[str, str] = {}
        for mid in batch:
            bar.update(1)
            if self.in_a_row >= self.max_in_a_row:
                self.pending.append(mid)
                continue
            if mid not in tasks or tasks[mid] is None:
                failed[mid] = ("no electronic-structure document on the Materials Project" if mid not in tasks
                               else "its electronic-structure document has no DOS")
                continue
            try:
                records.append(record_from_complete_dos(
                    complete_dos(self.mpr, tasks[mid], self.policy), mid, required_points=self.required_points,
                    provenance={"material_id": mid, "dos_task_id": tasks[mid],
                                "retrieved": time.strftime("%Y-%m-%d")}))
            except ConversionSkipped as exc:
                failed[mid] = exc.reason
            except _PermanentFailure as exc:
                failed[mid] = str(exc)
            except _Pending:
                self.pending.append(mid)
                self.in_a_row += 1
                continue
            self.in_a_row = 0
        return records, failed


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


def fetch_mp_record(material_id: str, api_key: str | None = None, *,
                    required_points: int | None = MP_GRID_POINTS,
                    rester_factory: Callable[[str], Any] | None = None,
                    policy: RetryPolicy | None = None) -> CrystalRecord:
    """One MP material as a :class:`CrystalRecord` with its site DOS."""
    policy = policy or RetryPolicy()
    mpr = _open_rester(api_key, rester_factory)
    try:
        try:
            task = dos_task_ids(mpr, [material_id], policy).get(material_id, "")
            if not task:
                raise _PermanentFailure("no electronic-structure document" if task == "" else "no DOS in its "
                                        "electronic-structure document")
            cdos = complete_dos(mpr, task, policy)
        except _PermanentFailure as exc:
            raise DataError(f"no usable DOS for {material_id} on the Materials Project: {exc}") from exc
        except _Pending as exc:
            raise DataError(f"the DOS of {material_id} could not be read just now ({exc}); try again later") from exc
    finally:
        _close(mpr)
    return record_from_complete_dos(cdos, material_id, required_points=required_points,
                                    provenance={"material_id": material_id, "dos_task_id": task})


def fetch_mp_target(material_id: str, site_index: int | str, api_key: str | None = None, **kwargs: Any) -> np.ndarray:
    """(400,) DOS of one site of an MP material (e.g. the Ni site of Au3Ni, ``mp-976806``).

    ``site_index`` is a site number or an element symbol (first site of that element).
    """
    from dosmatgen.data.info import resolve_site_index

    rec = fetch_mp_record(material_id, api_key, **kwargs)
    assert rec.dos is not None
    return rec.dos[resolve_site_index(rec, site_index)].copy()
