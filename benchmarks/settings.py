"""sample_site's settings for the overhead benchmark: one trivial extra page, and djtrace
installed only when the configuration being measured asks for it."""

from __future__ import annotations

import os

from djtrace.sample_site.settings import *  # noqa: F403
from djtrace.sample_site.settings import INSTALLED_APPS

# The baseline and the other tracers run without djtrace at all (no hooks installed).
if os.environ.get("DJTRACE_BENCH_TRACER") != "1":
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "djtrace"]

ROOT_URLCONF = "benchmarks.urls"
DEBUG = False  # DEBUG keeps every query in connection.queries: not what production does
