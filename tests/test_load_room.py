"""A small room: four sessions at once on a real server, picking FairFace faces and toggling crop through
Streamlit's own protocol (`bench/room.py`, whose 30-session run is `python -m bench --only room`)."""

from __future__ import annotations

import threading

import pytest

from bench import room
from faircam.vision.cams import Turns

pytestmark = pytest.mark.browser  # a server of its own, like the browser tests


def test_four_students_at_once_get_their_maps_without_error():
    figures = room.run(students=4, picks=1, timeout=300)
    assert figures["errors"] == 0, figures["failures"]
    median, p95, worst = figures["pick -> maps (s): median / p95 / max"]
    assert 0 < median <= p95 <= worst
    memory = figures["server memory after the room (MB)"]
    assert memory["processes"] == 1 and 0 < memory["rss_mb"] <= memory["peak_mb"]


def test_turns_count_who_is_ahead():
    # The count behind the "Busy: N ahead of you" note: holders and waiters, back to none once all are done.
    turns, inside, release = Turns(), threading.Event(), threading.Event()

    def hold():
        with turns:
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(10)
    def wait_turn():
        with turns:
            pass

    waiters = [threading.Thread(target=wait_turn) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    for _ in range(100):
        if turns.ahead == 3:
            break
        threading.Event().wait(0.01)
    assert turns.ahead == 3
    release.set()
    for thread in (holder, *waiters):
        thread.join(10)
    assert turns.ahead == 0
