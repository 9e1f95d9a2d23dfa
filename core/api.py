"""REST API building blocks every app's ``api`` module uses: permissions and pagination.

- :class:`ModelPermissions`: Django model permissions, reads included (GET needs
  ``view_<model>``, not just a login); custom actions name their own permission.
- :class:`Pagination`: ``?limit=`` (or ``?page_size=``) and ``?offset=``, answers
  ``{"count", "next", "previous", "results"}``; the page size is capped at
  ``API_MAX_PAGE_SIZE`` whatever the client asks for.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import permissions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


class ModelPermissions(permissions.DjangoModelPermissions):
    """DjangoModelPermissions where reading needs the model's view permission.

    A view may give extra actions their own permissions, as full names
    (``"hl7v2.reprocess_inboundmessage"``) or with ``%(app_label)s``/``%(model_name)s``:

        action_permissions = {"reprocess": ["hl7v2.reprocess_inboundmessage"]}
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        extra = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if extra is None:
            return super().has_permission(request, view)
        model = self._queryset(view).model
        names = {"app_label": model._meta.app_label, "model_name": model._meta.model_name}
        return request.user.has_perms([perm % names for perm in extra])


def require(*perms: str) -> type[permissions.BasePermission]:
    """A permission class for a view without a model (figures): these permissions."""

    class Required(permissions.BasePermission):
        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(perms))

    Required.__name__ = "Require_" + "_".join(p.replace(".", "_") for p in perms)
    return Required


class Pagination(LimitOffsetPagination):
    """Limit/offset pages with a maximum size; ``page_size`` is accepted for ``limit``."""

    @property
    def default_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_PAGE_SIZE)

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_MAX_PAGE_SIZE)

    def get_limit(self, request: Request) -> int | None:
        if (
            self.limit_query_param not in request.query_params
            and "page_size" in request.query_params
        ):
            self.limit_query_param = "page_size"
        try:
            return super().get_limit(request)
        finally:
            self.limit_query_param = "limit"
