"""One module per zoo entry (or source format); each exposes `build(entry, out, log)`.

`build` writes the frozen GraphDef to `out` and returns extra record fields
(`labels`, `notes`; see modelzoo_models.contract.ModelRecord). It must be deterministic:
the same packages give the same bytes, so the sha256 in the catalog is stable across
machines. A recipe that cannot build its graph raises `RecipeError` with the reason.
"""


class RecipeError(Exception):
    """A zoo graph cannot be built from its upstream package; the message says why."""
