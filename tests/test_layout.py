"""Run ids (phalanx/layout.py): the latest run is the last folder by name."""

from __future__ import annotations

import time

from phalanx.layout import new_run_id


def test_run_ids_made_a_millisecond_apart_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(20):  # well within one second: the old ids sorted by their random tail
        made.append(new_run_id())
        time.sleep(0.002)
    assert sorted(made) == made
    assert len(set(made)) == len(made)
