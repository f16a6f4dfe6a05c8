from djtrace.sample_site.settings import *  # noqa: F403
from djtrace.sample_site.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "debug_toolbar"]
ROOT_URLCONF = "tests.toolbar_site.urls"
