#!/usr/bin/env python3
"""Lints template.yaml the way CloudFormation will see it: expands the SAM
transform with aws-sam-translator (cfn-lint alone misses mistakes inside
AWS::Serverless::* resources), then runs cfn-lint on the result and on the
source. Offline: the template names no AWS managed policy, so the policy
loader is never asked to reach IAM (it fails loudly if it ever is)."""

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib

import yaml
from samtranslator.translator.transform import transform


EXPANDED = ".dev/template.expanded.json"


class OfflinePolicies:
    """The template names no managed policy; reaching for one is a mistake."""

    def load(self):
        sys.exit("template.yaml refers to an AWS managed policy by name; use inline statements")


def expand(path):
    """Writes template.yaml as CloudFormation sees it after the SAM transform."""
    # The translator fills in AWS::Region; any region will do for linting.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open("template.yaml") as f:
        template = yaml.safe_load(f)
    # `sam package` replaces local code paths with S3 locations before CloudFormation sees them.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://flakefleet-artifacts/bootstrap.zip"
    expanded = transform(template, {}, OfflinePolicies())
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as out:
        json.dump(expanded, out, indent=1)


def check_samconfig(template):
    """samconfig.toml deploys as the quick start says: with the capabilities
    the named deploy role needs, every required parameter given, and only
    parameters the template has, each to a value it allows."""
    with open("samconfig.toml", "rb") as f:
        config = tomllib.load(f)
    parameters = template["Parameters"]
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    for env, commands in config.items():
        if env == "version":
            continue
        deploy = commands["deploy"]["parameters"]
        problems = []
        capabilities = set(deploy.get("capabilities", "").split())
        if not {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"} <= capabilities:
            problems.append("capabilities must include CAPABILITY_IAM and CAPABILITY_NAMED_IAM")
        given = dict(item.split("=", 1) for item in shlex.split(deploy.get("parameter_overrides", "")))
        for name, value in given.items():
            spec = parameters.get(name)
            if spec is None:
                problems.append(f"{name} is not a parameter of template.yaml")
            elif "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
                problems.append(f"{name}={value!r} is not one of {spec['AllowedValues']}")
            elif "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
                problems.append(f"{name}={value!r} does not match its AllowedPattern")
        problems += [f"{name} is required and not given" for name in sorted(required - set(given))]
        if "beta_features" in commands.get("build", {}).get("parameters", {}):
            problems.append("beta_features: SAM CLI 1.155 and later build rust-cargolambda without it")
        if problems:
            sys.exit(f"samconfig.toml [{env}]: " + "; ".join(problems))
        print(f"samconfig.toml [{env}]: {len(given)} parameters, all of template.yaml's")


def main():
    # `--expand-to PATH`: only the expansion (the template tests read the
    # permissions SAM generates from it).
    if len(sys.argv) == 3 and sys.argv[1] == "--expand-to":
        expand(sys.argv[2])
        return
    with open("template.yaml") as f:
        check_samconfig(yaml.safe_load(f))
    # The parameter reference in docs/ is the template's own.
    checked = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "parameters.py"), "--check"])
    if checked.returncode != 0:
        sys.exit(checked.returncode)
    # Kept for checkov, which then sees the role SAM generates (dev/test.sh).
    expand(EXPANDED)
    for path in ("template.yaml", EXPANDED):
        print(f"cfn-lint {path if path == 'template.yaml' else 'template.yaml expanded by aws-sam-translator'}")
        result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "cfn-lint"), path])
        if result.returncode != 0:
            sys.exit(result.returncode)


if __name__ == "__main__":
    main()
