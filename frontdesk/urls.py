from __future__ import annotations

from django.urls import path, re_path

from frontdesk import actions, views

app_name = "frontdesk"

urlpatterns = [
    path("", views.home, name="home"),
    path("desk/", views.DeskView.as_view(), name="desk"),
    path("desk/orders/new/", actions.OrderEntryView.as_view(), name="order-new"),
    path(
        "desk/steps/<int:step_id>/reschedule/",
        actions.RescheduleView.as_view(),
        name="step-reschedule",
    ),
    re_path(
        r"^desk/steps/(?P<step_id>[0-9]+)/(?P<action>arrived|cancel|discontinue)/$",
        actions.StepActionView.as_view(),
        name="step-action",
    ),
    path(
        "desk/patients/<int:patient_pk>/",
        actions.PatientCorrectView.as_view(),
        name="patient-correct",
    ),
    path("board/", views.BoardView.as_view(), name="board"),
    path("board/rows/", views.BoardRowsView.as_view(), name="board-rows"),
    path("turnaround/", views.TurnaroundView.as_view(), name="turnaround"),
    path("queues/", views.QueueHealthView.as_view(), name="queues"),
]
