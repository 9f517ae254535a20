"""One module per task; `TASKS` maps the catalog's task names to their classes."""

from __future__ import annotations

from modelzoo_server.tasks.base import Task
from modelzoo_server.tasks.face_detection import FaceDetection

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (FaceDetection,)}

__all__ = ["TASKS", "Task"]
