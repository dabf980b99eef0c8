"""Views of the test project."""

from django.http import HttpRequest, HttpResponse, JsonResponse


def order(request: HttpRequest, order_id: int) -> HttpResponse:
    return JsonResponse({"order": order_id})


def fail(request: HttpRequest) -> HttpResponse:
    raise ValueError("the order service is down")
