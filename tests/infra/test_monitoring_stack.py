"""Alarms page through the alerts topic; the dashboard covers the pipeline."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match, Template

from tests.conftest import ROOT
from tests.infra.synth import build_app

pytestmark = pytest.mark.synth  # every test here builds the CDK app


@pytest.fixture(scope="module")
def stacks():
    return build_app(
        **{"counting.alerts.emails": '["ops@example.com"]', "counting.workforce.enabled": "true"}
    )[1]


@pytest.fixture(scope="module")
def template(stacks) -> Template:
    return Template.from_stack(stacks["monitoring"])


DEAD_LETTER_ALARMS = (
    "IntakeDeadLetters",
    "UndeliverableUploads",
    "TrainingStartDeadLetters",
    "LabelingDeadLetters",
)
OTHER_ALARMS = (
    "CounterErrorRate",
    "OldestMessageAge",
    "Endpoint4xx",
    "Endpoint5xx",
    "TrainingPipelineFailed",
    "BulkCountingFailed",
)


def alarms_by_name(template: Template) -> dict[str, dict]:
    """Alarm properties by the alarm's name in the monitoring component."""
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    named = {}
    for logical_id, alarm in alarms.items():
        (name,) = [
            name
            for name in (*DEAD_LETTER_ALARMS, *OTHER_ALARMS)
            if logical_id.startswith(f"Monitoring{name}")
        ]
        named[name] = alarm["Properties"]
    assert len(named) == len(alarms)
    return named


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
    # 4 dead-letter queues, the counter's 2, the endpoint's 2, 2 state machines.
    assert len(alarms) == 10
    for alarm in alarms.values():
        properties = alarm["Properties"]
        assert len(properties["AlarmActions"]) == 1
        assert properties["OKActions"] == properties["AlarmActions"]
        assert properties["TreatMissingData"] == "notBreaching"
        assert len(properties["AlarmDescription"].split()) >= 8


def test_one_alarm_per_dead_letter_queue_each_named_and_described(template):
    alarms = alarms_by_name(template)
    assert sorted(alarms) == sorted((*DEAD_LETTER_ALARMS, *OTHER_ALARMS))
    dead_letters = {name: alarms[name] for name in DEAD_LETTER_ALARMS}
    for alarm in dead_letters.values():
        assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["Threshold"] == 0
        assert alarm["Statistic"] == "Maximum"
    # Each watches its own queue, in the stack that owns it.
    queues = {json.dumps(alarm["Dimensions"], sort_keys=True) for alarm in dead_letters.values()}
    assert len(queues) == len(DEAD_LETTER_ALARMS)
    descriptions = {name: alarm["AlarmDescription"] for name, alarm in dead_letters.items()}
    assert len(set(descriptions.values())) == len(DEAD_LETTER_ALARMS)
    assert "failed on 5 times" in descriptions["IntakeDeadLetters"]
    assert "redrive" in descriptions["IntakeDeadLetters"]
    assert "EventBridge could not put upload events" in descriptions["UndeliverableUploads"]
    assert "intake queue" in descriptions["UndeliverableUploads"]
    assert "could not reach the state machine" in descriptions["TrainingStartDeadLetters"]
    assert "counting train start" in descriptions["TrainingStartDeadLetters"]
    assert "the launcher could not take" in descriptions["LabelingDeadLetters"]
    assert "upload the request again" in descriptions["LabelingDeadLetters"]


def test_queue_age_alarm(template):
    age = alarm_named(template, "ApproximateAgeOfOldestMessage")
    assert age["Threshold"] == 900


def test_without_the_workforce_there_is_no_labeling_dead_letters_alarm():
    stacks = build_app()[1]  # the workforce is off by default
    assert "labeling" not in stacks
    alarms = alarms_by_name(Template.from_stack(stacks["monitoring"]))
    assert "LabelingDeadLetters" not in alarms
    assert sorted(alarms) == sorted(
        name for name in (*DEAD_LETTER_ALARMS, *OTHER_ALARMS) if name != "LabelingDeadLetters"
    )


def test_dashboard_graphs_every_dead_letter_queue(template):
    dashboards = template.find_resources("AWS::CloudWatch::Dashboard")
    body = json.dumps(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for name in DEAD_LETTER_ALARMS:
        assert f'\\"label\\":\\"{name}\\"' in body, name


def test_dashboard_url_names_the_region(template):
    url = template.find_outputs("DashboardUrl")["DashboardUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://"
    assert url[1] == {"Ref": "AWS::Region"}
    assert url[2] == ".console.aws.amazon.com/cloudwatch/home?region="
    assert url[3] == {"Ref": "AWS::Region"}
    assert url[4] == "#dashboards:name="


def test_endpoint_alarms_watch_the_stable_endpoint_name(template):
    for metric in ("Invocation4XXErrors", "Invocation5XXErrors"):
        alarm = alarm_named(template, metric)
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert {"Name": "EndpointName", "Value": "object-counting-dev-counter"} in alarm[
            "Dimensions"
        ]
    # Cold starts and bursts answer 4xx that the counter retries: only a lasting refusal pages.
    assert alarm_named(template, "Invocation4XXErrors")["EvaluationPeriods"] == 3
    assert alarm_named(template, "Invocation5XXErrors")["EvaluationPeriods"] == 1


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


def test_capped_counts_of_uploads_and_bulk_runs_are_graphed_but_page_no_one(template):
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    # The body is a Fn::Join of JSON text and tokens (ARNs, the region), which sit inside
    # JSON strings: with each token as "T" the text is the dashboard's JSON.
    _, parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"]
    body = json.loads("".join(part if isinstance(part, str) else "T" for part in parts))
    graphs = {widget["properties"].get("title"): widget for widget in body["widgets"]}

    capped = graphs["Images counted at the model's detection cap (counts may be low)"]
    # Every service's series: the counter's and the bulk-counting function's.
    assert capped["properties"]["metrics"] == [
        [
            {
                "expression": "SEARCH('{ObjectCounting,service} MetricName=\"ImagesCapped\"', "
                "'Sum', 300)"
            }
        ]
    ]
    assert "ImagesCapped" not in json.dumps(template.find_resources("AWS::CloudWatch::Alarm"))


@pytest.mark.parametrize(
    ("alarm", "pipeline"),
    [("TrainingPipelineFailed", "training"), ("BulkCountingFailed", "bulk")],
)
def test_a_failed_or_timed_out_run_of_each_state_machine_pages(stacks, template, alarm, pipeline):
    found = alarms_by_name(template)[alarm]
    state_machine = stacks[pipeline].pipeline.state_machine
    arn = stacks[pipeline].resolve(state_machine.state_machine_arn)

    (expression,) = [query for query in found["Metrics"] if "Expression" in query]
    assert expression["Expression"] == "failed + timedOut"
    stats = [query["MetricStat"] for query in found["Metrics"] if "MetricStat" in query]
    assert {(stat["Metric"]["Namespace"], stat["Stat"], stat["Period"]) for stat in stats} == {
        ("AWS/States", "Sum", 300)
    }
    watched = {stat["Metric"]["MetricName"]: stat["Metric"]["Dimensions"] for stat in stats}
    assert sorted(watched) == ["ExecutionsFailed", "ExecutionsTimedOut"]
    for dimensions in watched.values():
        (dimension,) = dimensions
        assert dimension["Name"] == "StateMachineArn"
        # Another stack's state machine: imported from the stack that owns it.
        assert "Fn::ImportValue" in dimension["Value"], dimension
        assert arn["Ref"] in json.dumps(dimension["Value"])
    assert found["Threshold"] == 0


def test_every_alarm_has_its_row_in_the_on_call_page(template):
    page = (ROOT / "docs" / "operating.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", page, flags=re.MULTILINE))

    assert documented == set(alarms_by_name(template)), "docs/operating.md's alarm table"
