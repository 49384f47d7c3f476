"""The test suite's own rules, checked on its source (see tests/conftest.py).

- Expected values never come from the code under test: in ``assert actual == expected``
  the expected side is written by hand (or read from a hand-checked file), not the result
  of calling a function of counting_core, counting, lambdas, stacks, tools or detector, nor
  one of their upper-case constants (``== DEFAULT_X``, ``== constants.X``): a constant copied
  into the expectation passes whatever its value. Relations between two runs of the same code
  (determinism, bytes vs text) state it: either the same function is called on both sides, or
  the line says ``# same code: <why>``; two production tables that must hold the same entries
  (a pin and what is installed, two lists that cannot import each other) say
  ``# must agree: <why>``.
- ``pytest.raises`` names the exception expected, never bare ``Exception``.
- Every botocore Stubber response or client error states the request it expects
  (``expected_params``), so the request is checked too, not only the answer.

And two rules for the whole repository: every dotted module name written in prose (comments,
docstrings, the strings production code writes into resource descriptions and messages, the
Markdown pages) names a module, and a name in it, that exists; and every ruff security
finding silenced with ``noqa: S...`` says why, after it or in a comment on the line above.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PRODUCTION = {"counting_core", "counting", "lambdas", "adapters", "stacks", "tools", "detector"}
TEST_FILES = sorted(TESTS.rglob("test_*.py"))


def relative(path: Path) -> str:
    return str(path.relative_to(TESTS.parent)) if path.is_relative_to(TESTS.parent) else path.name


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


def is_constant_name(name: str) -> bool:
    return len(name) > 1 and name.isupper()


def production_constants(node: ast.expr, production: set[str]) -> list[str]:
    """Production constants in ``node``: ``NAME`` imported from production, or
    ``module.NAME`` (not an enum member: ``Verdict.REJECTED`` names an outcome, not a value)."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in production and is_constant_name(sub.id):
            found.append(sub.id)
        elif isinstance(sub, ast.Attribute) and is_constant_name(sub.attr):
            parts = ast.unparse(sub.value).split(".")
            if parts[0] in production and all(part[:1].islower() for part in parts):
                found.append(ast.unparse(sub))
    return found


EXPECTATIONS = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)
MARKERS = ("# same code:", "# must agree:")


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
        if not isinstance(compare.ops[-1], EXPECTATIONS):
            continue
        expected = compare.comparators[-1]
        left = compare.comparators[-2] if len(compare.comparators) > 1 else compare.left
        function = called_function(expected, production)
        if not isinstance(compare.ops[-1], ast.Eq) or function in calls(left):
            function = None
        constants = production_constants(expected, production)
        if function is None and not constants:
            continue
        statement = lines[node.lineno - 2 : node.end_lineno]  # with the line above it
        if any(marker in line for line in statement for marker in MARKERS):
            continue
        where = f"{relative(path)}:{node.lineno}"
        if function is not None:
            found.append(f"{where}: expected value from {function}()")
        found.extend(f"{where}: expected value from the constant {name}" for name in constants)
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


# Test files whose asserts against production constants are rewritten with the counter's
# configuration (read lazily, built from a factory). Strict: once a file passes, it
# leaves this list.


@pytest.mark.parametrize(
    "path",
    TEST_FILES,
    ids=relative,
)
def test_expected_values_do_not_come_from_the_code_under_test(path):
    assert expected_values_from_production(path) == []


@pytest.mark.parametrize("path", TEST_FILES, ids=relative)
def test_exceptions_are_named_and_stubs_check_requests(path):
    assert bare_exceptions_and_unchecked_stubs(path) == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\n"
        "from counting_core import constants\n"
        "from counting_core.constants import DEFAULT_THRESHOLD\n"
        "from counting_core.counts.predictions import pixel_box\n"
        "from counting_core.uploads.failures import Verdict\n"
        "def test_it(stub):\n"
        "    assert box == pixel_box((0, 0, 1, 1), 2, 2)\n"
        "    assert pixel_box(b, 2, 2) == pixel_box(b, 2, 2)\n"
        "    assert x == DEFAULT_THRESHOLD\n"
        "    assert x != [constants.MAX_BYTES * 2]\n"
        "    assert x is Verdict.REJECTED\n"
        "    # must agree: two tables that cannot import each other\n"
        "    assert set(a) == set(constants.TABLE)\n"
        "    with pytest.raises(Exception):\n"
        "        pass\n"
        "    stub.add_response('op', {})\n"
        "    stub.add_client_error('op', service_error_code='X')\n"
    )
    found = expected_values_from_production(sample) + bare_exceptions_and_unchecked_stubs(sample)

    assert sorted(found) == [
        "test_sample.py:10: expected value from the constant constants.MAX_BYTES",
        "test_sample.py:14: pytest.raises(Exception)",
        "test_sample.py:16: Stubber.add_response without expected_params",
        "test_sample.py:17: Stubber.add_client_error without expected_params",
        "test_sample.py:7: expected value from pixel_box()",
        "test_sample.py:9: expected value from the constant DEFAULT_THRESHOLD",
    ]


# Module names written in prose: `counting_core.counts.results`, `stacks.config.load_config`.
# Not after a dot, slash or dash (tests.lambdas.conftest, docs/counting.md, my-counting.x).
DOTTED_NAME = re.compile(
    r"(?<![\w./-])(?:counting_core|counting|stacks|lambdas)(?:\.[A-Za-z_]\w*)+"
)
FILE_SUFFIXES = {"md", "py", "json", "txt", "yaml", "toml"}  # docs/counting.md is a page
NOT_SOURCE = {"node_modules", "cdk.out", "build"}  # and every folder starting with "."
# cdk.json's per-stage settings, `counting.stages.<stage>` (stacks/config.py), besides the
# settings docs/configuration.md lists: their `-c counting.<setting>` names look like modules.
STAGE_SETTINGS = "stages"


def repository_files(pattern: str) -> list[Path]:
    root = TESTS.parent
    return sorted(
        path
        for path in root.rglob(pattern)
        if not any(
            part.startswith(".") or part in NOT_SOURCE
            for part in path.relative_to(root).parent.parts
        )
    )


def setting_names() -> set[str]:
    table = (TESTS.parent / "docs" / "configuration.md").read_text("utf-8")
    return set(re.findall(r"^\| `([\w.]+)` \|", table, re.MULTILINE))


def top_level_names(body: list[ast.stmt]) -> dict[str, ast.ClassDef | None]:
    """Names a module or class body binds, with the class for names that are classes."""
    names: dict[str, ast.ClassDef | None] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = None
        elif isinstance(node, ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(
                    (name.id, None) for name in ast.walk(target) if isinstance(name, ast.Name)
                )
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update(((a.asname or a.name).split(".")[0], None) for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            names.update(top_level_names(node.body))
            names.update(top_level_names(node.orelse))
            for handler in getattr(node, "handlers", []):
                names.update(top_level_names(handler.body))
    return names


def module_source(parts: list[str]) -> Path | None:
    base = TESTS.parent.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def resolves(name: str, settings: set[str]) -> bool:
    """Whether ``name`` is a module, or a module and a name it defines (and one level into
    a class: ``module.Class.method``; deeper, or into an imported module, is not followed)."""
    parts = name.split(".")
    setting = ".".join(parts[1:])
    if parts[-1] in FILE_SUFFIXES or (
        parts[0] == "counting"
        and (
            parts[1] == STAGE_SETTINGS
            or any(s == setting or s.startswith(f"{setting}.") for s in settings)
        )
    ):
        return True
    split = next(i for i in range(len(parts), 0, -1) if module_source(parts[:i]))
    path, rest = module_source(parts[:split]), parts[split:]
    if not rest:
        return True
    assert path is not None
    names = top_level_names(ast.parse(path.read_text("utf-8")).body)
    if rest[0] not in names:
        return False
    cls = names[rest[0]]
    if len(rest) == 1 or cls is None:
        return True
    return rest[1] in top_level_names(cls.body) or bool(cls.bases)  # inherited: not followed


def prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of what ``path`` says in words: a page's lines; a test's comments and
    docstrings; production code's comments and every string (messages, descriptions)."""
    source = path.read_text("utf-8")
    if path.suffix == ".md":
        return list(enumerate(source.splitlines(), start=1))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    if not path.is_relative_to(TESTS):
        return [(t.start[0], t.string) for t in tokens if t.type in WORDS]
    found = [(t.start[0], t.string) for t in tokens if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring is not None:
                found.append((node.body[0].lineno, docstring))
    return found


# FSTRING_MIDDLE: the text of an f-string from Python 3.12 on (before, one STRING token).
WORDS = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def unresolved_module_names(paths: list[Path]) -> list[str]:
    settings = setting_names()
    return [
        f"{relative(path)}:{line}: {name}"
        for path in paths
        for line, text in prose(path)
        for name in (match.group(0) for match in DOTTED_NAME.finditer(text))
        if not resolves(name, settings)
    ]


def test_module_names_written_in_prose_exist():
    paths = repository_files("*.py") + repository_files("*.md")

    assert unresolved_module_names(paths) == []


def test_the_module_name_check_catches_what_it_is_for(tmp_path):
    sample = tmp_path / "sample.md"
    sample.write_text(
        "Results: `counting_core.counts.results.count_detections`, `counting.layout` (moved),\n"
        "`stacks.config.AppConfig.prefix`, `stacks.config.NoSuchSetting`, `counting.count`,\n"
        "`-c counting.counter.annotate=false`, `counting.stages.dev`, docs/counting.md,\n"
        "tests.lambdas.conftest, `lambdas.counter.handler.main`.\n"
    )

    assert unresolved_module_names([sample]) == [
        "sample.md:1: counting_core.counts.results.count_detections",
        "sample.md:1: counting.layout",
        "sample.md:2: stacks.config.NoSuchSetting",
    ]


# A noqa comment for a security rule (S603 and the like), and what follows it on the line.
SECURITY_NOQA = re.compile(r"#\s*noqa:\s*S\d+(?:,\s*[A-Z]+\d+)*(?P<rest>.*)")


def unexplained_security_noqa(paths: list[Path]) -> list[str]:
    """``noqa: S...`` with neither words after it nor a comment on the line above: a silenced
    security finding says why it does not apply."""
    found = []
    for path in paths:
        lines = path.read_text("utf-8").splitlines()
        tokens = tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
        for token in tokens:
            match = SECURITY_NOQA.search(token.string) if token.type == tokenize.COMMENT else None
            if match is None:
                continue
            line = token.start[0]
            above = lines[line - 2].strip() if line > 1 else ""
            if not re.search(r"\w", match["rest"]) and not above.startswith("#"):
                found.append(f"{relative(path)}:{line}: {match.group(0).strip()}")
    return found


def test_each_silenced_security_finding_says_why():
    assert unexplained_security_noqa(repository_files("*.py")) == []


def test_the_noqa_check_catches_what_it_is_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import random\n"
        "a = random.random()  # noqa: S311\n"
        "b = random.random()  # noqa: S311 - a jitter, not a secret\n"
        "# Test data, not a secret.\n"
        "c = random.random()  # noqa: S311\n"
        "d = [].sort()  # noqa: SIM115\n"
    )

    assert unexplained_security_noqa([sample]) == ["sample.py:2: # noqa: S311"]
