from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "testproject.payments"
    label = "payments"

    def ready(self) -> None:
        # Register the event classes before any event is read: commands
        # run without system checks (eventlog_verify) need them too.
        from . import events  # noqa: F401
