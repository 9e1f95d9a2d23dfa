from __future__ import annotations

from django.apps import AppConfig


class MppsConfig(AppConfig):
    name = "mpps"
    verbose_name = "Modality performed procedure steps"

    def ready(self) -> None:
        from core import events
        from mpps import receivers

        events.step_status_changed.connect(receivers.step_status_changed, weak=False)
