"""Feedback: the true label of an answered request, turned into online accuracy per version.

The gateway remembers, for its most recent answers, which version answered and what it predicted.
`POST /v1/feedback {"request_id", "label"}` looks the request up, scores it once (a second label for
the same request is refused, so accuracy cannot be inflated) and counts it for that version.
Memory is bounded: the oldest answers are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

CAPACITY = 100_000


class FeedbackError(Exception):
    """Feedback that cannot be counted; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Answer:
    version: str
    predicted: int
    classes: Sequence[str]
    labelled: bool = False


@dataclass(frozen=True)
class Scored:
    version: str
    predicted: str
    label: str
    correct: bool


class FeedbackLedger:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[str, _Answer] = OrderedDict()

    def remember(self, request_id: str, version: str, predicted: int, classes: Sequence[str]) -> None:
        self._answers[request_id] = _Answer(version, predicted, classes)
        if len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def score(self, request_id: str, label: object) -> Scored:
        answer = self._answers.get(request_id)
        if answer is None:
            raise FeedbackError(
                404,
                "unknown_request",
                f"no answered request {request_id!r} is remembered (the "
                f"gateway keeps its last {self.capacity} answers since it started)",
            )
        if answer.labelled:
            raise FeedbackError(409, "duplicate_feedback", f"request {request_id!r} has feedback already")
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise FeedbackError(422, "invalid_label", f"label {label!r}: expected a class name or class index")
        if isinstance(label, int):
            if not 0 <= label < len(answer.classes):
                raise FeedbackError(
                    422, "invalid_label", f"label index {label} is outside 0..{len(answer.classes) - 1}"
                )
            index = label
        else:
            try:
                index = list(answer.classes).index(label)
            except ValueError:
                raise FeedbackError(
                    422,
                    "invalid_label",
                    f"label {label!r} is not one of the {len(answer.classes)} classes of {answer.version}",
                ) from None
        answer.labelled = True
        return Scored(
            version=answer.version,
            predicted=answer.classes[answer.predicted],
            label=answer.classes[index],
            correct=index == answer.predicted,
        )


__all__ = ["FeedbackError", "FeedbackLedger", "Scored"]
