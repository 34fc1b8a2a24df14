#!/usr/bin/env python3
"""Lints template.yaml the way CloudFormation will see it: expands the SAM
transform with aws-sam-translator (cfn-lint alone misses mistakes inside
AWS::Serverless::* resources), then runs cfn-lint on the result and on the
source. Offline: the template names no AWS managed policy, so the policy
loader is never asked to reach IAM (it fails loudly if it ever is)."""

import json
import os
import subprocess
import sys

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


def main():
    # `--expand-to PATH`: only the expansion (the template tests read the
    # permissions SAM generates from it).
    if len(sys.argv) == 3 and sys.argv[1] == "--expand-to":
        expand(sys.argv[2])
        return
    # Kept for checkov, which then sees the role SAM generates (dev/test.sh).
    expand(EXPANDED)
    for path in ("template.yaml", EXPANDED):
        print(f"cfn-lint {path if path == 'template.yaml' else 'template.yaml expanded by aws-sam-translator'}")
        result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "cfn-lint"), path])
        if result.returncode != 0:
            sys.exit(result.returncode)


if __name__ == "__main__":
    main()
