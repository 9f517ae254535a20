"""One module per zoo entry (or source format); each exposes `build(entry, out, log)`.

`build` writes the frozen GraphDef to `out` and returns extra catalog fields
(for example `labels`). It must be deterministic: the same packages give the
same bytes, so the sha256 in the catalog is stable across machines.
"""
