"""Typed keys for what the application holds (aiohttp's AppKey, instead of globals)."""

from __future__ import annotations

from aiohttp import web

from modelzoo_server.access_log import AccessLog
from modelzoo_server.draining import Drain
from modelzoo_server.metrics import Metrics
from modelzoo_server.model import ServedModel
from modelzoo_server.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
MODEL = web.AppKey("model", ServedModel)
METRICS = web.AppKey("metrics", Metrics)
DRAIN = web.AppKey("drain", Drain)
ACCESS_LOG = web.AppKey("access_log", AccessLog)
