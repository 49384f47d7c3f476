"""The test suite's own rules, checked on its source (see tests/conftest.py).

- Expected values never come from the code under test: in ``assert actual == expected``
  the expected side is written by hand (or read from a hand-checked file), not the result
  of calling a function of counting_core, counting, lambdas, stacks, tools or detector. Relations
  between two runs of the same code (determinism, bytes vs text) state it: either the
  same function is called on both sides, or the line says ``# same code: <why>``.
- ``pytest.raises`` names the exception expected, never bare ``Exception``.
- Every botocore Stubber response or client error states the request it expects
  (``expected_params``), so the request is checked too, not only the answer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PRODUCTION = {"counting_core", "counting", "lambdas", "stacks", "tools", "detector"}
TEST_FILES = sorted(TESTS.rglob("test_*.py"))


def relative(path: Path) -> str:
    return str(path.relative_to(TESTS.parent)) if path.is_relative_to(TESTS) else path.name


def production_names(tree: ast.Module) -> set[str]:
    """Names a test module binds to production modules or their functions."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PRODUCTION:
                names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PRODUCTION:
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def called_function(node: ast.expr, production: set[str]) -> str | None:
    """``f`` or ``module.f`` when ``node`` calls a production function (not a class)."""
    if not isinstance(node, ast.Call):
        return None
    root = node.func
    while isinstance(root, ast.Attribute):
        root = root.value
    if not (isinstance(root, ast.Name) and root.id in production):
        return None
    name = ast.unparse(node.func)
    return None if name.rsplit(".", 1)[-1][:1].isupper() else name


def calls(node: ast.expr) -> set[str]:
    return {ast.unparse(call.func) for call in ast.walk(node) if isinstance(call, ast.Call)}


def expected_values_from_production(path: Path) -> list[str]:
    source = path.read_text("utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    production = production_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        compare = node.test
        if not isinstance(compare.ops[-1], ast.Eq):
            continue
        function = called_function(compare.comparators[-1], production)
        left = compare.comparators[-2] if len(compare.comparators) > 1 else compare.left
        if function is None or function in calls(left):
            continue
        statement = lines[node.lineno - 2 : node.end_lineno]  # with the line above it
        if any("# same code:" in line for line in statement):
            continue
        found.append(f"{relative(path)}:{node.lineno}: expected value from {function}()")
    return found


def bare_exceptions_and_unchecked_stubs(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        keywords = {keyword.arg for keyword in node.keywords}
        where = f"{relative(path)}:{node.lineno}"
        if (
            name == "raises"
            and node.args
            and ast.unparse(node.args[0])
            in {
                "Exception",
                "BaseException",
            }
        ):
            found.append(f"{where}: pytest.raises({ast.unparse(node.args[0])})")
        if name == "add_response" and len(node.args) < 3 and "expected_params" not in keywords:
            found.append(f"{where}: Stubber.add_response without expected_params")
        if name == "add_client_error" and "expected_params" not in keywords:
            found.append(f"{where}: Stubber.add_client_error without expected_params")
    return found


@pytest.mark.parametrize("path", TEST_FILES, ids=relative)
def test_expected_values_do_not_come_from_the_code_under_test(path):
    assert expected_values_from_production(path) == []


@pytest.mark.parametrize("path", TEST_FILES, ids=relative)
def test_exceptions_are_named_and_stubs_check_requests(path):
    assert bare_exceptions_and_unchecked_stubs(path) == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\n"
        "from counting_core.counts.predictions import pixel_box\n"
        "def test_it(stub):\n"
        "    assert box == pixel_box((0, 0, 1, 1), 2, 2)\n"
        "    assert pixel_box(b, 2, 2) == pixel_box(b, 2, 2)\n"
        "    with pytest.raises(Exception):\n"
        "        pass\n"
        "    stub.add_response('op', {})\n"
        "    stub.add_client_error('op', service_error_code='X')\n"
    )
    found = expected_values_from_production(sample) + bare_exceptions_and_unchecked_stubs(sample)

    assert sorted(found) == [
        "test_sample.py:4: expected value from pixel_box()",
        "test_sample.py:6: pytest.raises(Exception)",
        "test_sample.py:8: Stubber.add_response without expected_params",
        "test_sample.py:9: Stubber.add_client_error without expected_params",
    ]
