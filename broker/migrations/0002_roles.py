"""The four roles (broker/roles.py) as Django groups with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from broker.roles import ROLES, sync_roles


def forwards(apps, schema_editor):
    # Permissions are made by post_migrate, after every migration has run: on a new
    # database they do not exist yet here. Make them now, from the historical models.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("broker", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("audit", "0001_initial"),
        ("worklist", "0002_mwl_step_fields_pattern_indexes"),
        ("hl7v2", "0003_reprocess_permission"),
        ("mpps", "0002_resend_permission"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
