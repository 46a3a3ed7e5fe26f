"""The readers-writer locks every search takes (store/lock.py ReadWriteLock, index/rwlock.py
RWLock): a writer waiting for readers gets in when the last leaves; a read with no writer
waiting wakes nobody (notifying cost a microsecond of every search)."""
from __future__ import annotations

import threading
import time

import pytest

from lookalike.index.rwlock import RWLock
from lookalike.store.lock import ReadWriteLock


def store_lock():
    lock = ReadWriteLock()
    reading = lock.read()
    return lock, reading.__enter__, lambda: reading.__exit__(None, None, None), lock.write


def index_lock():
    lock = RWLock()

    class Writing:
        def __enter__(self):
            lock.acquire_write()

        def __exit__(self, *exc):
            lock.release_write()
    return lock, lock.acquire_read, lock.release_read, Writing


@pytest.mark.parametrize("make", [store_lock, index_lock], ids=["store", "index"])
def test_a_waiting_writer_gets_in_when_the_last_reader_leaves(make):
    lock, enter, leave, write = make()
    got = threading.Event()

    def writer():
        with write():
            got.set()
    enter()
    enter_other = threading.Thread(target=lambda: (enter(), time.sleep(0.05), leave()))
    enter_other.start()
    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.1)
    assert not got.is_set()  # readers hold it
    leave()
    enter_other.join()
    assert got.wait(5)
    thread.join()
    enter()  # and readers come back after the writer
    leave()


@pytest.mark.parametrize("make", [store_lock, index_lock], ids=["store", "index"])
def test_reads_without_a_waiting_writer_notify_nobody(make, monkeypatch):
    lock, enter, leave, _ = make()
    calls = []
    monkeypatch.setattr(lock._cond, "notify_all", lambda: calls.append(1))
    for _ in range(5):
        enter()
        leave()
    assert calls == []
