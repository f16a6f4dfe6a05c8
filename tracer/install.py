"""Installs and removes djtrace's hooks. Placeholder until the hooks land."""


def install() -> None:
    pass


def uninstall() -> None:
    pass
