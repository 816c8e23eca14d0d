from django.urls import path

from . import views

urlpatterns = [
    path("", views.payments, name="payments"),
    path("<str:payment_id>/", views.payment, name="payment"),
    path("<str:payment_id>/captures/", views.captures, name="payment-captures"),
    path("<str:payment_id>/refunds/", views.refunds, name="payment-refunds"),
    path("<str:payment_id>/events/", views.events, name="payment-events"),
]
