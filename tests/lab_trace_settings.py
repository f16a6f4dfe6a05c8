"""sample_site's settings with the lab-tracing test URLs (`djtrace request --settings …`)."""

from djtrace.sample_site.settings import *  # noqa: F403

ROOT_URLCONF = "tests.lab_trace_site"
