"""Write a Markdown report an auditor can read from the synthesized templates.

Usage: python -m tools.audit CDK_OUT_DIR REPORT.md

Who can do what to which data: every IAM role with its trust policy and
statements, every resource-based policy (key, bucket, queue and topic policies,
Lambda permissions) with its statements, every data store with its encryption,
public access, TLS and retention settings, every cdk-nag acknowledgment with its
reason, and resource counts per stack. Output is sorted and has no timestamps, so
the same templates give the same bytes and a pull request shows a readable diff.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

DATA_STORES = {
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::Logs::LogGroup",
    "AWS::KMS::Key",
    "AWS::SSM::Parameter",
}


# How each intrinsic function reads in the report, given its argument.
_INTRINSICS: dict[str, Any] = {
    "Ref": lambda argument: f"<{argument}>",
    "Fn::GetAtt": lambda argument: f"<{'.'.join(argument)}>",
    "Fn::Join": lambda argument: argument[0].join(render(part) for part in argument[1]),
    "Fn::ImportValue": lambda argument: f"<import {render(argument)}>",
    "Fn::Sub": lambda argument: render(argument if isinstance(argument, str) else argument[0]),
    "Fn::Select": lambda argument: f"<item {argument[0]} of {render(argument[1])}>",
    "Fn::Split": lambda argument: f"<split {render(argument[1])} on {argument[0]!r}>",
}


def render(value: Any) -> str:
    """CloudFormation values as short text: ``Ref`` and ``GetAtt`` become names."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(render(item) for item in value)
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function in _INTRINSICS:
            return _INTRINSICS[function](argument)
    return json.dumps(value, sort_keys=True)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _role_statements(resources: dict[str, dict], role_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Inline and attached AWS::IAM::Policy statements that apply to ``role_id``."""
    found = [
        (f"inline {policy.get('PolicyName', '')}", statement)
        for policy in resources[role_id]["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        roles = resource["Properties"].get("Roles", [])
        if {"Ref": role_id} in roles:
            found.extend(
                (logical_id, statement)
                for statement in resource["Properties"]["PolicyDocument"]["Statement"]
            )
    return found


def iam_section(resources: dict[str, dict]) -> list[str]:
    lines = []
    for role_id, role in sorted(resources.items()):
        if role["Type"] != "AWS::IAM::Role":
            continue
        properties = role["Properties"]
        trusted = sorted(
            render(statement.get("Principal", {}))
            for statement in properties["AssumeRolePolicyDocument"]["Statement"]
        )
        lines += [f"#### Role `{role_id}`", "", f"Trusted by: {', '.join(trusted)}", ""]
        if managed := properties.get("ManagedPolicyArns"):
            lines += [f"Managed policies: {render(managed)}", ""]
        lines += ["| Effect | Actions | Resources | Conditions |", "| --- | --- | --- | --- |"]
        for _, statement in _role_statements(resources, role_id):
            actions = ", ".join(sorted(render(a) for a in _as_list(statement.get("Action", []))))
            targets = ", ".join(sorted(render(r) for r in _as_list(statement.get("Resource", []))))
            conditions = render(statement["Condition"]) if "Condition" in statement else ""
            lines.append(
                f"| {statement['Effect']} | {cell(actions)} | {cell(targets)} "
                f"| {cell(conditions)} |"
            )
        lines.append("")
    return lines


# Resource types that carry a resource-based policy: who else may use what they protect.
RESOURCE_POLICIES = {
    "AWS::KMS::Key",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::Lambda::Permission",
}
# What a Lambda permission allows only under, besides its principal.
_LAMBDA_PERMISSION_CONDITIONS = (
    "EventSourceToken",
    "FunctionUrlAuthType",
    "PrincipalOrgID",
    "SourceAccount",
    "SourceArn",
)


def _principal(principal: Any) -> str:
    """``{"Service": ["a", "b"]}`` as ``Service: a, b``; several kinds joined by ``; ``."""
    if isinstance(principal, dict) and not _is_intrinsic(principal):
        return "; ".join(
            f"{kind}: {', '.join(sorted(render(value) for value in _as_list(values)))}"
            for kind, values in sorted(principal.items())
        )
    return render(principal)


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSICS


def _conditions(condition: dict[str, dict[str, Any]]) -> str:
    """``{"Bool": {"aws:SecureTransport": "false"}}`` as ``Bool aws:SecureTransport = false``."""
    return "; ".join(
        f"{operator} {key} = {', '.join(sorted(render(value) for value in _as_list(values)))}"
        for operator, keys in sorted(condition.items())
        for key, values in sorted(keys.items())
    )


def _policy_statements(logical_id: str, resource: dict) -> tuple[str, list[dict[str, Any]]]:
    """What a resource-based policy protects, and its statements.

    A key's policy protects the key itself. A Lambda permission reads as one statement
    whose conditions are its source restrictions (``SourceArn = ...``).
    """
    kind, properties = resource["Type"], resource.get("Properties", {})
    if kind == "AWS::Lambda::Permission":
        principal = properties["Principal"]
        if isinstance(principal, str) and principal != "*":
            principal = {"Service" if "amazonaws.com" in principal else "AWS": principal}
        restrictions = "; ".join(
            f"{name} = {render(properties[name])}"
            for name in _LAMBDA_PERMISSION_CONDITIONS
            if name in properties
        )
        statement = {
            "Effect": "Allow",
            "Principal": principal,
            "Action": properties["Action"],
            "Resource": properties["FunctionName"],
            "Restrictions": restrictions,
        }
        return render(properties["FunctionName"]), [statement]
    if kind == "AWS::KMS::Key":
        return render({"Ref": logical_id}), properties.get("KeyPolicy", {}).get("Statement", [])
    targets = properties.get("Bucket") or properties.get("Queues") or properties.get("Topics")
    return render(targets), properties["PolicyDocument"]["Statement"]


def resource_policy_section(resources: dict[str, dict]) -> list[str]:
    rows = []
    for logical_id, resource in resources.items():
        if resource["Type"] not in RESOURCE_POLICIES:
            continue
        protects, statements = _policy_statements(logical_id, resource)
        for statement in statements:
            actions = ", ".join(sorted(render(a) for a in _as_list(statement.get("Action", []))))
            targets = ", ".join(sorted(render(r) for r in _as_list(statement.get("Resource", []))))
            conditions = statement.get("Restrictions") or _conditions(
                statement.get("Condition", {})
            )
            rows.append(
                (
                    f"`{cell(protects)}`",
                    f"`{logical_id}`",
                    statement["Effect"],
                    cell(_principal(statement.get("Principal", ""))),
                    cell(actions),
                    cell(targets),
                    cell(conditions),
                )
            )
    if not rows:
        return []
    lines = [
        "| Protects | Policy | Effect | Principal | Actions | Resources | Conditions |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in sorted(rows)]
    return [*lines, ""]


def _tls_only(resources: dict[str, dict], logical_id: str) -> str:
    """Whether a bucket, queue or topic policy denies requests without TLS."""
    for resource in resources.values():
        properties = resource.get("Properties", {})
        targets = [
            *_as_list(properties.get("Bucket")),
            *properties.get("Queues", []),
            *properties.get("Topics", []),
        ]
        if {"Ref": logical_id} not in targets:
            continue
        for statement in properties.get("PolicyDocument", {}).get("Statement", []):
            condition = statement.get("Condition", {}).get("Bool", {})
            if statement["Effect"] == "Deny" and condition.get("aws:SecureTransport") == "false":
                return "yes"
    return "no"


def _encryption(kind: str, properties: dict) -> str:
    if kind == "AWS::S3::Bucket":
        rules = properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        return (
            ", ".join(rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules)
            or "none"
        )
    if kind == "AWS::DynamoDB::Table":
        sse = properties.get("SSESpecification", {})
        return "KMS (customer key)" if sse.get("KMSMasterKeyId") else "AWS owned key"
    if kind in ("AWS::SQS::Queue", "AWS::SNS::Topic"):
        return "KMS (customer key)" if properties.get("KmsMasterKeyId") else "none"
    if kind == "AWS::Logs::LogGroup":
        return "KMS (customer key)" if properties.get("KmsKeyId") else "CloudWatch default"
    if kind == "AWS::KMS::Key":
        return f"rotation {'on' if properties.get('EnableKeyRotation') else 'off'}"
    return "-"


def _public_access(kind: str, properties: dict) -> str:
    if kind != "AWS::S3::Bucket":
        return "no public endpoint"
    block = properties.get("PublicAccessBlockConfiguration", {})
    return "all blocked" if block and all(block.values()) else "NOT fully blocked"


def _retention(kind: str, resource: dict) -> str:
    properties = resource.get("Properties", {})
    parts = [f"on delete: {resource.get('DeletionPolicy', 'Delete')}"]
    if kind == "AWS::S3::Bucket":
        if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            parts.append("versioned")
        for rule in properties.get("LifecycleConfiguration", {}).get("Rules", []):
            if days := rule.get("ExpirationInDays"):
                # A rule with a prefix expires only the objects under it.
                under = f" under {prefix}" if (prefix := rule.get("Prefix")) else ""
                parts.append(f"objects{under} expire after {days} d")
            if noncurrent := rule.get("NoncurrentVersionExpiration"):
                parts.append(f"old versions expire after {noncurrent['NoncurrentDays']} d")
    if kind == "AWS::DynamoDB::Table":
        recovery = properties.get("PointInTimeRecoverySpecification", {})
        if recovery.get("PointInTimeRecoveryEnabled"):
            parts.append("point-in-time recovery")
        if properties.get("DeletionProtectionEnabled"):
            parts.append("deletion protection")
        if ttl := properties.get("TimeToLiveSpecification"):
            parts.append(f"TTL on `{ttl['AttributeName']}`")
    if kind == "AWS::SQS::Queue" and "MessageRetentionPeriod" in properties:
        parts.append(f"messages kept {properties['MessageRetentionPeriod'] // 86400} d")
    if kind == "AWS::Logs::LogGroup":
        parts.append(f"logs kept {properties.get('RetentionInDays', 'forever')} d")
    return ", ".join(parts)


def data_section(resources: dict[str, dict]) -> list[str]:
    lines = [
        "| Resource | Type | Encryption | Public access | TLS only | Retention |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for logical_id, resource in sorted(resources.items()):
        kind = resource["Type"]
        if kind not in DATA_STORES:
            continue
        properties = resource.get("Properties", {})
        tls = _tls_only(resources, logical_id) if kind in (
            "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::SNS::Topic"
        ) else "-"  # fmt: skip
        lines.append(
            f"| `{logical_id}` | {kind} | {cell(_encryption(kind, properties))} "
            f"| {_public_access(kind, properties)} | {tls} | {cell(_retention(kind, resource))} |"
        )
    return [*lines, ""]


def training_storage_section(resources: dict[str, dict]) -> list[str]:
    """Where each training job a state machine starts keeps its data, and how it is encrypted.

    Instances with local NVMe storage (ml.g4dn, ml.g5) encrypt it in hardware, and
    SageMaker refuses a volume key for them; the others get an EBS volume under the key.
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
    """
    lines = []
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        # The definition is text joined with references: render each reference without
        # double quotes, so that the whole stays JSON.
        _, parts = resource["Properties"]["DefinitionString"]["Fn::Join"]
        definition = json.loads(
            "".join(
                part if isinstance(part, str) else render(part).replace('"', "'") for part in parts
            )
        )
        for name, state in sorted(definition["States"].items()):
            if ":createTrainingJob" not in state.get("Resource", ""):
                continue
            config = state["Parameters"]["ResourceConfig"]
            storage = (
                f"EBS volume, KMS (customer key {config['VolumeKmsKeyId']})"
                if "VolumeKmsKeyId" in config
                else "the instance's NVMe storage, encrypted by the instance's hardware"
            )
            lines.append(
                f"| `{logical_id}` | `{name}` | `{config['InstanceType']}` | {cell(storage)} |"
            )
    if not lines:
        return []
    header = [
        "| State machine | State | Instance type | Training storage |",
        "| --- | --- | --- | --- |",
    ]
    return [*header, *lines, ""]


def acknowledgment_section(resources: dict[str, dict]) -> list[str]:
    lines = ["| Resource | Rule | Reason |", "| --- | --- | --- |"]
    for logical_id, resource in sorted(resources.items()):
        metadata = resource.get("Metadata", {})
        for rule in metadata.get("cdk_nag", {}).get("rules_to_suppress", []):
            lines.append(f"| `{logical_id}` | `{rule['id']}` | {cell(rule['reason'])} |")
        for check in metadata.get("checkov", {}).get("skip", []):
            lines.append(f"| `{logical_id}` | checkov `{check['id']}` | {cell(check['comment'])} |")
    return [*lines, ""]


ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def report(cdk_out: Path) -> str:
    templates = sorted(cdk_out.glob("*.template.json"))
    lines = [
        "# Infrastructure audit report",
        "",
        "Written by `make audit` from the templates in `cdk.out/`; do not edit by hand.",
        "Each section answers one question: who may do what (IAM roles, and resource",
        "policies on keys, buckets, queues, topics and functions), how data is kept (data",
        "stores), which best-practice findings were accepted and why (cdk-nag).",
        "",
    ]
    for path in templates:
        stack = path.name.removesuffix(".template.json")
        resources = json.loads(path.read_text())["Resources"]
        counts = Counter(resource["Type"] for resource in resources.values())
        lines += [f"## Stack `{stack}`", "", "### Resources by type", ""]
        lines += ["| Type | Count |", "| --- | --- |"]
        lines += [f"| {kind} | {count} |" for kind, count in sorted(counts.items())]
        lines += ["", "### IAM roles", ""]
        lines += iam_section(resources) or ["None.", ""]
        lines += ["### Resource policies", ""]
        lines += resource_policy_section(resources) or ["None.", ""]
        lines += ["### Data stores", ""]
        lines += data_section(resources)
        if storage := training_storage_section(resources):
            lines += ["### Training job storage", "", *storage]
        lines += ["### cdk-nag and checkov acknowledgments", ""]
        lines += acknowledgment_section(resources)
    # CDK names asset objects by their content's hash (the torchvision job's code, granted by
    # its exact key): masked, as in the snapshots, so a code-only change leaves the report as is.
    return ASSET_HASH.sub("<asset-hash>", "\n".join(lines).rstrip("\n") + "\n")


def main(cdk_out: str, destination: str) -> int:
    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report(Path(cdk_out)), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
