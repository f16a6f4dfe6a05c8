"""A small Django REST framework API over sample_site's bookstore models, for the fidelity
tests (ROOT_URLCONF "tests.drf_site.urls"): a viewset whose serializer makes an N+1 from a
SerializerMethodField, writes inside atomic blocks, and a page whose template makes an N+1."""
