"""Who may call a route, declared next to the route itself; the auth middleware decides by
it, so a new route cannot be missed by a list of paths kept somewhere else."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

Handler = TypeVar("Handler", bound=Callable[..., Any])
_ATTRIBUTE = "modelzoo_access"


class Access(enum.Enum):
    PUBLIC = "public"  # always open: the upload page (its own calls carry the token)
    METADATA = "metadata"  # health, metadata, metrics: need a token under scope "all"
    INFERENCE = "inference"  # runs the model: needs a token whenever tokens are set


def access(kind: Access) -> Callable[[Handler], Handler]:
    """Declare a handler's access kind (put it below the route decorators)."""

    def declare(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, kind)
        return handler

    return declare


def access_of(handler: Callable[..., Any]) -> Access:
    """A handler's declared kind; one that declares none is treated as running the model."""
    return getattr(handler, _ATTRIBUTE, Access.INFERENCE)
