"""Hypothesis helpers shared by the manifest and COCO tests: damage a valid document anywhere."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

DELETE = object()  # a replacement that removes the key instead

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def node_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """The path (keys and indexes) of every node below ``value``, containers included."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    found = []
    for key, child in children:
        found.append((*prefix, key))
        if isinstance(child, dict | list):
            found += node_paths(child, (*prefix, key))
    return found


def damages(document: Any) -> st.SearchStrategy:
    """Copies of ``document`` with one node replaced by any JSON value, or deleted."""
    return st.builds(
        damaged,
        st.just(document),
        st.sampled_from(node_paths(document)),
        json_values | st.just(DELETE),
    )


def damaged(document: Any, path: tuple, replacement: Any) -> Any:
    result = copy.deepcopy(document)
    *parents, last = path
    parent = result
    for key in parents:
        parent = parent[key]
    if replacement is not DELETE:
        parent[last] = replacement
    elif isinstance(parent, dict):
        del parent[last]
    else:
        parent.pop(last)
    return result
