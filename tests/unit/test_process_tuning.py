"""A process that runs Huiyuan tunes Python's garbage collector once (``context.tune_gc``)."""

from __future__ import annotations

import gc

from huiyuan.config import Settings
from huiyuan.services import context
from huiyuan.services.context import GC_THRESHOLDS, Services


def test_services_from_settings_tunes_the_collector_once_per_process(tmp_path) -> None:
    Services.from_settings(Settings(database_url=f"sqlite:///{tmp_path}/a.db")).engine.dispose()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # what existed then is out of the collector's sight

    gc.set_threshold(700, 10, 10)  # someone changes it later: a second Services leaves it be
    try:
        Services.from_settings(Settings(database_url=f"sqlite:///{tmp_path}/b.db")).engine.dispose()
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*GC_THRESHOLDS)
    assert context._gc_tuned
