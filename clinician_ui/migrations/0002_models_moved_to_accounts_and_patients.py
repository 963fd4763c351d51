"""These models moved to accounts and patients and keep their tables: only Django's idea of
which app owns them changes (no table is created, altered or dropped)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('patients', '0001_initial'),
        ('clinician_ui', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='alertview',
                    name='alert',
                ),
                migrations.RemoveField(
                    model_name='alertview',
                    name='user',
                ),
                migrations.RemoveField(
                    model_name='auditevent',
                    name='patient',
                ),
                migrations.RemoveField(
                    model_name='auditevent',
                    name='prediction',
                ),
                migrations.RemoveField(
                    model_name='auditevent',
                    name='user',
                ),
                migrations.RemoveField(
                    model_name='profile',
                    name='user',
                ),
                migrations.DeleteModel(
                    name='AlertAction',
                ),
                migrations.DeleteModel(
                    name='AlertView',
                ),
                migrations.DeleteModel(
                    name='AuditEvent',
                ),
                migrations.DeleteModel(
                    name='Profile',
                ),
            ],
            database_operations=[],
        ),
    ]
