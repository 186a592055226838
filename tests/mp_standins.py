"""Loopback stand-ins for the Materials Project, for running the REAL ``mp-api`` client offline.

- :class:`RestStandIn`: the REST API on 127.0.0.1 (``/heartbeat``, ``/materials/summary/``,
  ``/materials/electronic_structure/``), answering as the real API does (``{"data", "meta"}``,
  ``_limit``/``_skip`` paging), with switches for a 429 storm, a key check (401) and a hook called
  on every electronic-structure search.
- :class:`S3StandIn`: ``moto``'s S3 server in its own memory-capped process, which can be stopped
  and started again (an outage: connections refused), holding the two Delta-Lake tables the
  client reads (``materialsproject-parsed/core/electronic-structure/{total,projected}-dos``) in
  emmet's row layout, objects public-read because the client reads unsigned.
- :func:`real_documents`: the real MP documents of ``tests/fixtures/mp_documents`` as
  ``{material_id: (dos task id, CompleteDos)}``.

Every process and thread is stopped by ``close()`` (the fixtures use them as context managers).
"""

from __future__ import annotations

import gzip
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

MP_DOCUMENTS = Path(__file__).resolve().parent / "fixtures" / "mp_documents"
BUCKET = "materialsproject-parsed"
TOTAL_DOS = "core/electronic-structure/total-dos"
PROJECTED_DOS = "core/electronic-structure/projected-dos"
#: Memory cap of the moto process (it grew past 20 GB once in-process).
MOTO_MEMORY_BYTES = 4 << 30


def _load(name: str) -> Any:
    return json.loads(gzip.open(MP_DOCUMENTS / name).read())


def real_documents() -> dict[str, tuple[str, Any]]:
    """{material id: (DOS task id, CompleteDos)} of the real documents. The task id of TaZnCo2 is
    not in its file; ``mp-865805-dos`` stands in for it."""
    from pymatgen.electronic_structure.dos import CompleteDos

    docs = {"mp-13": ("mp-1671247", CompleteDos.from_dict(_load("emmet_Fe_dos.json.gz"))),
            "mp-865805": ("mp-9865805", CompleteDos.from_dict(_load("dos-spin-polarization-mp-865805.json.gz")))}
    by_task = {d["task_id"]: CompleteDos.from_dict(d["data"]) for d in _load("emmet_es_dos_objs.json.gz")}
    docs["mp-149"] = ("mp-1686587", by_task["mp-1686587"])
    docs["mp-25375"] = ("mp-823888", by_task["mp-823888"])
    return docs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- REST ------------------------------------------------------------------------------------------
class RestStandIn:
    """The MP REST API for the client: summary docs and electronic-structure docs.

    ``summary``: list of summary documents; ``es``: {material id: DOS task id or None}.
    Switches: ``storm`` (every search answers 429 with Retry-After 0), ``key`` (a request whose
    ``x-api-key`` differs gets 401), ``on_es_search(material_ids)`` (called before answering).
    """

    def __init__(self, summary: list[dict], es: dict[str, str | None]):
        self.summary, self.es = summary, es
        self.storm = False
        self.key: str | None = None
        self.on_es_search: Callable[[list[str]], None] | None = None
        self.requests: list[tuple[str, dict]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                stand_in.requests.append((url.path, query))
                status, body, headers = stand_in.answer(url.path, query, self.headers.get("x-api-key"))
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def answer(self, path: str, query: dict[str, str], key: str | None) -> tuple[int, Any, dict]:
        if path.endswith("/heartbeat"):
            return 200, {"db_version": "2025_09_25", "access_controlled_batch_ids": [], "version": "0.87.3"}, {}
        if self.key is not None and key != self.key:
            return 401, {"detail": "Invalid API key"}, {}
        if self.storm:
            return 429, {"detail": "Too many requests"}, {"Retry-After": "0"}
        limit, skip = int(query.get("_limit", 1000)), int(query.get("_skip", 0))
        if path.endswith("/materials/summary/"):
            docs = self.summary
        elif path.endswith("/materials/electronic_structure/"):
            ids = [m for m in query.get("material_ids", "").split(",") if m]
            if self.on_es_search is not None:
                self.on_es_search(ids)
            docs = [{"material_id": m, "dos": None if self.es[m] is None else {"task_id": self.es[m]}}
                    for m in ids if m in self.es]
        else:
            return 404, {"detail": f"no route {path}"}, {}
        return 200, {"data": docs[skip:skip + limit], "meta": {"total_doc": len(docs)}}, {}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "RestStandIn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---- S3 ----------------------------------------------------------------------------------------------
def _cap_memory() -> None:
    """In the moto child before exec: cap its memory, and on Linux have it killed when the test
    process dies (so an interrupted test run leaves no server behind)."""
    resource.setrlimit(resource.RLIMIT_AS, (MOTO_MEMORY_BYTES, MOTO_MEMORY_BYTES))
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _row_without_nulls(obj: Any) -> Any:
    """Delta Lake has no column type for all-null values: drop None / {} entries."""
    if isinstance(obj, dict):
        return {k: _row_without_nulls(v) for k, v in obj.items() if v is not None and v != {}}
    if isinstance(obj, list):
        return [_row_without_nulls(v) for v in obj]
    return obj


class S3StandIn:
    """moto's S3 server (own process, memory-capped) with the DOS tables of ``documents``
    ({material id: (task id, CompleteDos)}). ``url`` is what the client's ``AWS_ENDPOINT_URL``
    must be. ``outage(True)`` stops the server (connections refused), ``outage(False)`` starts it
    again on the same port with the same tables."""

    def __init__(self, documents: dict[str, tuple[str, Any]], startup_timeout: float = 30.0):
        self.documents, self.startup_timeout = documents, startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                         str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_cap_memory)
        try:
            self._wait(self.startup_timeout)
            self._write_tables(self.documents)
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="x", aws_secret_access_key="x",
                            region_name="us-east-1")

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError("moto's S3 server exited at start")
            try:
                self._client().list_buckets()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)

    def _write_tables(self, documents: dict[str, tuple[str, Any]]) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake
        from emmet.core.band_theory import ElectronicDos
        from emmet.core.mpid import AlphaID
        from emmet.core.vasp.calc_types import RunType

        s3 = self._client()
        s3.create_bucket(Bucket=BUCKET)
        totals, projections = [], []
        for task_id, cdos in documents.values():
            identifier = str(AlphaID(task_id.split("-")[-1], padlen=8))
            row = ElectronicDos.from_pmg(cdos, identifier=identifier, run_type=RunType("GGA")).model_dump(mode="json")
            projections.append({"identifier": identifier, **_row_without_nulls(row.pop("projected_densities"))})
            totals.append(_row_without_nulls(row))
        options = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                   "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
        for prefix, rows in ((TOTAL_DOS, totals), (PROJECTED_DOS, projections)):
            write_deltalake(f"s3://{BUCKET}/{prefix}", pa.Table.from_pylist(rows), storage_options=options)
        for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]:
            s3.put_object_acl(Bucket=BUCKET, Key=obj["Key"], ACL="public-read")

    def outage(self, down: bool) -> None:
        if down:
            self._stop()
        elif self.process is None:
            self._start()

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> "S3StandIn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
