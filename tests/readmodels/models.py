"""Read models of the tests' projections."""

from __future__ import annotations

from django.db import models


class Balance(models.Model):
    """An account's balance and the last index folded into it."""

    log_id = models.UUIDField(primary_key=True)
    balance = models.BigIntegerField(default=0)
    last_index = models.IntegerField(default=-1)

    def __str__(self) -> str:
        return f"{self.log_id}: {self.balance}"


class Handled(models.Model):
    """Each event a projection handled, once: the unique constraint refuses
    a second time."""

    projection = models.CharField(max_length=100)
    log_id = models.UUIDField()
    index = models.IntegerField()
    position = models.CharField(max_length=40)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projection", "log_id", "index"], name="handled_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projection} {self.log_id}[{self.index}]"


class Folded(models.Model):
    """One projection's fold of one account log: balance, last index, and how
    many events it applied (``tests.projections.Folding``)."""

    projection = models.CharField(max_length=100)
    log_id = models.UUIDField()
    balance = models.BigIntegerField(default=0)
    last_index = models.IntegerField(default=-1)
    events = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projection", "log_id"], name="folded_once_per_log"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projection} {self.log_id}: {self.balance}"
