"""Quota plans and provider identities.

The stored quota becomes a personal quota, which replaces the plan's; accounts whose quota
was the default one (DEFAULT_QUOTA before plans) follow the default plan from now on.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import gallery.models


def _follow_the_plan(apps, schema_editor):
    User = apps.get_model("gallery", "User")
    default = settings.QUOTA_PLANS[settings.DEFAULT_PLAN]
    User.objects.filter(personal_quota_bytes=default).update(personal_quota_bytes=None)


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0004_kind_usage"),
    ]

    operations = [
        migrations.RenameField(model_name="user", old_name="quota_bytes", new_name="personal_quota_bytes"),
        migrations.AlterField(
            model_name="user",
            name="personal_quota_bytes",
            field=models.BigIntegerField(
                blank=True, null=True, verbose_name="personal quota (bytes)",
                help_text="set by an admin, it replaces the plan's quota; empty: the plan decides"),
        ),
        migrations.AddField(
            model_name="user",
            name="plan",
            field=models.CharField(default=gallery.models._default_plan, max_length=32,
                                   help_text="a name from QUOTA_PLANS; the quota follows it"),
        ),
        migrations.RunPython(_follow_the_plan, migrations.RunPython.noop),
        migrations.CreateModel(
            name="Identity",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("issuer", models.CharField(max_length=255)),
                ("subject", models.CharField(max_length=255)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_login_at", models.DateTimeField(blank=True, null=True)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="identities",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name_plural": "identities"},
        ),
        migrations.AddConstraint(
            model_name="identity",
            constraint=models.UniqueConstraint(fields=("issuer", "subject"), name="identity_issuer_subject_unique"),
        ),
    ]
