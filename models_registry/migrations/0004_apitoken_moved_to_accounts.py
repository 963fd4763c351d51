"""These models moved to accounts and patients and keep their tables: only Django's idea of
which app owns them changes (no table is created, altered or dropped)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('models_registry', '0003_apitoken'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='ApiToken',
                ),
            ],
            database_operations=[],
        ),
    ]
