"""ASGI entry for multi-worker serving: ``uvicorn huiyuan.api.asgi:app``."""

from __future__ import annotations

from huiyuan.api.app import create_app
from huiyuan.config import Settings
from huiyuan.services.context import Services

app = create_app(Services.from_settings(Settings()))
