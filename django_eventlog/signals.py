"""Signals django_eventlog sends."""

from django.dispatch import Signal

#: Sent after every ``reduce``/``areduce``. ``sender`` is the aggregate class;
#: keyword arguments: ``log_id``, ``cache`` (``"hit"``, ``"miss"`` or
#: ``"error"``: how the cached reduction was found), ``events_applied`` (events
#: folded by this call) and ``through_index``.
reduced = Signal()
