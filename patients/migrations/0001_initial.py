"""Models moved here from explanations, clinician_ui and models_registry keep their tables:
    only Django's idea of which app owns them changes (no table is created, altered or dropped).
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_types_follow(apps, schema_editor):
    """Content types (and so permissions and admin log entries) of the moved models now name patients."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old_app, models in {'explanations': ['patient', 'encounter', 'prediction', 'currentscore', 'alert', 'outcome'], 'clinician_ui': ['alertaction', 'alertview', 'auditevent']}.items():
        for model in models:
            if not ContentType.objects.filter(app_label="patients", model=model).exists():
                ContentType.objects.filter(app_label=old_app, model=model).update(app_label="patients")


def content_types_return(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old_app, models in {'explanations': ['patient', 'encounter', 'prediction', 'currentscore', 'alert', 'outcome'], 'clinician_ui': ['alertaction', 'alertview', 'auditevent']}.items():
        ContentType.objects.filter(app_label="patients", model__in=models).update(app_label=old_app)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('clinician_ui', '0001_initial'),
        ('explanations', '0006_cohort_chunk_failed'),
        ('accounts', '0001_initial'),
        ('models_registry', '0004_apitoken_moved_to_accounts'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Patient',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('external_id', models.CharField(max_length=100, unique=True)),
                        ('display_name', models.CharField(blank=True, max_length=200)),
                        ('unit', models.CharField(db_index=True, max_length=50)),
                        ('bed', models.CharField(blank=True, max_length=50)),
                        ('simulated', models.BooleanField(default=False)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'explanations_patient',
                    },
                ),
                migrations.CreateModel(
                    name='Encounter',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('external_id', models.CharField(max_length=100, unique=True)),
                        ('patient', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='encounters', to='patients.patient')),
                    ],
                    options={
                        'db_table': 'explanations_encounter',
                    },
                ),
                migrations.CreateModel(
                    name='Outcome',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('outcome', models.BooleanField()),
                        ('occurred_at', models.DateTimeField(blank=True, null=True)),
                        ('received_at', models.DateTimeField(auto_now_add=True)),
                        ('encounter', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='outcome', to='patients.encounter')),
                    ],
                    options={
                        'db_table': 'explanations_outcome',
                    },
                ),
                migrations.CreateModel(
                    name='Prediction',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('external_id', models.CharField(max_length=200)),
                        ('unit', models.CharField(max_length=50)),
                        ('bed', models.CharField(blank=True, max_length=50)),
                        ('scored_at', models.DateTimeField(db_index=True)),
                        ('risk', models.FloatField()),
                        ('margin', models.FloatField()),
                        ('tier', models.CharField(max_length=10)),
                        ('features', models.JSONField()),
                        ('payload_sha256', models.CharField(max_length=64)),
                        ('source', models.CharField(choices=[('rest', 'Rest'), ('bulk', 'Bulk'), ('fhir', 'Fhir')], default='rest', max_length=10)),
                        ('simulated', models.BooleanField(default=False)),
                        ('received_at', models.DateTimeField(auto_now_add=True)),
                        ('encounter', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='predictions', to='patients.encounter')),
                        ('model_version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='predictions', to='models_registry.modelversion')),
                        ('patient', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='predictions', to='patients.patient')),
                        ('registered_model', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='models_registry.registeredmodel')),
                    ],
                    options={
                        'db_table': 'explanations_prediction',
                    },
                ),
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('action', models.CharField(max_length=50)),
                        ('path', models.CharField(max_length=500)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('patient', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='patients.patient')),
                        ('prediction', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='patients.prediction')),
                    ],
                    options={
                        'db_table': 'clinician_ui_auditevent',
                        'ordering': ['-at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Alert',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('unit', models.CharField(db_index=True, max_length=50)),
                        ('tier', models.CharField(max_length=10)),
                        ('risk', models.FloatField()),
                        ('state', models.CharField(choices=[('new', 'New'), ('acknowledged', 'Acknowledged'), ('actioned', 'Actioned')], default='new', max_length=15)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('patient', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='alerts', to='patients.patient')),
                        ('prediction', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='alert', to='patients.prediction')),
                    ],
                    options={
                        'db_table': 'explanations_alert',
                    },
                ),
                migrations.CreateModel(
                    name='AlertAction',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(max_length=12)),
                        ('action', models.CharField(choices=[('acknowledge', 'Acknowledge'), ('accept', 'Accept'), ('dismiss', 'Dismiss'), ('escalate', 'Escalate')], max_length=12)),
                        ('reason', models.CharField(max_length=50)),
                        ('comment', models.TextField(blank=True)),
                        ('shown_at', models.DateTimeField()),
                        ('acted_at', models.DateTimeField(auto_now_add=True)),
                        ('seconds_to_decision', models.FloatField()),
                        ('idempotency_key', models.CharField(max_length=64)),
                        ('alert', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='actions', to='patients.alert')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'clinician_ui_alertaction',
                        'ordering': ['acted_at', 'id'],
                        'constraints': [models.UniqueConstraint(fields=('alert', 'user', 'idempotency_key'), name='unique_action_click')],
                    },
                ),
                migrations.CreateModel(
                    name='AlertView',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('first_shown_at', models.DateTimeField(auto_now_add=True)),
                        ('alert', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='views', to='patients.alert')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'clinician_ui_alertview',
                        'constraints': [models.UniqueConstraint(fields=('alert', 'user'), name='unique_alert_view')],
                    },
                ),
                migrations.CreateModel(
                    name='CurrentScore',
                    fields=[
                        ('patient', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='current_score', serialize=False, to='patients.patient')),
                        ('scored_at', models.DateTimeField()),
                        ('unit', models.CharField(max_length=50)),
                        ('bed', models.CharField(blank=True, max_length=50)),
                        ('tier', models.CharField(max_length=10)),
                        ('risk', models.FloatField()),
                        ('alerted_at', models.DateTimeField(blank=True, null=True)),
                        ('alert', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='current_for', to='patients.alert')),
                        ('prediction', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='current_for', to='patients.prediction')),
                    ],
                    options={
                        'db_table': 'explanations_currentscore',
                    },
                ),
                migrations.AddIndex(
                    model_name='prediction',
                    index=models.Index(fields=['patient', '-scored_at', '-id'], name='prediction_patient_latest'),
                ),
                migrations.AddConstraint(
                    model_name='prediction',
                    constraint=models.UniqueConstraint(fields=('registered_model', 'external_id'), name='unique_prediction_key'),
                ),
                migrations.AddIndex(
                    model_name='currentscore',
                    index=models.Index(models.Case(models.When(then=models.Value(0), tier='high'), models.When(then=models.Value(1), tier='medium'), default=models.Value(2)), models.OrderBy(models.F('risk'), descending=True), models.OrderBy(models.F('alerted_at'), descending=True), models.F('alert'), condition=models.Q(('alert__isnull', False)), name='current_alert_order'),
                ),
                migrations.AddIndex(
                    model_name='currentscore',
                    index=models.Index(models.OrderBy(models.F('risk'), descending=True), models.F('unit'), models.F('bed'), models.F('prediction'), condition=models.Q(('tier', 'low')), name='current_low_order'),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_follow, content_types_return),
    ]
