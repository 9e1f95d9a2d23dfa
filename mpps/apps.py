from __future__ import annotations

from django.apps import AppConfig


class MppsConfig(AppConfig):
    name = "mpps"
    verbose_name = "Modality performed procedure steps"
