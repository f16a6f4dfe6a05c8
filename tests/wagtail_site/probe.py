"""Run by tests/test_fidelity.py in a child process (DJANGO_SETTINGS_MODULE
tests.wagtail_site.settings): migrates a fresh database, makes a home page and a blog page,
requests both traced and prints, per request, its route and view as JSON."""

from __future__ import annotations

import json

import django


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from djtrace import trace
    from wagtail.models import Page, Site

    from tests.wagtail_site.models import BlogPage, HomePage

    call_command("migrate", verbosity=0)
    root = Page.get_first_root_node()
    home = root.add_child(instance=HomePage(title="Home", slug="home-page"))
    home.add_child(instance=BlogPage(title="A post", slug="a-post"))
    Site.objects.all().delete()
    Site.objects.create(hostname="testserver", root_page=home, is_default_site=True)
    with trace() as t:
        client = Client()
        statuses = [client.get(path).status_code for path in ("/", "/a-post/", "/")]
    print(
        json.dumps(
            {
                "statuses": statuses,
                "pages": [[tr.request["route"], tr.request["view"]] for tr in t.requests],
            }
        )
    )


if __name__ == "__main__":
    main()
