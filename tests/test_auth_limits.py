"""Wrong API keys are rate limited per client address and per key: 429 with Retry-After
(issue 18, item 8). The window is driven by an injected clock, not by sleeping."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import lookalike
from lookalike.server import create_app
from lookalike.server.guard import AuthFailures
from lookalike.server.run import key_warnings

ADMIN, SEARCH = "admin-key-0123456789", "search-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path):
    db = lookalike.connect(tmp_path / "data", allow_file=False)
    db.collection("c", create=True, model="none", dim=3)
    clock = Clock()
    app = create_app(db, admin_key=ADMIN, search_key=SEARCH,
                     auth_failures=AuthFailures(limit=3, window_s=60, clock=clock))
    yield app, clock
    db.close()


def client(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000))


def get(c: TestClient, key: str):
    return c.get("/v1/collections", headers={"Authorization": f"Bearer {key}"})


def test_repeated_wrong_keys_get_429_with_retry_after_then_the_window_resets(setup):
    app, clock = setup
    attacker = client(app, "203.0.113.5")
    assert [get(attacker, f"guess-{i}").status_code for i in range(3)] == [401, 401, 401]
    clock.now += 10
    blocked = get(attacker, "guess-3")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_requests"
    assert int(blocked.headers["retry-after"]) == 50  # the first failure leaves the window at +60 s
    assert get(attacker, SEARCH).status_code == 429  # no key is checked from a blocked address
    assert get(client(app, "198.51.100.7"), SEARCH).status_code == 200  # another address is unaffected
    clock.now += 51
    assert get(attacker, SEARCH).status_code == 200
    assert get(attacker, "guess-4").status_code == 401


def test_one_wrong_key_from_many_addresses_is_limited_per_key(setup):
    app, clock = setup
    codes = [get(client(app, f"192.0.2.{i}"), "the-same-guess").status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert get(client(app, "192.0.2.99"), "another-guess").status_code == 401


def test_missing_keys_and_health_are_not_counted(setup):
    app, _ = setup
    c = client(app, "203.0.113.9")
    for _ in range(5):
        assert c.get("/v1/collections").status_code == 401
        assert c.get("/v1/health").status_code == 200
    assert get(c, SEARCH).status_code == 200


def test_the_limiter_is_on_by_default_and_can_be_turned_off(tmp_path):
    with lookalike.connect(tmp_path / "data", allow_file=False) as db:
        on = client(create_app(db, admin_key=ADMIN), "203.0.113.1")
        assert [get(on, f"g{i}").status_code for i in range(11)][-1] == 429
        off = client(create_app(db, admin_key=ADMIN, auth_failures=False), "203.0.113.1")
        assert {get(off, f"g{i}").status_code for i in range(15)} == {401}


def test_the_limiter_forgets_the_oldest_clients_beyond_its_bound():
    clock = Clock()
    failures = AuthFailures(limit=1, window_s=60, clock=clock, max_tracked=2)
    for name in ("a", "b", "c"):
        failures.record([name])
    assert failures.retry_after(["a"]) is None
    assert failures.retry_after(["c"]) == 60


def test_short_keys_are_warned_about():
    assert key_warnings("short", None) == ["the admin key is 5 characters long; use at least 16 random characters"]
    assert key_warnings(ADMIN, "tiny-search")[0].startswith("the search key is 11 characters")
    assert key_warnings(ADMIN, SEARCH) == []
