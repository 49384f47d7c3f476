"""The labeling launcher's CreateLabelingJob request, held to botocore's model of the API.

``counting_core.datasets.labeling`` carries a copy of the API's rules for every value it sends (the
Lambda runtime has neither botocore's model nor the ``regex`` module); these tests keep
the copy equal to the model, and prove that a request the launcher accepts is one the
API accepts, so that a bad request always ends as ``.rejected.json``, never as a retried
and dead-lettered event.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counting_core.datasets import labeling
from counting_core.errors import InputError
from tests.contracts.model import java_pattern, operation, request_problems, shape_at
from tests.core.test_labeling import create_labeling_job_request, request_data

INPUT = operation("sagemaker", "CreateLabelingJob").input_shape
# Characters that tell patterns apart: line terminators of every kind, separators, marks,
# letters beyond ASCII, an emoji (two UTF-16 units), and the punctuation ARNs and URIs use.
TRICKY = "aZ09-_./:@=+ \t\n\r\u0085\u2028\u2029\u00a0é中😀\ud7ff\ue000{}<>\"'"
TEXT = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(), max_size=40)
PATTERNED = {
    path: rule for path, rule in labeling.CREATE_LABELING_JOB_RULES.items() if "Tags" not in path
}


@pytest.mark.parametrize("path", labeling.CREATE_LABELING_JOB_RULES)
def test_each_rule_has_the_models_bounds(path):
    rule = labeling.CREATE_LABELING_JOB_RULES[path]
    shape = shape_at(INPUT, path)
    assert (rule.least, rule.most) == (shape.metadata.get("min", 0), shape.metadata["max"])


@pytest.mark.parametrize("path", labeling.CREATE_LABELING_JOB_NUMBERS)
def test_each_number_has_the_models_bounds(path):
    shape = shape_at(INPUT, path)
    assert labeling.CREATE_LABELING_JOB_NUMBERS[path] == (
        shape.metadata["min"],
        shape.metadata.get("max"),
    )


@pytest.mark.parametrize("path", PATTERNED)
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_each_pattern_accepts_what_the_models_accepts(path, data):
    rule = PATTERNED[path]
    model = shape_at(INPUT, path).metadata["pattern"]
    value = data.draw(
        st.from_regex(rule.pattern, fullmatch=True)
        | st.from_regex(java_pattern(model).pattern, fullmatch=True)
        | TEXT
    )
    ours = re.fullmatch(rule.pattern, value) is not None
    assert ours == (java_pattern(model).fullmatch(value) is not None), repr(value)


def known_to_python(value: str) -> bool:
    """Whether Python's Unicode tables know every character of ``value``.

    The launcher classifies letters and numbers with Python's ``unicodedata`` (Unicode 14 on
    3.11, 15 on 3.13); the ``regex`` module reading the model's pattern knows a newer version,
    and which one the API's Java runtime knows is not documented. A character assigned only
    in a newer version is refused by the launcher (category Cn), the safe side: the request
    gets a ``.rejected.json`` instead of an API error. Equality is checked on the rest.
    """
    return all(unicodedata.category(character) != "Cn" for character in value)


@pytest.mark.parametrize("path", ["Tags[].Key", "Tags[].Value"])
@given(value=TEXT)
def test_tag_text_is_checked_as_the_model_reads_it(path, value):
    model = shape_at(INPUT, path).metadata["pattern"]
    rule = labeling.CREATE_LABELING_JOB_RULES[path]
    allowed = java_pattern(model).fullmatch(value) is not None
    fits = rule.least <= len(value.encode("utf-16-le", "surrogatepass")) // 2 <= rule.most
    accepted = rule.problem(value) is None
    # Never accepted where the API refuses; equal wherever both Unicode tables agree.
    assert not accepted or (allowed and fits), repr(value)
    if known_to_python(value):
        assert accepted == (allowed and fits), repr(value)


def built(data: dict, region: str = "eu-west-1") -> dict:
    job_name = labeling.unique_job_name("object-counting-dev")
    return create_labeling_job_request(data, region, job_name)


REQUESTS = st.fixed_dictionaries(
    {
        "batch_name": st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}", fullmatch=True),
        "image_prefix": st.just("labeling/images/street/"),
        "labels": st.lists(TEXT, min_size=1, max_size=10),
        "label_attribute": st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,126}", fullmatch=True) | TEXT,
        "instructions": st.fixed_dictionaries(
            {"short": st.text(alphabet=st.sampled_from(TRICKY), min_size=0, max_size=300)}
        ),
    }
)


@settings(max_examples=300)
@given(data=REQUESTS)
def test_a_request_the_launcher_accepts_is_one_the_api_accepts(data):
    try:
        job = built(data)
        labeling.check_create_labeling_job_request(job)
    except InputError:
        return  # refused with one line: the launcher writes the rejection
    assert request_problems("sagemaker", "CreateLabelingJob", job) == []


@pytest.mark.parametrize("region", sorted(labeling.BOUNDING_BOX_FUNCTION_ACCOUNTS))
def test_every_value_of_a_request_has_a_rule(region):
    job = built(request_data(), region)
    labeling.check_create_labeling_job_request(job)  # raises for a value without a rule
    assert request_problems("sagemaker", "CreateLabelingJob", job) == []


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("HumanTaskConfig.TaskDescription", "two\nlines", "does not match"),
        ("HumanTaskConfig.TaskTitle", "x" * 129, "must be 1 to 128 characters"),
        ("OutputConfig.S3OutputPath", "s3:/bucket", "does not match"),
        ("HumanTaskConfig.TaskKeywords", ["two  spaces"], "does not match"),
        ("Tags", [{"Key": "batch", "Value": "a;b"}], "may hold only"),
        ("HumanTaskConfig.NumberOfHumanWorkersPerDataObject", 10, "out of range"),
    ],
)
def test_a_value_the_api_refuses_is_named(path, value, reason):
    job = built(request_data())
    *parents, leaf = path.split(".")
    target = job
    for part in parents:
        target = target[part]
    target[leaf] = value
    assert request_problems("sagemaker", "CreateLabelingJob", job) != []

    with pytest.raises(InputError, match=re.escape(path)) as refused:
        labeling.check_create_labeling_job_request(job)
    assert reason in str(refused.value)
