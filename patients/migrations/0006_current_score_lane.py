"""The worklist's lanes: each current alert is in one (needs a decision, model abstains, decided),
kept on the current score so the list stays one index scan. Existing rows get the lane of their
alert's state and explanation; the reverse drops the column."""

from django.db import migrations, models
from django.db.models import Exists, OuterRef

DECIDED_STATES = ("accepted", "escalated", "dismissed")


def fill_lanes(apps, schema_editor):
    CurrentScore = apps.get_model("patients", "CurrentScore")
    Alert = apps.get_model("patients", "Alert")
    Explanation = apps.get_model("explanations", "Explanation")
    with_alert = CurrentScore.objects.filter(alert__isnull=False)
    abstains = Explanation.objects.filter(prediction_id=OuterRef("prediction_id"), status="ready", abstain=True)
    with_alert.filter(Exists(abstains)).update(lane=1)
    decided = Alert.objects.filter(pk=OuterRef("alert_id"), state__in=DECIDED_STATES)
    with_alert.filter(Exists(decided)).update(lane=2)


class Migration(migrations.Migration):

    dependencies = [
        ('patients', '0005_alert_states_distinct'),
        ('explanations', '0009_explanation_quality_flags'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='currentscore',
            name='current_alert_order',
        ),
        migrations.AddField(
            model_name='currentscore',
            name='lane',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name='currentscore',
            index=models.Index(models.F('lane'), models.Case(models.When(lane=1, then=models.Value(0)), default=models.Case(models.When(then=models.Value(0), tier='high'), models.When(then=models.Value(1), tier='medium'), default=models.Value(2))), models.OrderBy(models.Case(models.When(lane=1, then=models.Value(0.0)), default=models.F('risk')), descending=True), models.OrderBy(models.F('alerted_at'), descending=True), models.F('alert'), condition=models.Q(('alert__isnull', False)), name='current_alert_order'),
        ),
        migrations.RunPython(fill_lanes, migrations.RunPython.noop),
    ]
