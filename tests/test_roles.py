"""The four roles exist after migrate, with the permissions broker/roles.py gives them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User

from broker import roles

pytestmark = pytest.mark.django_db


def perms(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {
        f"{app}.{code}"
        for app, code in group.permissions.values_list("content_type__app_label", "codename")
    }


def member(name: str) -> User:
    user = User.objects.create_user(f"u-{name}", password="a-long-password-1")
    user.groups.add(Group.objects.get(name=name))
    return User.objects.get(pk=user.pk)  # a fresh permission cache


def test_the_migration_makes_the_four_groups() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "Front desk",
        "Department lead",
        "Integrator",
        "Administrator",
    }
    assert roles.ROLES == ("Front desk", "Department lead", "Integrator", "Administrator")


def test_front_desk_edits_scheduling_data_but_not_devices_or_logs() -> None:
    held = perms("Front desk")
    for p in (
        "worklist.view_patient",
        "worklist.change_patient",
        "worklist.add_order",
        "worklist.change_scheduledprocedurestep",
        "worklist.view_scheduledprocedurestep",
    ):
        assert p in held
    for p in (
        "worklist.change_device",
        "hl7v2.view_inboundmessage",
        "hl7v2.reprocess_inboundmessage",
        "mpps.resend_outboundmessage",
        "worklist.delete_patient",
        "audit.view_auditentry",
    ):
        assert p not in held


def test_the_department_lead_views_everything_and_changes_nothing() -> None:
    held = perms("Department lead")
    assert "worklist.view_scheduledprocedurestep" in held
    assert "hl7v2.view_inboundmessage" in held
    assert "mpps.view_outboundmessage" in held
    assert all(p.split(".")[1].startswith("view_") for p in held)


def test_the_integrator_reads_and_writes_the_worklist_but_runs_no_admin_action() -> None:
    held = perms("Integrator")
    assert {"worklist.add_order", "worklist.change_scheduledprocedurestep"} <= held
    assert "hl7v2.view_inboundmessage" in held
    assert "hl7v2.reprocess_inboundmessage" not in held
    assert "mpps.resend_outboundmessage" not in held
    assert "auth.change_user" not in held


def test_the_administrator_holds_every_permission_with_the_admin_actions() -> None:
    held = perms("Administrator")
    assert held == {
        f"{app}.{code}"
        for app, code in Permission.objects.values_list("content_type__app_label", "codename")
    }
    user = member("Administrator")
    assert user.has_perm("hl7v2.reprocess_inboundmessage")
    assert user.has_perm("mpps.resend_outboundmessage")
    assert user.has_perm("audit.view_auditentry")


def test_sync_adds_what_a_role_is_missing_and_is_idempotent() -> None:
    group = Group.objects.get(name="Front desk")
    group.permissions.remove(Permission.objects.get(codename="change_patient"))
    roles.sync_roles(Group, Permission)
    roles.sync_roles(Group, Permission)
    assert "worklist.change_patient" in perms("Front desk")
