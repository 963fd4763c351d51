"""Accepted, escalated and dismissed alerts were all stored as "actioned"; each now has its own
state, derived (as always) from the alert's latest action. Reversible: the three fold back into
"actioned"."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery

STATE_AFTER_ACTION = {"accept": "accepted", "escalate": "escalated", "dismiss": "dismissed"}


def split_actioned(apps, schema_editor):
    Alert = apps.get_model("patients", "Alert")
    AlertAction = apps.get_model("patients", "AlertAction")
    latest = AlertAction.objects.filter(alert=OuterRef("pk")).order_by("-acted_at", "-id").values("action")[:1]
    for action, state in STATE_AFTER_ACTION.items():
        Alert.objects.filter(state="actioned").annotate(latest=Subquery(latest)).filter(latest=action).update(
            state=state
        )


def fold_actioned(apps, schema_editor):
    Alert = apps.get_model("patients", "Alert")
    Alert.objects.filter(state__in=list(STATE_AFTER_ACTION.values())).update(state="actioned")


class Migration(migrations.Migration):
    dependencies = [("patients", "0004_audit_event_patients_rows")]

    operations = [
        migrations.AlterField(
            model_name="alert",
            name="state",
            field=models.CharField(
                choices=[
                    ("new", "New"),
                    ("acknowledged", "Acknowledged"),
                    ("accepted", "Accepted"),
                    ("escalated", "Escalated"),
                    ("dismissed", "Dismissed"),
                ],
                default="new",
                max_length=15,
            ),
        ),
        migrations.RunPython(split_actioned, fold_actioned),
    ]
