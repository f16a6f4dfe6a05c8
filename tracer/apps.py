from django.apps import AppConfig


class TracerConfig(AppConfig):
    """Adding "djtrace" to INSTALLED_APPS installs every hook once the app registry is ready."""

    name = "djtrace"
    verbose_name = "djtrace"

    def ready(self) -> None:
        from djtrace.installer import install

        install()
