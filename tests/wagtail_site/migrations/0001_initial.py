# Written by hand to load on every Wagtail the suite installs (7.x on Django 4.2, 8.x on 5.2+).

import django.db.models.deletion
from django.db import migrations, models


def _page(name: str) -> migrations.CreateModel:
    return migrations.CreateModel(
        name=name,
        fields=[
            (
                "page_ptr",
                models.OneToOneField(
                    auto_created=True,
                    on_delete=django.db.models.deletion.CASCADE,
                    parent_link=True,
                    primary_key=True,
                    serialize=False,
                    to="wagtailcore.page",
                ),
            ),
        ],
        options={"abstract": False},
        bases=("wagtailcore.page",),
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = [("wagtailcore", "0001_initial")]
    operations = [_page("BlogPage"), _page("HomePage")]
