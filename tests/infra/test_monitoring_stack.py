"""Alarms page through the alerts topic; the dashboard covers the pipeline."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.synth import build_app


@pytest.fixture(scope="module")
def stacks():
    return build_app(**{"counting.alerts.emails": '["ops@example.com"]'})[1]


@pytest.fixture(scope="module")
def template(stacks) -> Template:
    return Template.from_stack(stacks["monitoring"])


def alarm_named(template: Template, metric_name: str) -> dict:
    alarms = [
        alarm["Properties"]
        for alarm in template.find_resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric_name
    ]
    assert len(alarms) >= 1, metric_name
    return alarms[0]


def test_every_alarm_notifies_the_alerts_topic_on_alarm_and_recovery(template):
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 8
    for alarm in alarms.values():
        properties = alarm["Properties"]
        assert len(properties["AlarmActions"]) == 1
        assert properties["OKActions"] == properties["AlarmActions"]
        assert properties["TreatMissingData"] == "notBreaching"
        assert len(properties["AlarmDescription"].split()) >= 8


def test_dead_letters_and_queue_age_alarms(template):
    dead_letters = [
        alarm["Properties"]
        for alarm in template.find_resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    assert len(dead_letters) == 3  # intake, undeliverable uploads, training starts
    assert all(a["Threshold"] == 0 and a["Statistic"] == "Maximum" for a in dead_letters)
    age = alarm_named(template, "ApproximateAgeOfOldestMessage")
    assert age["Threshold"] == 900


def test_endpoint_alarms_watch_the_stable_endpoint_name(template):
    for metric in ("Invocation4XXErrors", "Invocation5XXErrors"):
        alarm = alarm_named(template, metric)
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert {"Name": "EndpointName", "Value": "object-counting-dev-counter"} in alarm[
            "Dimensions"
        ]


def test_counter_error_rate_is_metric_math_over_three_periods(template):
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "EvaluationPeriods": 3,
            "Threshold": 5,
            "Metrics": Match.array_with(
                [
                    Match.object_like(
                        {"Expression": "IF(invocations > 0, 100 * errors / invocations, 0)"}
                    )
                ]
            ),
        },
    )


def test_training_runs_that_fail_or_time_out_alarm(template):
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": 0,
            "Metrics": Match.array_with(
                [
                    Match.object_like({"Expression": "failed + timedOut"}),
                    Match.object_like(
                        {
                            "MetricStat": Match.object_like(
                                {"Metric": Match.object_like({"MetricName": "ExecutionsTimedOut"})}
                            )
                        }
                    ),
                ]
            ),
        },
    )


def test_dashboard_shows_counts_per_class_and_cold_starts(template):
    dashboards = template.find_resources("AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = json.dumps(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for expected in (
        "ObjectsCountedByClass",
        "ModelSetupTime",
        "ImagesRejected",
        "ExecutionsSucceeded",
    ):
        assert expected in body


def test_alerts_topic_is_encrypted_and_subscribes_the_configured_emails(stacks):
    alerts = Template.from_stack(stacks["alerts"])
    alerts.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    alerts.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
