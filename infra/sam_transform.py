"""Write template.yaml as CloudFormation receives it after the SAM transform (`make test` lints that too).

  python -m infra.sam_transform > .aws-sam/transformed.json

cfn-lint validates a SAM template against SAM's own schema; the roles, permissions, event source mappings and
rules SAM generates are only seen, and linted, after the transform. This runs aws-sam-translator offline: the
managed policies SAM attaches are named by their ARNs, with no call to IAM.
"""

import json
import os
import sys
from typing import Any

from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from infra.local.resources import TEMPLATE

# The AWS managed policies SAM attaches to functions (basic execution, X-Ray, SQS polling), by ARN.
MANAGED = {
    name: f"arn:aws:iam::aws:policy/{path}{name}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/",
        "AWSXrayWriteOnlyAccess": "",
        "AWSLambdaSQSQueueExecutionRole": "service-role/",
        "AWSXRayDaemonWriteAccess": "",
    }.items()
}


class OfflinePolicies:
    """What samtranslator asks IAM for, answered from MANAGED."""

    def load(self) -> dict[str, str]:
        return MANAGED


def transformed() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator resolves ARNs for a region
    template = yaml_parse(TEMPLATE.read_text())
    # As `sam package` leaves it: code uploaded, each local CodeUri/ContentUri replaced by its S3 object.
    for logical_id, resource in template["Resources"].items():
        for name in ("CodeUri", "ContentUri"):
            if name in resource.get("Properties", {}):
                resource["Properties"][name] = f"s3://loyalty-artifacts/{logical_id}.zip"
    parameters = {"OperatorKeySha256": "0" * 64}
    result: dict[str, Any] = transform(template, parameters, OfflinePolicies())
    return result


if __name__ == "__main__":
    json.dump(transformed(), sys.stdout, indent=1)
    sys.stdout.write("\n")
