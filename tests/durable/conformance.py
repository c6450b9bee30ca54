"""AWS's durable execution conformance suite against stoke.

For each requirement that has a handler under tests/durable/handlers/<suite>/<id>.py, creates a durable function
running it (AWS's Python SDK from a layer), invokes it through the suite's own invoker and validates the
execution's history and result with the suite's own validator (`validate_description`), unchanged. The suite
deploys with SAM and CloudFormation on AWS; here the invoker's function map is filled in beforehand and the one
CloudFormation call (a function's physical name, to find its log group) answers the name given: the only things
replaced. Requirements whose checks read the function's logs read them through CloudWatch Logs' FilterLogEvents
on this server, the functions logging in JSON as the suite's templates have them.

Environment: STOKE_ENDPOINT, STOKE_AKID, STOKE_SECRET, STOKE_ACCOUNT, STOKE_DURABLE_WHEELS (the SDK's wheels),
STOKE_CONFORMANCE (the suite's package, unpacked). Arguments: requirement ids to run (default: every one with a
handler). Prints one line per requirement and "all checks passed" when every one run passed.
"""

import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.environ["STOKE_CONFORMANCE"])
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from aws_durable_execution_conformance_tests.clients import AwsClients  # noqa: E402
from aws_durable_execution_conformance_tests.sam import Invoker  # noqa: E402
from aws_durable_execution_conformance_tests.validate import validate_description  # noqa: E402
from durable_helpers import ACCOUNT, ENDPOINT, code, lam, sdk_layer  # noqa: E402

HANDLERS = Path(__file__).resolve().parent / "handlers"
# Shipped next to every handler (what several share).
HELPERS = HANDLERS / "conformance_helpers.py"
REQUIREMENTS = Path(os.environ["STOKE_CONFORMANCE"]) / "aws_durable_execution_conformance_tests" / "test_requirements"


def requirement_ids():
    found = {}
    for path in sorted(HANDLERS.glob("*/*.py")):
        if re.fullmatch(r"[0-9]+-[0-9]+", path.stem):
            found[path.stem] = path
    wanted = sys.argv[1:] or sorted(found, key=lambda i: [int(p) for p in i.split("-")])
    return [(i, found[i]) for i in wanted]


def create(name, source, layer):
    """A durable function `name` running `source` with the SDK's layer."""
    try:
        lam.delete_function(FunctionName=name)  # from an earlier run against the same server
    except lam.exceptions.ResourceNotFoundException:
        pass
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=f"arn:aws:iam::{ACCOUNT}:role/conformance",
        Handler="app.handler",
        Code={"ZipFile": code(source, HELPERS.read_text())},
        Timeout=60,
        MemorySize=256,
        Layers=[layer],
        DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 7},
        LoggingConfig={"LogFormat": "JSON"},
    )


class Stack:
    """The one CloudFormation call the suite makes: a function's physical name is the name it was given."""

    def describe_stack_resource(self, StackName, LogicalResourceId):  # noqa: N803 (boto3's names)
        return {"StackResourceDetail": {"PhysicalResourceId": LogicalResourceId}}


def logs_client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "logs",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ["STOKE_AKID"],
        aws_secret_access_key=os.environ["STOKE_SECRET"],
        config=Config(retries={"max_attempts": 1}),
    )


def main():
    layer = lam.publish_layer_version(LayerName="durable-sdk", Content={"ZipFile": sdk_layer()})["LayerVersionArn"]
    ids = requirement_ids()
    # The chained-invoke requirements' targets: durable functions of their own.
    for target in sorted((Path(__file__).resolve().parent / "targets").glob("*.py")):
        create("ct-target-" + target.stem, target.read_text(), layer)
    function_map = {}
    for rid, handler in ids:
        name = "ct-" + rid
        create(name, handler.read_text(), layer)
        function_map[name] = name
    invoker = Invoker(stack_name="stoke", region="us-east-1", lambda_client=lam)
    invoker._function_map = function_map  # CloudFormation is never asked: the functions are named here.
    clients = AwsClients({"lambda": lam, "logs": logs_client(), "cloudformation": Stack()})
    out = tempfile.mkdtemp()

    def run(item):
        rid, handler = item
        test_file = REQUIREMENTS / handler.parent.name / f"{rid}.yaml"
        started = time.time()
        result = validate_description("ct-" + rid, rid, str(test_file), invoker, out, "us-east-1", clients, out)
        return rid, result.passed, result.errors, time.time() - started

    failed = 0
    suites = {}  # suite → [passed, failed]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for (rid, passed, errors, took), (_, handler) in zip(pool.map(run, ids), ids):
            tally = suites.setdefault(handler.parent.name, [0, 0])
            print(f"{'PASS' if passed else 'FAIL'} {rid} ({took:.1f} s)")
            tally[0 if passed else 1] += 1
            if not passed:
                failed += 1
                for e in errors:
                    print(f"    {e}")
    print(f"{'suite':<20} {'requirements':>12} {'passed':>7} {'failed':>7} {'not run':>8}")
    for suite in sorted(os.listdir(REQUIREMENTS)):
        if not (REQUIREMENTS / suite).is_dir():
            continue
        total = len(list((REQUIREMENTS / suite).glob("*.yaml")))
        passed_n, failed_n = suites.get(suite, [0, 0])
        print(f"{suite:<20} {total:>12} {passed_n:>7} {failed_n:>7} {total - passed_n - failed_n:>8}")
    print(f"{len(ids) - failed} of {len(ids)} requirements run passed")
    if failed == 0:
        print("all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
