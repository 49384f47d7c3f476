"""One wording for every pydantic validation error: config, labeling requests, training starts."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from counting_core.errors import describe_validation_error


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=1)


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=100)
    inner: Inner
    tags: list[str] = []

    @field_validator("tags")
    @classmethod
    def _no_blank_tags(cls, tags: list[str]) -> list[str]:
        if "" in tags:
            raise ValueError("a tag is empty")
        return tags

    @model_validator(mode="after")
    def _name_is_not_a_tag(self) -> Outer:
        if self.name in self.tags:
            raise ValueError("name and tags overlap")
        return self


def problems(data: object, **options: str) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(data)
    return describe_validation_error(caught.value, **options)


def test_each_kind_of_problem_has_its_wording():
    assert problems({"name": "a", "inner": {"size": 0, "colour": 1}, "tags": [""], "x": 2}) == [
        "inner.size: Input should be greater than or equal to 1 (got 0)",
        "inner.colour: unknown key",
        "tags: a tag is empty",
        "x: unknown key",
    ]
    assert problems({"inner": 5}) == ["name: missing", "inner: must be a JSON object"]
    assert problems({"name": "a", "inner": {"size": 1}, "tags": [7]}) == [
        "tags[0]: Input should be a valid string (got 7)"
    ]


def test_the_whole_input_and_unknown_fields_are_named_as_the_caller_says():
    assert problems([], whole="request") == ["request: must be a JSON object"]
    assert problems({"name": "a", "inner": {"size": 1}, "y": 1}, unknown="unknown setting") == [
        "y: unknown setting"
    ]
    # A rule across fields names them itself: no location.
    assert problems({"name": "a", "inner": {"size": 1}, "tags": ["a"]}) == ["name and tags overlap"]


def test_a_long_refused_value_is_cut():
    (line,) = problems({"name": "n" * 500, "inner": {"size": 1}})

    assert line == (
        "name: String should have at most 100 characters (got "
        "'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...)"
    )
    assert len(line) < 200
