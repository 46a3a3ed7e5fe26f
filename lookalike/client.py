"""`lookalike.Client`: the Python API over HTTP, one to one.

    db = lookalike.connect("DIR")                      # embedded
    db = lookalike.Client("http://host:8000", key=K)   # remote: the same calls, the same results

`Client` mirrors `Database` and `RemoteCollection` mirrors `Collection`: same method names,
arguments and return shapes. Local files (`_file` records, `{"file": path}` queries) are
read here and sent as base64, so code that works embedded works remote. A server error
raises the `lookalike.errors` class of its code (`NotFound`, `BadRequest`, ...), with the
server's message; parameters are checked locally first, so a bad call fails with the same
exception as embedded before anything is sent.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import quote

import httpx
import numpy as np

from .errors import ERRORS_BY_CODE, BadRequest, LookalikeError, TooLarge
from .ingest.fetch import read_file
from .query.arrays import check_array
from .query.evaluate import evaluate, evaluate_file
from .ingest.update import check_fields
from .query.keywords import DEFAULT_KEYWORD_WEIGHT, check_fusion
from .query.modifiers import split_query
from .query.regions import check_box, check_regions
from .query.search import check_min_score, check_query, parse_search
from .records import check_delete, check_id, resolve_file
from .store.base import CollectionSettings, check_collection_name
from .validation import check_int

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
#: Records per upsert request, and the most bytes of JSON one request carries.
UPSERT_BATCH, UPSERT_BYTES = 64, 8 * 1024 * 1024


def _error(response: httpx.Response) -> LookalikeError:
    """The `lookalike.errors` exception for an error answer (code from the contract's body)."""
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "", response.text[:500] or response.reason_phrase
    cls = ERRORS_BY_CODE.get(code, LookalikeError)
    exc = cls(message, code=code or None)
    exc.status = response.status_code
    return exc


def _segment(value: str) -> str:
    """A path segment that survives URL normalisation ('.', '..', '/', '?', '%' all escaped)."""
    return quote(value, safe="").replace(".", "%2E")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _plain_vectors(kind: str, value: Any) -> Any:
    """`vector`/`vectors` given as NumPy arrays (as the embedded API takes them) as JSON lists:
    float32 numbers as their exact doubles, so the server searches the same values bit for bit."""
    if type(value) is np.ndarray:
        check_array(value, 1 if kind == "vector" else 2, kind)
        return value.tolist()
    if kind == "vectors" and isinstance(value, list) and any(type(v) is np.ndarray for v in value):
        return [_plain_vectors("vector", v) for v in value]
    return value


def wire_query(query: Any) -> Any:
    """A query as the server takes it: local `file` paths and `image` bytes become `base64`,
    NumPy query vectors lists."""
    if isinstance(query, dict) and len(query) == 1:
        kind, value = next(iter(query.items()))
        if kind in ("vector", "vectors"):
            return {kind: _plain_vectors(kind, value)}
        if kind == "file":
            if not isinstance(value, (str, Path)):
                raise BadRequest("'file' must be a path")
            return {"base64": _b64(read_file(Path(value)))}
        if kind == "image":
            if not isinstance(value, (bytes, bytearray)):
                raise BadRequest("'image' must be the bytes of an image file")
            return {"base64": _b64(bytes(value))}
    return query


def wire_record(record: Any, base_dir: Path | None) -> Any:
    """A record as the server takes it: a local `_file` is read and sent as `_base64`."""
    if not isinstance(record, dict) or record.get("_file") is None:
        return record
    value = record["_file"]
    if not isinstance(value, str) or not value:
        raise BadRequest("'_file' must be a path string")
    if any(record.get(k) is not None for k in ("_url", "_base64", "_vector")):
        return record  # several sources: let the server name the problem
    out = {k: v for k, v in record.items() if k != "_file"}
    out["_base64"] = _b64(read_file(resolve_file(value, base_dir)))  # inside base_dir, as embedded
    return out


class Unreachable(LookalikeError):
    """The server could not be reached (refused, timed out, name unknown): no answer at all."""

    code, status = "unreachable", 503


class _Http(httpx.Client):
    """httpx.Client whose transport failures raise `Unreachable` naming the server's URL."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except httpx.TransportError as exc:
            server = f"{request.url.scheme}://{request.url.netloc.decode('ascii', 'replace')}"
            reason = str(exc) or type(exc).__name__
            raise Unreachable(f"cannot reach the lookalike server at {server} ({request.method} {request.url.path}): "
                              f"{reason}; is `lookalike serve` running there?") from exc


class Client:
    """A lookalike server, used like `lookalike.connect()`'s Database."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self._http = _Http(base_url=self.url + "/v1", headers=headers, timeout=timeout, transport=transport)

    # -- plumbing ------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the decoded JSON answer, or the error's `lookalike.errors` exception."""
        try:
            response = self._http.request(method, path, **kwargs)
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") in the body: no UTF-8 can carry it
            raise BadRequest("the request holds a lone surrogate (\\ud800-\\udfff without its pair): "
                             "not valid Unicode") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def health(self) -> dict:
        return self.request("GET", "/health")

    # -- Database ------------------------------------------------------------------------
    def collection(self, name: str, create: bool = False, **settings: Any) -> "RemoteCollection":
        """The named collection; with `create=True` made if missing (settings as in PUT)."""
        check_collection_name(name)
        if create:
            return self.ensure_collection(name, **settings)[0]
        self.request("GET", f"/collections/{name}")  # NotFound here, as the Python API answers
        return RemoteCollection(self, name)

    def ensure_collection(self, name: str, **settings: Any) -> tuple["RemoteCollection", bool]:
        """Create or update a collection; returns (collection, created)."""
        check_collection_name(name)
        given = {k: v for k, v in settings.items() if v is not None}
        response = self._http.put(f"/collections/{name}", json=given)
        if response.status_code >= 400:
            raise _error(response)
        return RemoteCollection(self, name), response.status_code == 201

    def collections(self) -> list[dict]:
        return self.request("GET", "/collections")["collections"]

    def drop(self, name: str) -> None:
        check_collection_name(name)
        self.request("DELETE", f"/collections/{name}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"lookalike.Client({self.url!r})"


class RemoteCollection:
    """A collection on a server, used like `lookalike.Collection`."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self._name = name
        self._path = f"/collections/{name}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def settings(self):
        return CollectionSettings.from_dict(self.info())

    def _post(self, route: str, body: dict) -> Any:
        return self.client.request("POST", f"{self._path}/{route}", json=body)

    # -- records -------------------------------------------------------------------------
    def upsert(self, records: Iterable[dict], *, base_dir: str | Path | None = None,
               batch_size: int = UPSERT_BATCH, on_batch: Callable[[list[dict]], None] | None = None) -> list[dict]:
        """Insert or update records; one result per record, in order (see the contract)."""
        return list(self.upsert_iter(records, base_dir=base_dir, batch_size=batch_size, on_batch=on_batch))

    def upsert_iter(self, records: Iterable[dict], *, base_dir: str | Path | None = None,
                    batch_size: int = UPSERT_BATCH,
                    on_batch: Callable[[list[dict]], None] | None = None) -> Iterator[dict]:
        """Like `upsert`, yielding results batch by batch (each batch is one request)."""
        check_int("batch_size", batch_size, 1, 100_000)
        base = Path(base_dir) if base_dir else None
        batch: list[Any] = []
        size = 0
        for record in records:
            item = self._prepare(record, base)
            batch.append(item)
            size += len(item[1]) if isinstance(item, tuple) else 0
            if len(batch) >= batch_size or size >= UPSERT_BYTES:
                yield from self._send(batch, on_batch)
                batch, size = [], 0
        if batch:
            yield from self._send(batch, on_batch)

    @staticmethod
    def _prepare(record: Any, base: Path | None) -> tuple[Any, str] | dict:
        """(record, its JSON) to send, or the error result of a record that cannot be sent."""
        try:
            wire = wire_record(record, base)
            text = json.dumps(wire, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")  # a lone surrogate: refused here, the rest of the batch is sent
            return wire, text
        except UnicodeEncodeError:
            return _error_result(record, "record holds a lone surrogate (\\ud800-\\udfff without its pair): "
                                         "not valid Unicode")
        except LookalikeError as exc:
            return _error_result(record, exc.message)
        except (TypeError, ValueError) as exc:
            return _error_result(record, f"record is not JSON: {exc}")

    def _send(self, batch: list[Any], on_batch: Callable[[list[dict]], None] | None) -> list[dict]:
        to_send = [item for item in batch if isinstance(item, tuple)]
        sent = iter(self._upsert_json([text for _, text in to_send]))
        results = [next(sent) if isinstance(item, tuple) else item for item in batch]
        if on_batch is not None:
            on_batch(results)
        return results

    def _upsert_json(self, texts: list[str]) -> list[dict]:
        """POST pre-encoded records; a batch over the server's size limit is split, a lone record fails alone."""
        if not texts:
            return []
        body = ('{"records":[' + ",".join(texts) + "]}").encode()
        try:
            return self.client.request("POST", f"{self._path}/records", content=body,
                                       headers={"Content-Type": "application/json"})["results"]
        except TooLarge as exc:
            if len(texts) == 1:
                record = json.loads(texts[0])
                return [_error_result(record, exc.message)]
            half = len(texts) // 2
            return self._upsert_json(texts[:half]) + self._upsert_json(texts[half:])

    def get(self, id: str) -> dict:
        """The stored record with its computed fields; NotFound if absent."""
        check_id(id)
        return self.client.request("GET", f"{self._path}/records/{_segment(id)}")

    def update(self, id: str, fields: dict) -> dict:
        """Change a record's metadata in place (`None` removes a field); the stored record back."""
        check_id(id)
        check_fields(fields)
        return self.client.request("PATCH", f"{self._path}/records/{_segment(id)}", json=fields)

    def delete(self, ids: Sequence[str] | str | None = None, *, filter: dict | None = None) -> int:
        """Delete by ids or by filter; returns how many records were deleted."""
        ids = check_delete(ids, filter)
        if ids is None:
            return self._post("records/delete", {"filter": filter})["deleted"]
        return self._post("records/delete", {"ids": ids})["deleted"]

    def count(self) -> int:
        return self.info()["count"]

    def info(self) -> dict:
        """Settings and stats, as `GET /v1/collections/{name}` returns them."""
        return self.client.request("GET", self._path)

    # -- search --------------------------------------------------------------------------
    def search(self, query: dict, k: int = 10, *, offset: int = 0, filter: dict | None = None,
               group_by: str | bool | None = None, negative: list[dict] | None = None,
               boost: list[dict] | None = None, fields: list[str] | None = None,
               negative_weight: float = 0.5, text: str | None = None, hybrid: float | None = None,
               same_label: bool = False, min_score: float | None = None, explain: bool = False,
               collapse: bool | dict | None = None, fusion: str = "rrf",
               keyword_weight: float = DEFAULT_KEYWORD_WEIGHT, regions: bool | int = False) -> dict:
        """Records most similar to the query, best first: `{"hits": [...], "took_ms": ...}` (and
        `"regions"` with `regions`). A query's `box` and `keywords` go to the server as they are."""
        anchor, extra = split_query(query)
        parse_search(anchor or {"text": "keywords"}, k=k, offset=offset, filter=filter, group_by=group_by,
                     negative=negative, boost=boost, fields=fields, negative_weight=negative_weight,
                     same_label=same_label, min_score=min_score, explain=explain, collapse=collapse)
        check_fusion(fusion, keyword_weight)
        check_regions(regions)
        if "box" in extra:
            check_box(extra["box"])
        body = _given(query={**(wire_query(anchor) if anchor else {}), **extra}, k=k, offset=offset, filter=filter,
                      group_by=group_by, negative=[wire_query(a) for a in negative] if negative else None,
                      boost=boost, fields=fields, negative_weight=negative_weight, text=text, hybrid=hybrid,
                      same_label=same_label or None, min_score=min_score, explain=explain or None,
                      collapse=collapse or None, fusion=None if fusion == "rrf" else fusion,
                      keyword_weight=None if keyword_weight == DEFAULT_KEYWORD_WEIGHT else keyword_weight,
                      regions=regions or None)
        return self._post("search", body)

    def search_image(self, data: bytes, k: int = 10, **params: Any) -> dict:
        """Search by an image's bytes through the multipart route (`/search/image`)."""
        files = {"image": ("image", bytes(data), "application/octet-stream")}
        form = {"params": json.dumps({"k": k, **params})}
        return self.client.request("POST", f"{self._path}/search/image", files=files, data=form)

    def recommend(self, id: str, k: int = 10, *, filter: dict | None = None, fields: list[str] | None = None,
                  offset: int = 0, group_by: str | bool | None = None, min_score: float | None = None,
                  explain: bool = False, collapse: bool | dict | None = None) -> dict:
        """Items that look like `id`, excluding it and the rest of its group."""
        parse_search({"id": id}, k=k, offset=offset, filter=filter, fields=fields, group_by=group_by,
                     min_score=min_score, explain=explain, collapse=collapse)
        if not isinstance(id, str):
            raise BadRequest("'id' must be a string")
        return self._post("recommend", _given(id=id, k=k, offset=offset, filter=filter, fields=fields,
                                              group_by=group_by, min_score=min_score, explain=explain or None,
                                              collapse=collapse or None))

    def rerank(self, ids: list[str], query: dict, *, fields: list[str] | None = None,
               min_score: float | None = None) -> dict:
        """The given ids sorted by similarity to the query; unknown ids listed in `missing`."""
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadRequest("'ids' must be a list of strings")
        check_int("number of ids", len(ids), 1, 10_000)
        check_query(query)
        check_min_score(min_score)
        return self._post("rerank", _given(ids=ids, query=wire_query(query), fields=fields, min_score=min_score))

    def match(self, query: dict, threshold: float | None = None, k: int = 10,
              fields: list[str] | None = None) -> dict:
        """Copies of an image (or of a record, `{"id": ...}`): hits with `_match` "exact" or "near"."""
        check_query(query)
        check_int("k", k, 1, 1000)
        return self._post("match", _given(query=wire_query(query), threshold=threshold, k=k, fields=fields))

    def duplicates(self, threshold: float | None = None) -> dict:
        """`{"clusters": [[id, ...], ...]}`: groups of records that are copies of each other."""
        return self._post("duplicates", _given(threshold=threshold))

    def duplicates_report(self, threshold: float | None = None) -> dict:
        """The copy clusters with a suggested keeper each (see `Collection.duplicates_report`)."""
        params = {} if threshold is None else {"threshold": threshold}
        return self.client.request("GET", f"{self._path}/duplicates/report", params=params)

    def tag(self, ids: list[str], fields: dict) -> dict:
        """Set metadata fields on records without re-embedding: `{"tagged": n, "missing": [...]}`."""
        return self._post("records/tag", {"ids": ids, "fields": fields})

    def resolve(self, keep: str, others: list[str], action: str = "delete", fields: dict | None = None) -> dict:
        """Keep one record of a copy cluster; delete or tag the others (admin key)."""
        return self._post("duplicates/resolve", _given(keep=keep, others=others, action=action, fields=fields))

    def tune(self, field: str | None = None, *, groups: bool = False, reset: bool = False) -> dict:
        """Learn from a field's values which records are alike (admin key; see `Collection.tune`)."""
        return self._post("tune", {"field": field, "groups": groups, "reset": reset})

    def evaluate(self, truth: str | Path | list[dict] | None = None, k: int = 10, *, holdout: bool = False) -> dict:
        """Search quality against a golden set, the searches running on the server (see `lookalike.query.evaluate`).
        `holdout` needs the tune's held-out values, kept in the data folder: use the CLI there."""
        if holdout or truth is None:
            raise BadRequest("evaluate(holdout=True) reads the tune's held-out values from the data folder: run "
                             "`lookalike eval --holdout` where the data is")
        if isinstance(truth, (str, Path)):
            return evaluate_file(self, Path(truth), k=k)
        return evaluate(self, truth, k=k)

    # -- browsing (the web page's read routes) --------------------------------------------
    def records(self, *, offset: int = 0, limit: int = 50, filter: dict | None = None,
                fields: list[str] | None = None) -> dict:
        """A page of records in write order: `{"records", "total", "offset", "limit"}`."""
        params = _given(offset=offset, limit=limit, filter=json.dumps(filter) if filter is not None else None,
                        fields=json.dumps(fields) if fields is not None else None)
        return self.client.request("GET", f"{self._path}/records", params=params)

    def facets(self, *, filter: dict | None = None, top: int = 20) -> dict:
        """Metadata values with counts and numeric ranges, for building filters."""
        params = _given(top=top, filter=json.dumps(filter) if filter is not None else None)
        return self.client.request("GET", f"{self._path}/facets", params=params)

    def thumbnail(self, id: str) -> bytes:
        """The small JPEG the server kept for a record (NotFound when none was kept)."""
        check_id(id)
        response = self.client._http.get(f"{self._path}/records/{_segment(id)}/thumbnail")
        if response.status_code >= 400:
            raise _error(response)
        return response.content

    def __repr__(self) -> str:
        return f"RemoteCollection({self.client.url!r}, {self._name!r})"


def _given(**params: Any) -> dict:
    """The parameters that were given (None means "not given", as in the embedded API)."""
    return {k: v for k, v in params.items() if v is not None}


def _error_result(record: Any, message: str) -> dict:
    rid = record.get("_id") if isinstance(record, dict) else None
    return {"_id": rid if isinstance(rid, str) else None, "status": "error", "error": message}
