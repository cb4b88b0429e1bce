"""A fixed-capacity ring of time-ordered events kept as numpy columns (the gateway's windows)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class EventRing:
    """The newest `capacity` events as parallel numpy columns (fixed width: 13 bytes for a request event).

    A deque of Python tuples costs ~120 bytes an event (24 MB for a full window of one version); these
    columns grow by doubling up to `capacity` and then overwrite the oldest event. Events are appended
    in time order (the monotonic clock), so the events of the last N seconds are a suffix, found by
    binary search.
    """

    def __init__(self, capacity: int, dtypes: Sequence[str]) -> None:
        self.capacity = capacity
        self._columns = [np.empty(min(1024, capacity), dtype=dtype) for dtype in dtypes]
        self._oldest = 0
        self.size = 0

    def append(self, *values: float) -> None:
        allocated = len(self._columns[0])
        if self.size == allocated and allocated < self.capacity:
            grown = min(self.capacity, allocated * 2)
            self._columns = [
                np.concatenate((column, np.empty(grown - allocated, dtype=column.dtype))) for column in self._columns
            ]
        if self.size < self.capacity:
            index = self.size
            self.size += 1
        else:
            index = self._oldest
            self._oldest = (self._oldest + 1) % self.capacity
        for column, value in zip(self._columns, values, strict=True):
            column[index] = value

    def extend(self, *columns: Sequence[float] | np.ndarray) -> None:
        """Append events given column-wise (one sequence per column, all as long, oldest first)."""
        count = len(columns[0])
        if count > self.capacity:  # only the newest `capacity` can stay
            columns = tuple(column[count - self.capacity :] for column in columns)
            count = self.capacity
        if not count:
            return
        needed = min(self.capacity, self.size + count)
        allocated = len(self._columns[0])
        if needed > allocated:
            grown = allocated
            while grown < needed:
                grown = min(self.capacity, grown * 2)
            self._columns = [
                np.concatenate((column, np.empty(grown - allocated, dtype=column.dtype))) for column in self._columns
            ]
        if self.size < self.capacity:  # not full yet: the oldest event is at 0, the free slots follow the newest
            free = self.capacity - self.size
            head = min(free, count)
            for column, values in zip(self._columns, columns, strict=True):
                column[self.size : self.size + head] = values[:head]
            self.size += head
            columns = tuple(values[head:] for values in columns)
            count -= head
        if count:  # full: overwrite the oldest, wrapping round the end
            for column, values in zip(self._columns, columns, strict=True):
                positions = (self._oldest + np.arange(count)) % self.capacity
                column[positions] = values
            self._oldest = (self._oldest + count) % self.capacity

    def since(self, cutoff: float) -> list[np.ndarray]:
        """Each column's values (oldest first) of the events whose first column (time) is >= `cutoff`."""
        size, oldest = self.size, self._oldest
        ordered = [
            np.concatenate((column[oldest:size], column[:oldest])) if oldest else column[:size]
            for column in self._columns
        ]
        first = int(np.searchsorted(ordered[0], cutoff, side="left"))
        return [column[first:] for column in ordered]

    @property
    def newest(self) -> float | None:
        if not self.size:
            return None
        index = (self._oldest - 1) % self.capacity if self.size == self.capacity else self.size - 1
        return float(self._columns[0][index])


__all__ = ["EventRing"]
