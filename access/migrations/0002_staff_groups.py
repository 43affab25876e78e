"""The staff groups the policy knows. Staff who exist before this migration could call
every staff endpoint: they join support, warehouse and finance so nothing they did
stops working (trim their groups in the admin afterwards). API keys (the admin group)
are new and start with superusers only."""

from django.db import migrations

GROUPS = ("support", "warehouse", "finance", "admin")
GROUPS_OF_EXISTING_STAFF = ("support", "warehouse", "finance")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in GROUPS}
    for user in User.objects.filter(is_staff=True, is_superuser=False):
        user.groups.add(*(groups[name] for name in GROUPS_OF_EXISTING_STAFF))


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
