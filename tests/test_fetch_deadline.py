"""A slow image URL cannot hold the server: one overall deadline per fetch, bounded fetches,
and `/v1/health` answers while slow fetches are pending (issue 18, item 5)."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

import lookalike
from lookalike.ingest import fetch
from lookalike.errors import BadRequest
from lookalike.ingest.fetch import Busy, UrlPolicy, fetch_url
from lookalike.server import create_app
from lookalike.testing.servers import serving

from slowhost import DrippingHost


@pytest.fixture(autouse=True)
def _restore_limits():
    saved = fetch._limits
    yield
    fetch._limits = saved


def test_a_dripping_host_fails_after_the_deadline_with_the_url_and_deadline_named():
    fetch.configure(deadline_s=1.5)
    with DrippingHost(interval=0.5) as host:
        started = time.monotonic()
        with pytest.raises(BadRequest) as info:
            fetch_url(host.url, policy=UrlPolicy("127.0.0.1"))  # three retries: the deadline covers them all
        took = time.monotonic() - started
    assert host.url in info.value.message and "deadline of 1.5 s" in info.value.message
    assert took < 10, f"the fetch took {took:.1f} s despite a 1.5 s deadline"


def test_the_deadline_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_URL_DEADLINE", "7.5")
    monkeypatch.setenv("LOOKALIKE_MAX_URL_FETCHES", "3")
    assert (fetch.FetchLimits.from_env().deadline_s, fetch.FetchLimits.from_env().max_fetches) == (7.5, 3)
    monkeypatch.setenv("LOOKALIKE_URL_DEADLINE", "soon")
    with pytest.raises(BadRequest, match="LOOKALIKE_URL_DEADLINE"):
        fetch.FetchLimits.from_env()


def test_fetches_beyond_the_slots_fail_fast_with_busy():
    fetch.configure(deadline_s=4, max_fetches=1, slot_wait_s=0.1)
    with DrippingHost(interval=0.5) as host:
        first = threading.Thread(target=lambda: pytest.raises(BadRequest, fetch_url, host.url))
        first.start()
        for _ in range(100):  # until the first fetch holds the only slot
            if host.connections:
                break
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(Busy) as info:
            fetch_url(host.url)
        assert time.monotonic() - started < 3
        assert info.value.status == 503 and info.value.retry_after >= 1
        first.join(20)


@pytest.fixture
def live(tmp_path):
    db = lookalike.connect(tmp_path / "data", allow_file=False)
    db.collection("c", create=True, model="none", dim=3).upsert([{"_id": "a", "_vector": [1, 0, 0]}])
    with serving(create_app(db)) as url:
        yield url
    db.close()


def _slow_searches(live: str, url: str, n: int, answers: list) -> list[threading.Thread]:
    def one() -> None:
        try:
            answers.append(httpx.post(live + "/v1/collections/c/search", json={"query": {"url": url}}, timeout=60))
        except httpx.HTTPError as exc:
            answers.append(exc)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_health_answers_while_slow_url_searches_fill_every_worker(live):
    """45 searches on a dripping URL (more than the 40 request threads) leave health answering."""
    fetch.configure(deadline_s=15, max_fetches=64, slot_wait_s=0.1)
    answers: list = []
    with DrippingHost(interval=1.0) as host:
        threads = _slow_searches(live, host.url, 45, answers)
        for _ in range(200):  # until the fetches are under way
            if host.connections >= 40:
                break
            time.sleep(0.05)
        health = httpx.get(live + "/v1/health", timeout=5)
        assert health.json() == {"status": "ok"}
        for t in threads:
            t.join(60)
    assert len(answers) == 45
    statuses = {a.status_code for a in answers if isinstance(a, httpx.Response)}
    assert statuses <= {400, 503}, statuses
    deadline_hits = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 400]
    assert deadline_hits and "deadline of 15 s" in deadline_hits[0].json()["error"]["message"]


def test_searches_beyond_the_fetch_slots_get_503_with_retry_after(live):
    fetch.configure(deadline_s=4, max_fetches=2, slot_wait_s=0.1)
    answers: list = []
    with DrippingHost(interval=0.5) as host:
        threads = _slow_searches(live, host.url, 6, answers)
        for t in threads:
            t.join(30)
    busy = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 503]
    assert len(busy) >= 3, [getattr(a, "status_code", a) for a in answers]
    assert int(busy[0].headers["retry-after"]) >= 1
    assert busy[0].json()["error"]["code"] == "unavailable"
    assert httpx.get(live + "/v1/health", timeout=5).status_code == 200
