"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-12: the process dies in the step (after its start is checkpointed); the next invocation runs it again.
import os
import time


@durable_execution
def handler(event, context: DurableContext):
    first_run = not context.is_replaying()

    def crashing(_: StepContext):
        if first_run:
            time.sleep(1)  # the step's start is checkpointed in the background: let it be sent
            os._exit(1)
        return event

    return context.run_in_child_context(lambda child: child.step(crashing, name="crashing"), name="child")
