from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_created_at_returned_by_upserts"),
        ("sync", "0006_conflict_db_defaults"),
    ]

    # Issue 18, item 13: keyed per organization, so one organization"s upsert never takes over another"s
    # entry. The new constraint first: the table is never without one. Existing rows satisfy it (the old
    # key was the issue id alone).
    operations = [
        migrations.AddConstraint(
            model_name="linearissuecache",
            constraint=models.UniqueConstraint(
                fields=("organization", "linear_issue_id"), name="sync_linearissuecache_org_issue_uniq"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="linearissuecache",
            name="sync_linearissuecache_issue_uniq",
        ),
    ]
