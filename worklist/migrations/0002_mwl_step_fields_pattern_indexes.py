"""Worklist C-FIND: two step return keys, and LIKE-capable indexes on PostgreSQL.

PostgreSQL only uses a b-tree index for ``LIKE 'ABC%'`` when the index has the
``*_pattern_ops`` operator class (or the database collation is C). SQLite's GLOB, used
for case-sensitive wildcards there, uses the plain indexes of 0001.
"""

from django.db import migrations, models

PATTERN_INDEXES = [
    ("worklist_patient", "name", "patient_name_like_idx"),
    ("worklist_patient", "name_key", "patient_name_key_like_idx"),
    ("worklist_patient", "patient_id", "patient_id_like_idx"),
    ("worklist_order", "accession_number", "order_accession_like_idx"),
    ("worklist_order", "referring_physician_key", "order_referring_key_like_idx"),
    ("worklist_requestedprocedure", "requested_procedure_id", "procedure_id_like_idx"),
    ("worklist_scheduledprocedurestep", "performing_physician_key", "sps_performing_key_like_idx"),
    ("worklist_scheduledprocedurestep", "sps_id", "sps_id_like_idx"),
    ("worklist_stationaetitle", "ae_title", "station_ae_like_idx"),
]


def create_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name in PATTERN_INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}" varchar_pattern_ops)'
        )


def drop_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _table, _column, name in PATTERN_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("worklist", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="scheduledprocedurestep",
            name="contrast_agent",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="scheduledprocedurestep",
            name="premedication",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddIndex(
            model_name="scheduledprocedurestep",
            index=models.Index(
                fields=["modality", "start_date", "start_time"], name="sps_modality_date_time_idx"
            ),
        ),
        migrations.RunPython(create_pattern_indexes, drop_pattern_indexes),
    ]
