from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.apps import apps as apps_registry
from django.db.models.signals import post_migrate


def _sync_roles(*, app_config: AppConfig, **kwargs: Any) -> None:
    # post_migrate is sent once per app, in INSTALLED_APPS order, each creating that
    # app's permissions: sync after the last one, when every permission exists.
    if app_config is not list(apps_registry.get_app_configs())[-1]:
        return
    from django.contrib.auth.models import Group, Permission

    from broker.roles import sync_roles

    sync_roles(Group, Permission)


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Worklist broker"

    def ready(self) -> None:
        from broker import checks  # noqa: F401  (registers the system checks)

        # After every migrate (and after the permissions of new models exist): the roles
        # get the permissions of models added since (broker/roles.py).
        post_migrate.connect(_sync_roles, dispatch_uid="broker.sync_roles")
