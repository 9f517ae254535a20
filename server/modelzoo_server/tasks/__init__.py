"""One module per task; `TASKS` maps the catalog's task names to their classes."""

from __future__ import annotations

from modelzoo_server.tasks.base import Task
from modelzoo_server.tasks.face_detection import FaceDetection
from modelzoo_server.tasks.image_classification import ImageClassification
from modelzoo_server.tasks.object_detection import ObjectDetection

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (FaceDetection, ImageClassification, ObjectDetection)
}

__all__ = ["TASKS", "Task"]
