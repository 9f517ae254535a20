"""What a right answer is, so that a load generator never counts a fast wrong one.

The reference is the raw graph's own outputs for each photo's tensors, computed in the
bench process (an independent run, not an answer the server gave earlier). A served
answer must have every output with the same shape and dtype, values within a float
tolerance (the server may run the photo inside a batch), and for classifiers the same
top label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Batched and single-image runs of one graph differ in the last float bits, not more.
RTOL, ATOL = 1e-3, 1e-4

Outputs = Mapping[str, np.ndarray]


class WrongAnswer(Exception):
    """An answer that arrived but is not the model's answer for its request."""


@dataclass(frozen=True)
class Answers:
    expected: tuple[Outputs, ...]  # per photo, in the workload's order
    top: str | None  # the output whose argmax is the label (classifiers), else None

    def check(self, index: int, got: Outputs) -> None:
        """Raise WrongAnswer unless `got` is the answer for photo `index`."""
        want = self.expected[index % len(self.expected)]
        for name, expected in want.items():
            if name not in got:
                raise WrongAnswer(f"no output {name!r} (got {sorted(got)})")
            array = got[name]
            if array.dtype != expected.dtype or array.shape != expected.shape:
                raise WrongAnswer(
                    f"{name}: {array.dtype} {list(array.shape)}, "
                    f"expected {expected.dtype} {list(expected.shape)}"
                )
            if not np.allclose(array, expected, rtol=RTOL, atol=ATOL):
                worst = float(np.max(np.abs(array.astype(float) - expected.astype(float))))
                raise WrongAnswer(f"{name}: values differ from the raw graph's by up to {worst:g}")
        if self.top is not None:
            label, expected_label = np.argmax(got[self.top]), np.argmax(want[self.top])
            if label != expected_label:
                raise WrongAnswer(f"top label {label}, expected {expected_label}")

    def checker(self, index: int) -> Callable[[Outputs], None]:
        """The check of one photo's answers."""
        return lambda got: self.check(index, got)


def reference(
    run: Callable[[Mapping[str, np.ndarray]], Outputs],
    feeds: Sequence[Mapping[str, np.ndarray]],
    top: str | None,
) -> Answers:
    """Run the graph once per photo: those outputs are the right answers."""
    return Answers(tuple({k: np.asarray(v) for k, v in run(f).items()} for f in feeds), top)
