"""ASGI entry for multi-worker serving: ``uvicorn huiyuan.api.asgi:app``."""

from __future__ import annotations

import logging

from huiyuan.api.app import create_app
from huiyuan.config import Settings
from huiyuan.services.context import Services

_settings = Settings()
logging.basicConfig(level=_settings.log_level, format="%(asctime)s %(name)s %(message)s")
app = create_app(Services.from_settings(_settings))
