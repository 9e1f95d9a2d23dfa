"""Worklist C-FIND: extended statistics on the step's status and start date (PostgreSQL).

The typical scanner query asks for today's steps, and the worklist holds only the active
ones (SCHEDULED, ARRIVED, STARTED). PostgreSQL takes the two conditions as independent:
with years of history, nearly all COMPLETED, it estimated one row for "today and active"
where there are thousands, and at a million steps chose a plan that probes the station AE
titles once per step (README, "Scale: a million steps"). Functional-dependency and
most-common-value statistics on the pair tell it that the date goes with the status.
SQLite has no such statistics; nothing to do there.
"""

from django.db import migrations

STATISTICS = "sps_status_start_date_stats"
TABLE = "worklist_scheduledprocedurestep"


def create_statistics(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f'CREATE STATISTICS IF NOT EXISTS "{STATISTICS}" (dependencies, mcv) '
        f'ON "status", "start_date" FROM "{TABLE}"'
    )
    # Gathered now, not at the next autovacuum: an upgraded site gets the estimate at once.
    schema_editor.execute(f'ANALYZE "{TABLE}"')


def drop_statistics(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f'DROP STATISTICS IF EXISTS "{STATISTICS}"')


class Migration(migrations.Migration):
    dependencies = [("worklist", "0002_mwl_step_fields_pattern_indexes")]

    operations = [migrations.RunPython(create_statistics, drop_statistics)]
