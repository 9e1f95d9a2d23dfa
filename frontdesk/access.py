"""Who may open which staff page: login first, then the page's model permission."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

# Opens the staff pages at all (frontdesk.models.StaffPages): every role but the
# integrator's, who holds the model permissions below for the API only.
PAGES = "frontdesk.view_pages"
# The permissions of the pages (codenames in the services contract).
VIEW_STEPS = "worklist.view_scheduledprocedurestep"
CHANGE_STEPS = "worklist.change_scheduledprocedurestep"
ADD_ORDERS = "worklist.add_order"
CHANGE_PATIENTS = "worklist.change_patient"
VIEW_QUEUES = ("hl7v2.view_inboundmessage", "mpps.view_outboundmessage")


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def may_use_pages(user: Any) -> bool:
    return bool(user.has_perm(PAGES))


class StaffPage(LoginRequiredMixin, PermissionRequiredMixin):
    """A page for signed-in staff holding :data:`PAGES` and ``permission_required``.

    Anonymous visitors go to the login page (htmx's polling requests too: it follows an
    ``HX-Redirect`` with a full page load, instead of putting the login form inside the
    board); a signed-in user without the permission gets 403.
    """

    request: HttpRequest

    def get_permission_required(self) -> tuple[str, ...]:
        return (PAGES, *super().get_permission_required())

    def handle_no_permission(self) -> Any:
        if not self.request.user.is_authenticated:
            if is_htmx(self.request):
                page = urlsplit(self.request.headers.get("HX-Current-URL", "/"))
                path = page.path + (f"?{page.query}" if page.query else "")
                response = HttpResponse(status=204)
                response["HX-Redirect"] = redirect_to_login(path or "/").url
                return response
            return redirect_to_login(self.request.get_full_path())
        return super().handle_no_permission()
