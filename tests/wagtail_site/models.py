from wagtail.models import Page


class HomePage(Page):
    pass


class BlogPage(Page):
    pass
