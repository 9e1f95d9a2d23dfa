"""The roles the broker ships with: Django groups and the permissions each one holds.

The groups are made by a data migration (``broker/migrations/0002_roles.py``) and kept
up to date after every ``migrate`` (``sync_roles``, run on post_migrate, so that the
permissions of models added later, e.g. routing's, reach their roles). It only *adds*:
a permission taken from a role's group by hand is granted again at the next migrate, so
change a role here, not in the admin. Users get a role by being put in its group;
administrators also need "staff status" to use the admin site.

- Front desk: patients, orders, procedures and steps (view, add, change); view devices
  and performed steps (the board shows MPPS progress); the staff pages.
- Department lead: view everything (board, turnaround figures, message logs).
- Integrator: the API (worklist read and write, MPPS and message logs read).
- Administrator: every permission (devices, rules, message logs, admin actions).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FRONT_DESK = "Front desk"
DEPARTMENT_LEAD = "Department lead"
INTEGRATOR = "Integrator"
ADMINISTRATOR = "Administrator"
ROLES = (FRONT_DESK, DEPARTMENT_LEAD, INTEGRATOR, ADMINISTRATOR)

# The apps whose data the roles are about (not Django's own: users, groups, sessions).
DOMAIN_APPS = ("worklist", "mpps", "hl7v2", "routing", "audit", "broker", "frontdesk")
_SCHEDULING = ("patient", "order", "requestedprocedure", "scheduledprocedurestep", "stationaetitle")


def _edit(models: Iterable[str]) -> set[str]:
    return {f"worklist.{action}_{m}" for m in models for action in ("view", "add", "change")}


_GRANTS: dict[str, set[str]] = {
    FRONT_DESK: _edit(_SCHEDULING)
    | {
        "worklist.view_device",
        "mpps.view_performedprocedurestep",
        "mpps.view_steplink",
        # The staff pages (front desk, board); integrators hold the same model
        # permissions for the API only, and not this one.
        "frontdesk.view_pages",
    },
    INTEGRATOR: _edit(_SCHEDULING)
    | {
        "worklist.view_device",
        "mpps.view_performedprocedurestep",
        "mpps.view_steplink",
        "mpps.view_outboundmessage",
        "hl7v2.view_inboundmessage",
    },
}


def permissions_of(role: str, available: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (app_label, codename) pairs among ``available`` that ``role`` holds."""
    pairs = set(available)
    if role == ADMINISTRATOR:
        return pairs
    if role == DEPARTMENT_LEAD:
        return {
            (app, code)
            for app, code in pairs
            if app in DOMAIN_APPS and code.startswith("view_") and app != "audit"
        }
    wanted = _GRANTS[role]
    return {(app, code) for app, code in pairs if f"{app}.{code}" in wanted}


def sync_roles(group_model: Any, permission_model: Any) -> None:
    """Create the groups if missing and add the permissions each role holds.

    Takes the models as arguments so that the data migration can pass its historical ones.
    """
    available = {
        (app, code): pk
        for pk, app, code in permission_model.objects.values_list(
            "pk", "content_type__app_label", "codename"
        )
    }
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = {available[pair] for pair in permissions_of(role, available)}
        have = set(group.permissions.values_list("pk", flat=True))
        if wanted - have:
            group.permissions.add(*(wanted - have))
