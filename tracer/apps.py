from django.apps import AppConfig


class TracerConfig(AppConfig):
    """Adding "tracer" to INSTALLED_APPS installs every hook once the app registry is ready."""

    name = "tracer"
    verbose_name = "djtrace"

    def ready(self) -> None:
        from tracer.install import install

        install()
