"""`--graph` naming a TensorFlow SavedModel (a folder or a `.tar.gz` of one).

It is frozen once, at start, by the prepare step (modelzoo_models.prepare): checked before
TensorFlow runs any of it, one signature frozen into a `.pb` in a private temporary folder
(the model volume is read-only to the server; /tmp is not), and from there served exactly
as a `.pb` given with --graph.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtime import configure_threads
from modelzoo_server.settings import Settings


def frozen_entry(settings: Settings) -> ModelEntry:
    """Freeze `settings.graph`'s signature; RefusedGraph (an Unservable) when refused."""
    # Here, not at the top: a server on LiteRT imports this module but never TensorFlow.
    from modelzoo_models.prepare import saved_model_entry

    assert settings.graph is not None
    # Loading runs TensorFlow ops, and TensorFlow's thread pools keep their first setting.
    configure_threads(settings.intra_op_threads, settings.inter_op_threads)
    work = Path(tempfile.mkdtemp(prefix="modelzoo-savedmodel-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return saved_model_entry(
        settings.graph,
        work / "model.pb",
        settings.name,
        signature_file=settings.signature,
        signature_name=settings.signature_name,
        sha256=settings.sha256,
    )
