from __future__ import annotations

from django.apps import AppConfig


class WorklistConfig(AppConfig):
    name = "worklist"
    verbose_name = "Modality worklist"
