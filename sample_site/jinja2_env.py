"""Jinja2 environment for the sample site: adds Django's `url` reversing as a global."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from jinja2 import Environment


def url(name: str, *args: Any) -> str:
    return reverse(name, args=args or None)


def environment(**options: Any) -> Environment:
    env = Environment(**options)
    env.globals["url"] = url
    return env
