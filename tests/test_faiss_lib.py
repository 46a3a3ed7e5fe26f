"""index/faiss_lib.py: every layer gets FAISS one way, its Python interrupt check removed once
before the module is handed out (unless LOOKALIKE_FAISS_INTERRUPT=keep), or None where the
`ann` extra is missing, so that the OpenCV and NumPy fallbacks run."""
from __future__ import annotations

import builtins
import threading

import pytest

from lookalike.index import faiss_lib

faiss_module = pytest.importorskip("faiss")


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(faiss_lib, "_module", None)
    cleared = []
    monkeypatch.setattr(faiss_module.InterruptCallback, "clear_instance", lambda: cleared.append(1))
    return cleared


def test_the_interrupt_check_is_removed_once_whichever_thread_comes_first(fresh):
    got = []
    threads = [threading.Thread(target=lambda: got.append(faiss_lib.faiss())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [faiss_module] * 8 and fresh == [1]


def test_keep_leaves_the_interrupt_check(fresh, monkeypatch):
    monkeypatch.setenv(faiss_lib.INTERRUPT_ENV, "keep")
    assert faiss_lib.faiss_or_none() is faiss_module and fresh == []


def test_without_the_extra_the_fallbacks_get_none(monkeypatch):
    monkeypatch.setattr(faiss_lib, "_module", None)
    real = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    assert faiss_lib.faiss_or_none() is None
    with pytest.raises(ImportError):
        faiss_lib.faiss()


def test_the_layers_share_it():
    from lookalike.index import ann
    from lookalike.query import verify

    assert ann._faiss() is faiss_lib.faiss()
    verify.use_faiss(True)
    assert verify._faiss() is faiss_lib.faiss()
