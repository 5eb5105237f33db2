"""Shared by both test folders: the order tests start in.

`scripts/test.sh` runs the suite on two pytest-xdist workers, handing out one test at a time.
The end-to-end tests (`@pytest.mark.slow(minutes=...)`, a rough time on a quiet machine) take
one to three minutes each: started first, longest first, they run beside the many short tests
instead of after them, so neither worker is left finishing one alone.
"""

import pytest


def _minutes(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("minutes", 1)) if marker else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_minutes, reverse=True)  # stable: the rest keep their order
    # xdist's scheduler starts each worker on two consecutive tests: the second longest goes
    # third, so the two longest start on different workers.
    if len(items) > 2 and _minutes(items[2]) > 0:
        items[1], items[2] = items[2], items[1]
