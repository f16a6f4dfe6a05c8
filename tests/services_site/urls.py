from django.urls import include, path

from tests.services_site import views

urlpatterns = [
    path("tx/<str:scenario>/", views.tx),
    path("cache/ops/", views.cache_ops),
    path("cache/ops-async/", views.cache_ops_async),
    path("cache/fragment/", views.fragment),
    path("cache/page/", views.cacheable),
    path("signals/", views.send_signals),
    path("signals-async/", views.send_signals_async),
    path("secrets/", views.secrets),
    path("secrets/read/", views.read_secrets),
    path("", include("djtrace.sample_site.urls")),
]
