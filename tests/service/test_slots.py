"""Prediction slots: first come, first served; a released slot goes to the oldest waiter."""

from __future__ import annotations

import threading
import time

import pytest

from specks.core.deadline import Deadline
from specks.errors import ClientGoneError
from specks.service.slots import FairSlots


def _waiter(slots: FairSlots, name: str, order: list[str], hold: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        slots.acquire()
        order.append(name)
        if hold is not None:
            hold.wait(5)
        slots.release()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_waiters(slots: FairSlots, count: int) -> None:
    give_up = time.monotonic() + 5
    while slots.waiting < count:
        assert time.monotonic() < give_up, f"{slots.waiting} waiting, expected {count}"
        time.sleep(0.005)


def test_waiters_are_served_in_arrival_order() -> None:
    slots = FairSlots(1)
    slots.acquire()
    order: list[str] = []
    threads = []
    for index, name in enumerate("abcde"):
        threads.append(_waiter(slots, name, order))
        _wait_for_waiters(slots, index + 1)
    slots.release()
    for thread in threads:
        thread.join(5)
    assert order == list("abcde")


def test_a_holder_that_takes_its_slot_again_queues_behind_the_waiters() -> None:
    """A batch between its images: release then acquire must let the waiting request in first."""
    slots = FairSlots(1)
    slots.acquire()
    order: list[str] = []
    waiter = _waiter(slots, "waiting request", order)
    _wait_for_waiters(slots, 1)
    slots.release()
    slots.acquire()  # the batch's next image
    order.append("batch")
    slots.release()
    waiter.join(5)
    assert order == ["waiting request", "batch"]


def test_try_acquire_never_overtakes_a_waiter() -> None:
    slots = FairSlots(2)
    assert slots.try_acquire() and slots.try_acquire()
    assert not slots.try_acquire()
    slots.release()
    assert slots.try_acquire()
    slots.release()
    slots.release()
    with pytest.raises(RuntimeError, match="released more often"):
        slots.release()


def test_a_waiter_is_not_refused_by_its_deadline_while_it_waits() -> None:
    """The wait is not the request's work: a burst is queued and answered, not refused."""
    slots = FairSlots(1)
    slots.acquire()
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (slots.acquire(Deadline.after(0.05)), done.set()))
    waiter.start()
    assert not done.wait(0.4)  # long past its deadline, still waiting
    slots.release()
    assert done.wait(5)
    waiter.join(5)
    slots.release()


def test_a_waiter_whose_client_has_gone_stops_waiting() -> None:
    slots = FairSlots(1)
    slots.acquire()
    gone = threading.Event()
    deadline = Deadline.after(30, client_gone=gone.is_set)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            slots.acquire(deadline)
        except ClientGoneError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    _wait_for_waiters(slots, 1)
    gone.set()
    thread.join(5)
    assert len(errors) == 1 and slots.waiting == 0


def test_saturation_is_told_when_the_last_slot_is_taken_and_when_one_frees() -> None:
    told: list[bool] = []
    slots = FairSlots(2, on_saturation=told.append)
    slots.acquire()
    assert told == []
    slots.acquire()
    assert told == [True] and slots.saturated
    hold = threading.Event()
    order: list[str] = []
    waiter = _waiter(slots, "w", order, hold)
    _wait_for_waiters(slots, 1)
    slots.release()  # handed to the waiter: still saturated, nothing told
    assert told == [True]
    hold.set()
    waiter.join(5)
    assert told == [True, False] and not slots.saturated
    slots.release()
    assert told == [True, False]
