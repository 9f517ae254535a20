"""`make bench`: ModelZoo measured side by side with its ceiling and its alternatives.

`python -m tests.bench [--quick] [--out docs/benchmarks.md]` — see `__main__.py`.
Every figure in the report is a ratio to a baseline measured in the same run.
"""
