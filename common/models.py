"""What every app shares: the append-only base of the records that outcome studies and audits read."""

from django.db import models


class AppendOnlyError(Exception):
    pass


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: nothing is updated.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: nothing is deleted.")


class AppendOnlyModel(models.Model):
    """A record of what happened. It is written once and never changed or removed."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only: nothing is updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only: nothing is deleted.")
