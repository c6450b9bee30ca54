"""A conformance handler, written from the requirement's description."""

import os
import time

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig, StepSemantics
from aws_durable_execution_sdk_python.retries import RetryDecision

# 1-18: at most once per retry, with a retry: the process dies in the step's first attempt; the interrupted
# attempt is failed with a retry, and the second attempt succeeds.
@durable_execution
def handler(event, context: DurableContext):
    def crashing_once(step: StepContext):
        step.logger.info(f"running the step for {event}")
        if step.attempt == 1:
            time.sleep(1)  # the step's start is checkpointed in the background: let it be sent
            os._exit(1)
        return "succeeded on second attempt"

    def retry_once(error, attempts):
        return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 2 else RetryDecision.no_retry()

    config = StepConfig(step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=retry_once)
    return context.step(crashing_once, config=config)
