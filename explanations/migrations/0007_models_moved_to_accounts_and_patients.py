"""These models moved to accounts and patients and keep their tables: only Django's idea of
which app owns them changes (no table is created, altered or dropped)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('clinician_ui', '0002_models_moved_to_accounts_and_patients'),
        ('explanations', '0006_cohort_chunk_failed'),
        ('patients', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='alert',
                    name='patient',
                ),
                migrations.RemoveField(
                    model_name='alert',
                    name='prediction',
                ),
                migrations.RemoveField(
                    model_name='currentscore',
                    name='alert',
                ),
                migrations.RemoveField(
                    model_name='currentscore',
                    name='patient',
                ),
                migrations.RemoveField(
                    model_name='currentscore',
                    name='prediction',
                ),
                migrations.RemoveField(
                    model_name='encounter',
                    name='patient',
                ),
                migrations.RemoveField(
                    model_name='prediction',
                    name='encounter',
                ),
                migrations.RemoveField(
                    model_name='outcome',
                    name='encounter',
                ),
                migrations.RemoveField(
                    model_name='prediction',
                    name='patient',
                ),
                migrations.RemoveField(
                    model_name='prediction',
                    name='model_version',
                ),
                migrations.RemoveField(
                    model_name='prediction',
                    name='registered_model',
                ),
                migrations.AlterField(
                    model_name='cohortsample',
                    name='prediction',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='patients.prediction'),
                ),
                migrations.AlterField(
                    model_name='explanation',
                    name='prediction',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='explanation', to='patients.prediction'),
                ),
                migrations.DeleteModel(
                    name='ServiceToken',
                ),
                migrations.DeleteModel(
                    name='Alert',
                ),
                migrations.DeleteModel(
                    name='CurrentScore',
                ),
                migrations.DeleteModel(
                    name='Encounter',
                ),
                migrations.DeleteModel(
                    name='Outcome',
                ),
                migrations.DeleteModel(
                    name='Patient',
                ),
                migrations.DeleteModel(
                    name='Prediction',
                ),
            ],
            database_operations=[],
        ),
    ]
