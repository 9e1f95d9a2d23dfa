"""The audit trail in the admin: administrators read it; nobody edits or deletes it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from audit.models import AuditEntry
from tests.fixtures_dicom import schedule
from worklist import services

pytestmark = pytest.mark.django_db


def login(client: Client, role: str) -> User:
    user = User.objects.create_user(f"u-{role}", password="a-long-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


def test_an_administrator_reads_an_entry(client: Client) -> None:
    admin_user = login(client, "Administrator")
    step = schedule()
    services.step_cancel(actor=admin_user, step_id=step.pk)
    entry = AuditEntry.objects.get()
    listing = client.get("/admin/audit/auditentry/")
    assert listing.status_code == 200
    assert "step_change_status" in listing.text
    detail = client.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    assert detail.status_code == 200
    assert "CANCELED" in detail.text
    assert 'name="_save"' not in detail.text  # read-only


def test_nobody_adds_changes_or_deletes_entries(client: Client) -> None:
    admin_user = User.objects.create_superuser("root", "r@example.org", "a-long-password-1")
    client.force_login(admin_user)
    step = schedule()
    services.step_cancel(actor=admin_user, step_id=step.pk)
    entry = AuditEntry.objects.get()
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.get(f"/admin/audit/auditentry/{entry.pk}/delete/").status_code == 403
    client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "x"})
    entry.refresh_from_db()
    assert entry.action == "step_change_status"


@pytest.mark.parametrize("role", ["Front desk", "Department lead", "Integrator"])
def test_other_roles_do_not_see_the_audit_trail(client: Client, role: str) -> None:
    login(client, role)
    assert client.get("/admin/audit/auditentry/").status_code == 403
