"""The encoder and the store run in worker threads, never on the event loop.

An in-process uvicorn server whose image encoding is made to block on an event: while one
request sits inside the encoder, other requests (health, searches, writes) still answer.
If encoding ran on the event loop, they would hang and the test would time out.
"""
from __future__ import annotations

import base64
import threading

import httpx
import numpy as np
import pytest

import lookalike
from lookalike.query.engine import Searcher
from lookalike.server import create_app
from lookalike.testing.servers import serving



@pytest.fixture
def live(tmp_path):
    db = lookalike.connect(tmp_path / "data", allow_file=False)
    col = db.collection("c", create=True, model="none", dim=3)
    col.upsert([{"_id": "a", "_vector": [1, 0, 0]}, {"_id": "b", "_vector": [0, 1, 0]}])
    with serving(create_app(db)) as url:
        yield url
    db.close()


def test_requests_answer_while_the_encoder_is_busy(live, monkeypatch) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_embed(self, data: bytes) -> np.ndarray:
        entered.set()
        assert release.wait(60), "never released"
        return np.array([1, 0, 0], dtype=np.float32)
    monkeypatch.setattr(Searcher, "embed_image", slow_embed)
    outcome: dict = {}

    def image_search() -> None:
        body = {"query": {"base64": base64.b64encode(b"pretend image").decode()}, "k": 1}
        outcome["r"] = httpx.post(live + "/v1/collections/c/search", json=body, timeout=60)
    thread = threading.Thread(target=image_search)
    thread.start()
    try:
        assert entered.wait(30), "the search never reached the encoder"
        with httpx.Client(base_url=live + "/v1", timeout=20) as c:  # would time out on a blocked loop
            assert c.get("/health").json() == {"status": "ok"}
            assert c.post("/collections/c/search", json={"query": {"id": "a"}}).json()["hits"][0]["_id"] == "b"
            added = c.post("/collections/c/records", json={"records": [{"_id": "n", "_vector": [1, 1, 0]}]})
            assert added.json()["results"] == [{"_id": "n", "status": "inserted"}]
            assert c.get("/collections/c").json()["count"] == 3
        assert "r" not in outcome, "the image search is still inside the encoder"
    finally:
        release.set()
        thread.join(60)
    assert outcome["r"].status_code == 200
    assert outcome["r"].json()["hits"][0]["_id"] == "a"
