"""Routes: one templated path, one that raises."""

from django.urls import path

from tests.integration.djangoapp import views

urlpatterns = [
    path("orders/<int:order_id>/", views.order, name="order"),
    path("fail/", views.fail, name="fail"),
]
