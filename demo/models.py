from django.db import models


class DemoClock(models.Model):
    """When the demo was first loaded: its census and scores are simulated up to this moment, once,
    so the times read as recent and loading the demo again creates nothing twice."""

    anchored_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"demo clock {self.anchored_at:%Y-%m-%d %H:%M}"


def demo_clock(now) -> DemoClock:
    """The stored clock, anchored at `now` (to the hour) the first time."""
    clock = DemoClock.objects.order_by("pk").first()
    if clock is None:
        clock = DemoClock.objects.create(anchored_at=now.replace(minute=0, second=0, microsecond=0))
    return clock
