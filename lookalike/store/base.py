"""The store interface: collections of records with vectors, behind which backends differ.

`EmbeddedStore` (SQLite + memory-mapped vectors, the default) and external backends
(Milvus) implement it; everything above (`Collection`, the CLI, the server) only talks to
this interface, so the same code runs on a laptop and on a cluster.
"""
from __future__ import annotations

import dataclasses
import re
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from ..errors import BadRequest
from ..index.settings import normalize_compression, normalize_index
from .filters import MATCH_ALL, Node
from ..models.registry import DEFAULT_MODEL
from ..records import COMPUTED
from ..validation import MAX_DIM, is_int

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
METRICS = ("cosine", "dot")
# Widths known without loading the model (1280 pooled features, plus with -style two statistics per
# channel of one mid block: 112 channels in Lite0, 120 in Lite2); other models are asked.
KNOWN_DIMS = {"efficientnet-lite0": 1280, "efficientnet-lite1": 1280, "efficientnet-lite2": 1280,
              "efficientnet-lite0-gem": 1280, "efficientnet-lite0-style": 1504, "efficientnet-lite0-gem-style": 1504}


def check_collection_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: "$" would allow "name\n"
        raise BadRequest(f"invalid collection name {name!r}: use 1-64 of a-z, 0-9, '_' and '-', "
                         "starting with a letter or digit")
    return name


@dataclass
class CollectionSettings:
    """What `PUT /v1/collections/{name}` sets; stored with the collection."""

    name: str
    model: str = DEFAULT_MODEL
    dim: int | None = None
    metric: str = "cosine"
    group_field: str | None = None
    text_fields: list[str] = field(default_factory=list)
    boosts: list[dict] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    index: dict = field(default_factory=dict)  # see lookalike.index.settings (defaults filled in)
    compression: dict = field(default_factory=dict)
    thumbnails: bool = True  # keep a small JPEG per record made from a file/base64 (for the web page)
    compound: dict = field(default_factory=dict)  # per-part weights of image/text/attributes (query/text_search.py)
    tuning: dict = field(default_factory=dict)  # a learned map of the model vectors, see query/tune.py ({} = untuned)

    def __post_init__(self) -> None:
        self.index = normalize_index(self.index)
        self.compression = normalize_compression(self.compression, self.dim)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CollectionSettings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class StoredRecord:
    """One record ready to write: metadata, engine-computed fields and its vector."""

    id: str
    doc: dict
    computed: dict
    vector: np.ndarray
    source_hash: str
    content_hash: str
    thumbnail: bytes | None = None  # small JPEG to keep; None keeps the stored one, b"" removes it
    text_vector: np.ndarray | None = None  # sentence embedding of text_fields + labels (collections with text_fields)


@dataclass
class Hit:
    id: str
    score: float
    group: Any = None


@dataclass
class SearchRequest:
    """A resolved query: the vector to score by and everything that shapes the ranking."""

    vector: np.ndarray
    k: int = 10
    offset: int = 0
    where: Node = MATCH_ALL
    group_by: str | None = None
    exclude: Sequence[str] = ()
    boosts: Sequence[tuple[Node, float]] = ()
    #: Precomputed scores by slot (colour search, near-duplicates) used instead of `vector`;
    #: slots past its end or with a non-finite score are never hits. Backends with `postings`.
    slot_scores: np.ndarray | None = None


def plan_write(records: Sequence[StoredRecord], current: dict[str, tuple[str, str]]
               ) -> tuple[list[str], list[StoredRecord]]:
    """Statuses per record and the records to write, given the stored `{id: (content_hash, ...)}`.

    Unchanged content is skipped; the last write of an id in a batch wins.
    """
    statuses: list[str] = []
    changed: dict[str, StoredRecord] = {}
    for rec in records:
        old = current.get(rec.id)
        if rec.id in changed:
            statuses.append("updated")
        elif old is not None and old[0] == rec.content_hash:
            statuses.append("unchanged")
            continue
        else:
            statuses.append("updated" if old is not None else "inserted")
        changed[rec.id] = rec
    return statuses, list(changed.values())


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers beyond the core contract; callers check these flags.

    `thumbnails`: `thumbnail()` gives the JPEG kept per record; `compaction`: `compact()`
    reclaims the rows of deleted and replaced records; `tuning`: `set_tuning()` searches in a
    learned space while keeping the raw model vectors; `max_dim`: the widest vector a
    collection may have (`validation.MAX_DIM`, or the backend's own lower limit).
    """

    thumbnails: bool = False
    compaction: bool = False
    max_dim: int = MAX_DIM
    tuning: bool = False  # `set_tuning()` maps stored vectors through a learned transform (query/tune.py)
    keywords: bool = False  # `keyword_scores()` ranks by BM25 over ids and text_fields (query/keywords.py)


class CollectionStore(ABC):
    """Records, metadata and vectors of one collection."""

    settings: CollectionSettings
    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def hashes(self, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """`{id: (content_hash, source_hash)}` for the ids that exist."""

    @abstractmethod
    def write(self, records: Sequence[StoredRecord]) -> list[str]:
        """Upsert; returns inserted/updated/unchanged per record. Durable once it returns."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[dict | None]:
        """Stored records (metadata plus computed fields), None for unknown ids."""

    @abstractmethod
    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the ids that exist, in the space searches use (tuned, if tuned)."""

    def raw_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The model's own vectors of the ids that exist (what updates keep and tunes learn from)."""
        return self.vectors(ids)

    @property
    def transform(self):
        """The collection's learned `store.transform.Transform`, or None (untuned)."""
        return None

    def raw_all_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every live id and its model vector (tunes learn from these)."""
        return self.all_vectors()

    def set_tuning(self, tuning: dict) -> CollectionSettings:
        """Store `tuning` (a settings dict with a `transform`, or {} for none) and move every search,
        the ANN index included, into its space. Only for backends whose capabilities say `tuning`."""
        raise NotImplementedError(f"{type(self).__name__} cannot tune")

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; returns how many existed."""

    @abstractmethod
    def ids_where(self, where: Node) -> list[str]:
        """Ids of the records matching a filter."""

    @abstractmethod
    def search(self, request: SearchRequest) -> list[Hit]:
        """Best hits for a query vector, best first, after filter, boosts and grouping."""

    def search_docs(self, request: SearchRequest) -> tuple[list[str], list[float], list[dict | None]]:
        """The ids and scores of `search`'s hits and their stored documents (None: deleted since
        the ranking), as `get` gives them; backends that can find both at once override this.
        The caller reads the documents and never changes them (they may be shared: a cache's
        own, or one dict for an id found by several rows of `search_many_docs`)."""
        hits = self.search(request)
        ids = [hit.id for hit in hits]
        return ids, [hit.score for hit in hits], self.get(ids)

    def search_many(self, vectors: np.ndarray, request: SearchRequest) -> list[list[Hit]]:
        """`search` for each row of `vectors` with the rest of `request` (backends with a batch
        search override this; the results are the same)."""
        return [self.search(dataclasses.replace(request, vector=v)) for v in vectors]

    def search_many_docs(self, vectors: np.ndarray, request: SearchRequest
                         ) -> list[tuple[list[str], list[float], list[dict | None]]]:
        """`search_docs` for each row of `vectors`: `search_many`, and one `get` for the batch."""
        found = self.search_many(vectors, request)
        unique = list(dict.fromkeys(hit.id for hits in found for hit in hits))
        docs = dict(zip(unique, self.get(unique)))
        return [([hit.id for hit in hits], [hit.score for hit in hits], [docs[hit.id] for hit in hits])
                for hits in found]

    @abstractmethod
    def scores(self, vector: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        """Similarity of each known id to `vector` (for re-ranking)."""

    @abstractmethod
    def all_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every live id and its vector (for whole-collection analyses such as duplicates)."""

    @abstractmethod
    def postings(self, path: str) -> tuple[np.ndarray, np.ndarray, list]:
        """(slots, value ids, distinct `(tag, value)` keys) of one field path, computed fields
        included, for columnar scans (colour search, near-duplicates). Slots may be dead."""

    @abstractmethod
    def hybrid_scores(self, vector: np.ndarray | None, text: np.ndarray | None, text_weight: float) -> np.ndarray:
        """Per slot (for `SearchRequest.slot_scores`): (1 - w) * visual + w * text similarity."""

    @abstractmethod
    def text_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stacked text vectors of those ids that have one."""

    def text_vector_map(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """{id: text vector} for the ids that have one (exports keep them; backends batch this)."""
        out = {}
        for rid in ids:
            found = self.text_vectors([rid])
            if len(found):
                out[rid] = found[0]
        return out

    def stats(self) -> dict:
        """Backend-specific figures for `GET /v1/collections/{name}`."""
        return {}

    def export(self, batch_size: int = 1000) -> Iterator[list[StoredRecord]]:
        """Every record with its model (raw) vector, in batches (backends override this with a snapshot)."""
        ids, matrix = self.raw_all_vectors()
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            docs, hashes = self.get(chunk), self.hashes(chunk)
            texts = self.text_vector_map(chunk) if self.settings.text_fields else {}
            batch = []
            for rid, doc, vec in zip(chunk, docs, matrix[start:start + batch_size]):
                if doc is None or rid not in hashes:
                    continue  # deleted meanwhile
                computed = {k: doc.pop(k) for k in COMPUTED if k in doc}
                batch.append(StoredRecord(rid, doc, computed, np.asarray(vec), hashes[rid][1], hashes[rid][0],
                                          text_vector=texts.get(rid)))
            yield batch

    def keyword_scores(self, keywords: str) -> np.ndarray:
        """Per slot (for `SearchRequest.slot_scores`): BM25 of the keywords over the record's id and
        `text_fields`, NaN where it does not match. Only for backends whose capabilities say `keywords`."""
        raise NotImplementedError(f"{type(self).__name__} has no keyword index")

    def thumbnail(self, id: str) -> bytes | None:
        """The small JPEG kept for a record, or None. Only for backends whose capabilities say
        `thumbnails` (callers check)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no thumbnails")

    def thumbnails(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The kept thumbnails of many records by id (those without one left out): `thumbnail`
        for each, unless the backend reads them in fewer round trips."""
        found = {rid: self.thumbnail(rid) for rid in ids}
        return {rid: data for rid, data in found.items() if data is not None}

    def compact(self) -> None:
        """Reclaim the rows of deleted and replaced records. Only for backends whose capabilities
        say `compaction` (callers check)."""
        raise NotImplementedError(f"{type(self).__name__} has no compaction")

    def list_ids(self, where: Node = MATCH_ALL, *, offset: int = 0, limit: int = 50) -> tuple[list[str], int]:
        """A page of live ids matching a filter in a stable order, and how many match in all.

        This default pages over `ids_where`; backends with a cheaper way override it.
        """
        ids = self.ids_where(where)
        return list(ids[offset:offset + limit]), len(ids)

    @abstractmethod
    def facets(self, where: Node = MATCH_ALL, *, top: int = 20) -> list[dict]:
        """Per metadata path: string/boolean values with counts, numeric min/max (see Collection.facets)."""

    def facets_and_count(self, where: Node = MATCH_ALL, *, top: int = 20) -> tuple[list[dict], int]:
        """`facets` and how many live records match `where`; backends that can answer both from
        one state override this, so the count never disagrees with the facets beside it."""
        count = self.count() if where is MATCH_ALL else len(self.ids_where(where))
        return self.facets(where, top=top), count

    @abstractmethod
    def update_settings(self, **changes: Any) -> CollectionSettings:
        """Store changed settings; returns the merged settings."""


class Store(ABC):
    """A set of named collections."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The backend's name in messages.
    backend: ClassVar[str] = "this"

    def settle_dim(self, settings: CollectionSettings) -> None:
        """Fill in the vector width of a known model; BadRequest if it is missing or too wide."""
        if settings.dim is None:
            settings.dim = KNOWN_DIMS.get(settings.model)
        high = self.capabilities.max_dim
        if not is_int(settings.dim) or not 1 <= settings.dim <= high:
            limit = "" if high == MAX_DIM else f" ({self.backend}'s limit)"
            raise BadRequest(f"collection {settings.name!r} needs a vector dimension 'dim' between 1 and {high}{limit}")

    @abstractmethod
    def list_collections(self) -> list[CollectionSettings]: ...

    @abstractmethod
    def create_collection(self, settings: CollectionSettings) -> CollectionStore: ...

    @abstractmethod
    def collection(self, name: str) -> CollectionStore:
        """The collection, or NotFound."""

    @abstractmethod
    def drop_collection(self, name: str) -> None: ...

    def close(self) -> None:
        """Release files and connections."""
