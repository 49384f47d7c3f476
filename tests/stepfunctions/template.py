"""The state machine definition exactly as synthesized, with CloudFormation's values filled in.

CDK writes a definition as ``Fn::Join`` of text and references (``Ref``, ``Fn::GetAtt``,
``Fn::FindInMap``, ``Fn::ImportValue`` of another stack's output). ``render`` resolves
them as CloudFormation would in one account and Region, with stand-in physical names
(``arn:aws:lambda:<region>:<account>:function:<logical id>``), so that the interpreter
runs the very definition CDK produced, not a copy.
"""

from __future__ import annotations

import json
import re
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


class Templates:
    """The synthesized templates of one app, by stack name."""

    def __init__(self, templates: dict[str, dict]) -> None:
        self._templates = templates

    def stacks(self) -> list[str]:
        """The stack names."""
        return list(self._templates)

    def definition(self, stack: str) -> dict[str, Any]:
        """The ASL of the one state machine in ``stack``."""
        (machine,) = self.resources(stack, "AWS::StepFunctions::StateMachine").values()
        return json.loads(self.resolve(stack, machine["Properties"]["DefinitionString"]))

    def resources(self, stack: str, resource_type: str) -> dict[str, dict]:
        resources = self._templates[stack]["Resources"]
        return {name: body for name, body in resources.items() if body["Type"] == resource_type}

    def resolve(self, stack: str, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(stack, item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) != 1 or not next(iter(node)).startswith(("Ref", "Fn::")):
            return {key: self.resolve(stack, value) for key, value in node.items()}
        ((function, argument),) = node.items()
        functions = {
            "Ref": lambda name: self._ref(stack, name),
            "Fn::GetAtt": lambda name_and_attribute: self._arn(stack, name_and_attribute[0]),
            "Fn::Join": lambda join: join[0].join(
                str(self.resolve(stack, part)) for part in join[1]
            ),
            "Fn::FindInMap": lambda lookup: self._find_in_map(stack, *lookup),
            "Fn::ImportValue": lambda name: self._import(self.resolve(stack, name)),
            "Fn::Select": lambda pick: self.resolve(stack, pick[1])[int(pick[0])],
            "Fn::Split": lambda split: str(self.resolve(stack, split[1])).split(split[0]),
            # CDK's asset locations: a string with ${pseudo parameters} (no variable map).
            "Fn::Sub": lambda text: self._sub(stack, text),
        }
        if function not in functions:
            raise NotImplementedError(f"{function} in {stack}")
        return functions[function](argument)

    def _sub(self, stack: str, text: str) -> str:
        if not isinstance(text, str):
            raise NotImplementedError(f"Fn::Sub with a variable map in {stack}")
        for name in re.findall(r"\$\{([^}]+)\}", text):
            text = text.replace(f"${{{name}}}", str(self._ref(stack, name)))
        return text

    def _find_in_map(self, stack: str, mapping: str, key: Any, name: Any) -> Any:
        resolved_key, resolved_name = self.resolve(stack, key), self.resolve(stack, name)
        return self._templates[stack]["Mappings"][mapping][resolved_key][resolved_name]

    def _ref(self, stack: str, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        resource = self._templates[stack]["Resources"][name]
        # Refs that are ARNs, a queue's URL; every other Ref is a physical name, here the
        # logical id.
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-sqs-queue.html
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-secretsmanager-secret.html
        if resource["Type"] in (
            "AWS::SNS::Topic",
            "AWS::StepFunctions::StateMachine",
            "AWS::SecretsManager::Secret",
        ):
            return self._arn(stack, name)
        if resource["Type"] == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return name

    def _arn(self, stack: str, name: str) -> str:
        resource_type = self._templates[stack]["Resources"][name]["Type"]
        service, kind = resource_type.split("::")[1:]
        arns = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::SageMaker::Workteam": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/{name}",
            # Secrets Manager adds a hyphen and six random characters to the name.
            "AWS::SecretsManager::Secret": (
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-a1B2c3"
            ),
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::StepFunctions::StateMachine": (
                f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
            ),
        }
        return arns.get(
            resource_type, f"arn:aws:{service.lower()}:{REGION}:{ACCOUNT}:{kind}/{name}"
        )

    def _import(self, export_name: str) -> Any:
        for stack, template in self._templates.items():
            for output in template.get("Outputs", {}).values():
                export = output.get("Export", {}).get("Name")
                if export is not None and self.resolve(stack, export) == export_name:
                    return self.resolve(stack, output["Value"])
        raise KeyError(f"no stack exports {export_name}")
