"""Planning one search: exact or the index (HNSW/IVF), and how wide the index looks.

Planning: exact search (the reference) whenever the live or matching records number at
most `threshold` (settings.exact_threshold: by dimension unless set), so selective filters
scan just their matches; otherwise HNSW with the filter applied inside the graph walk,
widening its beam until k matches are found, and falling back to exact search if the
graph still cannot produce them. IVF is planned the
same way, with `nprobe` (lists scanned) in place of the beam width. What was chosen for the
last search on this thread is in `last_plan()` (benchmarks replay it on the raw library).

The rules every index kind shares are here; what differs by kind (the base width, the
least width, whether a filter is worth the index) are the index classes' `base_width`,
`fit_width` and `worth` (ann.py), which use the thresholds below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from .base import AnnIndex
from .settings import exact_threshold

if TYPE_CHECKING:
    from .calibrate import Calibration

#: An IVF search scans at least this many matching codes (nprobe grows for rare filters):
#: measured at 5M rows, 5 600 scanned matches (10 % filter) gave recall@10 0.994, 143
#: (0.1 % filter, nprobe x8) only 0.77.
IVF_MIN_MATCHES = 2000
#: Scanning one int8 IVF code costs about a tenth of gathering and scoring one float32 row,
#: so a filter is scanned exactly when the IVF would scan over 10x as many codes as it matches.
IVF_CODE_COST = 0.1
#: A filtered HNSW walk still steps through non-matching nodes, so a rare filter leaves too few
#: matches in the beam however wide it is: below this share of the graph, exact search over the
#: matches. Measured with bench-style clustered data, 300k rows, widened beam, recall@10:
#: share 1/10 0.999, 1/32 0.994, 1/64 0.789, 1/128 0.531, 1/300 0.275 (the 5M run's 0.1 %
#: filter: 0.335); exact is always 1.0 and costs about 0.12 us per matching row.
HNSW_MIN_SHARE = 1 / 32
#: `expansion_search` is the beam for graphs up to HNSW_SCALE_ROWS nodes; bigger graphs need a
#: wider one for the same recall. bench/hnsw_scale.py at 5M clustered rows (int8, M=16, 20
#: candidates re-scored), recall@10 by efSearch: 64 0.837, 128 0.909, 192 0.952, 256 0.966,
#: 384 0.981 (at 1M, 64 gives 0.977). The beam grows by (rows / 1M) ** 0.85: 251 at 5M.
HNSW_SCALE_ROWS, HNSW_SCALE_POWER = 1_000_000, 0.85


@dataclass
class Plan:
    """How one search was answered: `exact`, `hnsw` or `ivf`; for the index, the widths
    tried (efSearch or nprobe, the last one answered), the candidates asked for, whether a
    filter selector was passed; `matching` allowed slots; `fallback` when the index fell
    short and exact search answered."""
    kind: str = "exact"
    widths: list[int] = field(default_factory=list)
    pool: int = 0
    filtered: bool = False
    matching: int = 0
    fallback: bool = False


#: Widest candidate pool a boosted or grouped search takes from the index (`candidate_pools`).
ANN_POOL_MAX = 4096


def uses_ann(ann: AnnIndex | None, settings: dict, matching: int, live: int,
             calibration: "Calibration | None" = None, width_of: Callable[[int, int], int] | None = None) -> bool:
    """The index (HNSW/IVF) for this many candidate records? (Otherwise exact is as fast, and exact.)

    A filter (fewer matches than live records) is scanned exactly up to the smaller of
    `filter_threshold` and `threshold`; the whole collection up to `threshold` (when null,
    `exact_threshold` chooses it by the vectors' dimension). Past that
    the index kind decides (`worth`): an IVF leaves to exact search the rare filters whose
    widened nprobe would scan more than 10x as many codes as there are matches; an HNSW
    those keeping less than HNSW_MIN_SHARE of its nodes. `width_of(in_count, pool)`, if
    given, is `width` for this index, settings and calibration (the caller's kept answers).
    """
    if ann is None:
        return False
    limit = exact_threshold(settings, ann.dim)
    if matching < live:
        limit = min(limit, settings["filter_threshold"])
    if matching <= limit:
        return False
    wide = width_of(matching, 0) if width_of is not None else width(ann, settings, matching, 0, calibration)
    return ann.worth(matching, wide)


def width(ann: AnnIndex, settings: dict, in_count: int, pool: int,
          calibration: "Calibration | None" = None) -> int:
    """efSearch (HNSW) or nprobe (IVF) for a search where `in_count` of the indexed rows may be returned.

    With a `calibration` (calibrate.py: the narrowest widths that met `target_recall` on this
    index, per filter share) its width; without one (not measured yet, or `target_recall`
    null) the configured `expansion_search` / `nprobe`, widened for filters: non-matching
    nodes still fill an HNSW beam, so a filter keeping a share s of the graph
    gets a beam sqrt(1/s) times wider (at most 8x): measured on 10 % filters, recall@10
    goes from 0.89 at the plain width to 0.99. In an IVF a filter's best matches lie
    further out, among more lists: nprobe widens by the same factor.
    """
    total = ann.ntotal
    if calibration is not None and calibration.beams:
        return min(ann.fit_width(calibration.wide(in_count, total), in_count, pool), ann.max_width)
    wide = ann.base_width(settings)
    if 0 < in_count < total:
        wide = int(wide * min(8.0, (total / in_count) ** 0.5))
    return min(ann.fit_width(wide, in_count, pool), ann.max_width)


def candidate_pools(need: int, matching: int) -> Iterator[int]:
    """Candidate pools for a boosted or grouped search over the index: from max(4 x need, 40),
    4x wider each time, while under half the matching rows and ANN_POOL_MAX; beyond, exact search."""
    pool = max(4 * need, 40)
    while pool <= min(matching // 2, ANN_POOL_MAX):
        yield pool
        pool *= 4


def widen(ann: AnnIndex, current: int) -> int:
    """The next width to try when a filtered search came back short of k."""
    return min(current * 4, ann.max_width)


def pool(ann: AnnIndex, k: int) -> int:
    """Candidates to fetch: re-scored exactly afterwards, so lossy codes get a margin."""
    if ann.pca is not None:
        return max(4 * k, 40)  # reduced dimensions blur near ties most
    return 2 * k if ann.compressed else k
