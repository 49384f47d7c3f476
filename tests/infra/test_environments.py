"""Every function of every configuration gets the environment its handler reads.

Each ``AWS::Lambda::Function`` whose ``Handler`` is ``lambdas.<folder>.handler.main`` is one
of ours; its ``Environment.Variables`` must hold every variable the folder's contract
(``counting_core.contracts.<folder>.Environment``) requires, none it does not name, and
values the handler accepts. Functions CDK adds (custom resources, log retention, bucket
notifications) have other handlers and are left out.

Values CloudFormation fills in at deploy time (``Ref``, ``Fn::GetAtt``, ``Fn::Join`` of
pseudo parameters, ``Fn::ImportValue``) are resolved as CloudFormation would, with stand-in
physical names (``tests/stepfunctions/template.py``: a queue's URL, a role's ARN, a table's
name), and then the whole environment is validated by the contract, exactly as the handler
validates ``os.environ``: names, types and constraints of every value, literal or not.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import counting_core.contracts
from counting_core.contracts.environment import FunctionEnvironment
from tests.conftest import ROOT
from tests.infra.configurations import CONFIGURATIONS
from tests.infra.synth import synthesized

FOLDERS = sorted(path.parent.name for path in (ROOT / "lambdas").glob("*/handler.py"))
HANDLER_PREFIX, HANDLER_SUFFIX = "lambdas.", ".handler.main"


def contract(folder: str) -> type[FunctionEnvironment]:
    environment = importlib.import_module(f"counting_core.contracts.{folder}").Environment
    assert issubclass(environment, FunctionEnvironment)
    return environment


def our_functions(configuration: str) -> list[tuple[str, str, dict]]:
    """(where, handler folder, resolved variables) of each of our functions."""
    templates = synthesized(configuration)
    found = []
    for stack in templates.stacks():
        for logical_id, function in templates.resources(stack, "AWS::Lambda::Function").items():
            properties = function["Properties"]
            handler = properties.get("Handler", "")
            if not handler.startswith(HANDLER_PREFIX):
                continue  # CDK's own functions
            assert handler.endswith(HANDLER_SUFFIX), f"{stack}/{logical_id}: {handler}"
            folder = handler.removeprefix(HANDLER_PREFIX).removesuffix(HANDLER_SUFFIX)
            variables = properties.get("Environment", {}).get("Variables", {})
            found.append((f"{stack}/{logical_id}", folder, templates.resolve(stack, variables)))
    return found


@pytest.mark.synth
@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_every_function_gets_exactly_the_environment_its_contract_names(configuration):
    functions = our_functions(configuration)

    assert functions, "no function of ours found"
    for where, folder, variables in functions:
        model = contract(folder)
        names = {field.alias for field in model.model_fields.values()}
        required = {field.alias for field in model.model_fields.values() if field.is_required()}
        assert sorted(set(variables) - names) == [], f"{where}: variables {folder} does not read"
        assert sorted(required - set(variables)) == [], f"{where}: variables {folder} needs"
        # The handler's own reading of its environment: raises on any value it refuses.
        model.read(variables)


@pytest.mark.synth
def test_every_function_folder_is_deployed_in_some_configuration():
    # Else the walk above could pass by finding no function of a folder at all.
    deployed = {
        folder for configuration in CONFIGURATIONS for _, folder, _ in our_functions(configuration)
    }
    assert sorted(deployed) == FOLDERS


def test_every_function_folder_has_a_contract_with_its_environment():
    modules = {module.name for module in pkgutil.iter_modules(counting_core.contracts.__path__)}
    assert sorted(set(FOLDERS) - modules) == []
    for folder in FOLDERS:
        assert contract(folder).model_fields, folder
