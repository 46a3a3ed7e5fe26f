"""Concurrent decodes share one pixel budget (issue 18, item 7): eight 64-megapixel decodes at once
took a server from 0.8 to 3.8 GB. The budget is tested deterministically (no timing)."""
from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from lookalike.errors import TooLarge
from lookalike.models import images
from lookalike.models.images import PixelBudget, decoded, load_pixels


def test_the_budget_admits_decodes_up_to_its_total():
    budget = PixelBudget(100)
    assert budget.acquire(60, timeout=0)
    assert not budget.acquire(50, timeout=0)  # 110 > 100: would wait
    assert budget.acquire(40, timeout=0)
    assert budget.in_use == 100
    budget.release(60)
    assert budget.acquire(50, timeout=0)
    budget.release(40)
    budget.release(50)
    assert budget.in_use == 0


def test_an_image_larger_than_the_budget_runs_alone():
    budget = PixelBudget(100)
    assert budget.acquire(1, timeout=0)
    assert not budget.acquire(10_000, timeout=0)  # waits for everything else to finish
    budget.release(1)
    assert budget.acquire(10_000, timeout=0) and budget.in_use == 100
    assert not budget.acquire(1, timeout=0)
    budget.release(10_000)
    assert budget.in_use == 0


def test_a_waiting_decode_proceeds_once_pixels_are_released():
    budget = PixelBudget(100)
    budget.acquire(80)
    got = threading.Event()

    def waiter() -> None:
        budget.acquire(50)
        got.set()
    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert not got.wait(0.2)
    budget.release(80)
    assert got.wait(10), "the waiting decode was never admitted"
    thread.join(5)
    assert budget.in_use == 50


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


class Recording(PixelBudget):
    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.taken: list[int] = []
        self.peak = 0

    def acquire(self, pixels: int, timeout: float | None = None) -> bool:
        ok = super().acquire(pixels, timeout)
        with self._cond:
            self.taken.append(pixels)
            self.peak = max(self.peak, self.in_use)
        return ok


def test_decodes_take_the_pixel_count_from_the_header_and_stay_within_the_budget(monkeypatch):
    budget = Recording(2_500_000)
    monkeypatch.setattr(images, "PIXELS", budget)
    data = _png(1000, 1000)
    threads = [threading.Thread(target=load_pixels, args=(data, 64)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert budget.taken == [1_000_000] * 6
    assert budget.peak <= 2_000_000 and budget.in_use == 0


def test_the_budget_is_held_until_the_caller_is_done_and_released_on_errors():
    budget = PixelBudget(10_000)
    with decoded(_png(50, 40), budget=budget) as image:
        assert image.size == (50, 40) and budget.in_use == 2000
    assert budget.in_use == 0
    with pytest.raises(RuntimeError):
        with decoded(_png(50, 40), budget=budget):
            raise RuntimeError("caller failed")
    assert budget.in_use == 0


def test_an_image_over_max_pixels_is_refused_from_its_header_without_taking_budget():
    budget = PixelBudget(10)
    with pytest.raises(TooLarge, match="300x300 pixels exceeds the limit of 50000"):
        with decoded(_png(300, 300), max_pixels=50_000, budget=budget):
            pass
    assert budget.in_use == 0
