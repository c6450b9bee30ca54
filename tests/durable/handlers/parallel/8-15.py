"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-15: each branch's result is wrapped by a serdes of its own, and unwrapped when read.
import json

from aws_durable_execution_sdk_python.serdes import SerDes


class Wrapped(SerDes):
    def serialize(self, value, _):
        return json.dumps({"wrapped": value})

    def deserialize(self, data, _):
        return json.loads(data)["wrapped"]


@durable_execution
def handler(event, context: DurableContext):
    config = ParallelConfig(max_concurrency=1, item_serdes=Wrapped())
    return context.parallel([lambda c: "x", lambda c: "y"], config=config).get_results()
