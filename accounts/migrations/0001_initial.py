"""Models moved here from explanations, clinician_ui and models_registry keep their tables:
    only Django's idea of which app owns them changes (no table is created, altered or dropped).
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_types_follow(apps, schema_editor):
    """Content types (and so permissions and admin log entries) of the moved models now name accounts."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old_app, models in {'clinician_ui': ['profile'], 'explanations': ['servicetoken'], 'models_registry': ['apitoken']}.items():
        for model in models:
            if not ContentType.objects.filter(app_label="accounts", model=model).exists():
                ContentType.objects.filter(app_label=old_app, model=model).update(app_label="accounts")


def content_types_return(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old_app, models in {'clinician_ui': ['profile'], 'explanations': ['servicetoken'], 'models_registry': ['apitoken']}.items():
        ContentType.objects.filter(app_label="accounts", model__in=models).update(app_label=old_app)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('clinician_ui', '0001_initial'),
        ('explanations', '0006_cohort_chunk_failed'),
        ('models_registry', '0003_apitoken'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ServiceToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('key_hash', models.CharField(max_length=64, unique=True)),
                        ('prefix', models.CharField(max_length=8)),
                        ('is_active', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'explanations_servicetoken',
                    },
                ),
                migrations.CreateModel(
                    name='ApiToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(blank=True, max_length=100)),
                        ('key_hash', models.CharField(max_length=64, unique=True)),
                        ('prefix', models.CharField(max_length=8)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('is_active', models.BooleanField(default=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'models_registry_apitoken',
                        'ordering': ['-created_at', 'id'],
                    },
                ),
                migrations.CreateModel(
                    name='Profile',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(choices=[('clinician', 'Clinician'), ('admin', 'Admin'), ('auditor', 'Auditor')], default='clinician', max_length=12)),
                        ('units', models.JSONField(blank=True, default=list)),
                        ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='profile', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'clinician_ui_profile',
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_follow, content_types_return),
    ]
