"""A conformance handler, written from the requirement's description."""

import os
import time

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig, StepSemantics
from aws_durable_execution_sdk_python.retries import RetryDecision

# 1-17: at most once per retry, no retry: the process dies in the step; the next invocation finds the step
# started and never finished, and fails it for good.
@durable_execution
def handler(event, context: DurableContext):
    def crashing(step: StepContext):
        step.logger.info(f"running the step for {event}")
        time.sleep(1)  # the step's start is checkpointed in the background: let it be sent
        os._exit(1)

    config = StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=lambda e, n: RetryDecision.no_retry())
    return context.step(crashing, name="at_most_once_flaky_step", config=config)
