"""The "Conflict reviewers" group: view and resolve conflicts, view sync state, history and the log.

Nothing in ``accounts`` (users, organizations, tokens): a reviewer sees sync data only.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP_NAME = "Conflict reviewers"

#: (model, codename) pairs the group gets — exactly these, so a rerun or a reverse leaves no extra rights.
REVIEWER_PERMISSIONS = [
    ("conflict", "view_conflict"),
    ("conflict", "resolve_conflict"),
    ("syncstate", "view_syncstate"),
    ("synchistory", "view_synchistory"),
    ("conflictresolution", "view_conflictresolution"),
]


def create_reviewers_group(apps, schema_editor):
    """Create the group with its permissions (creating the permissions first: post_migrate is later)."""
    db_alias = schema_editor.connection.alias
    # Permissions are normally created by the post_migrate signal, after every migration has run; a
    # fresh database has none yet. This is the recipe of Django's docs for data migrations.
    app_config = apps.get_app_config("sync")
    app_config.models_module = True
    try:
        create_permissions(app_config, verbosity=0, using=db_alias, apps=apps)
    finally:
        app_config.models_module = None

    ContentType = apps.get_model("contenttypes", "ContentType")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = []
    for model, codename in REVIEWER_PERMISSIONS:
        content_type, _ = ContentType.objects.using(db_alias).get_or_create(app_label="sync", model=model)
        permission = (
            Permission.objects.using(db_alias).filter(content_type=content_type, codename=codename).first()
        )
        if permission is None:
            raise RuntimeError(
                f"Permission sync.{codename} is missing; cannot create the {GROUP_NAME!r} group."
            )
        permissions.append(permission)
    group, _ = Group.objects.using(db_alias).get_or_create(name=GROUP_NAME)
    group.permissions.set(permissions)


def delete_reviewers_group(apps, schema_editor):
    """Remove the group (its users lose these rights); the permissions themselves stay, as Django's do."""
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=GROUP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_reviewers_group, delete_reviewers_group),
    ]
