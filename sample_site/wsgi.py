"""WSGI entry point (gunicorn sample_site.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djtrace.sample_site.settings")

application = get_wsgi_application()

# A demo should answer on a fresh machine: create and seed its database on first start.
from djtrace.sample_site.seed import ensure_database  # noqa: E402

ensure_database()
