"""The staff pages keep no data of their own; this holds their permission only."""

from __future__ import annotations

from django.db import models


class StaffPages(models.Model):
    """No table: the owner of the permission that opens the staff pages at all.

    The pages also check the model permission of what they show or change; this one
    keeps accounts that hold those permissions for the API alone (integrators) out of
    the pages. The front desk, department lead and administrator roles have it.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_pages", "Can open the staff pages (front desk, board, figures)")]

    def __str__(self) -> str:
        return "staff pages"
