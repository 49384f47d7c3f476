"""Every `counting` command the docs show works as shown.

Commands that work offline are run, in each page's order, in a scratch directory that
holds `examples/`; where a console block shows what a command prints, the output must be
exactly that. Commands that need AWS are parsed only (their options must exist).
"""

from __future__ import annotations

import argparse
import json
import shlex

import pytest

from counting import build_parser
from tests.docs.pages import PAGES, ROOT, commands, inline_commands, relative

# (command, sub-command) that call AWS, or train and run a model (minutes, and torch from
# make detector; tests/detector runs them on small scenes): they are parsed, never run.
NEEDS_AWS = {
    ("invoke",),
    ("labeling", "start"),
    *(("train", command) for command in ("start", "status", "wait", "rollback")),
    ("bulk", "start"),
    ("stage", "teardown"),
    ("detector", "fetch-weights"),
    ("detector", "train-local"),
    ("detector", "predict"),
}


def needs_aws(argv: tuple[str, ...]) -> bool:
    return argv[:1] in NEEDS_AWS or argv[:2] in NEEDS_AWS


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


SHOWN = [command for page in PAGES for command in commands(page)]
PAGES_RUN = [page for page in PAGES if any(not needs_aws(c.argv) for c in commands(page))]


def test_the_docs_show_offline_and_aws_commands():
    # Guards the parser of the docs: if it found nothing, nothing below would be checked.
    shown = {command.argv[:2] for command in SHOWN}
    assert {("count", "examples/predictions.json"), ("manifest", "from-coco")} <= shown
    assert {("invoke", "--endpoint"), ("labeling", "start"), ("train", "start")} <= shown


@pytest.mark.parametrize("page", PAGES_RUN, ids=relative)
def test_offline_commands_print_what_the_docs_show(page, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")

    for command in commands(page):
        if needs_aws(command.argv):
            continue
        status, out, err = cli(*command.argv)

        assert status == 0, command
        # A console block shows what a terminal does: a summary line on stderr
        # (`manifest from-coco` prints one), then stdout.
        if command.shown_output is not None:
            assert _as_shown(err + out) == _as_shown(command.shown_output), command
        else:
            assert err.count("\n") == len(err.splitlines()) <= 1, command


def _as_shown(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


@pytest.mark.parametrize(
    "command", [c for c in SHOWN if needs_aws(c.argv)], ids=lambda c: shlex.join(c.argv[:2])
)
def test_commands_that_need_aws_parse(command, capsys):
    try:
        args = build_parser().parse_args(list(command.argv))
    except SystemExit:
        pytest.fail(f"{command}: {capsys.readouterr().err.strip()}")
    assert callable(args.handler)


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_commands_named_in_the_text_exist(page):
    parser = build_parser()
    for text in inline_commands(page):
        current = parser
        for word in text.split()[1:]:
            choices = _subcommands(current)
            if not choices or word.startswith(("-", "<")):
                break
            assert word in choices, f"{relative(page)}: `{text}`: no command {word!r}"
            current = choices[word]
