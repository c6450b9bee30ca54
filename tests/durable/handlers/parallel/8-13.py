"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

ONE_AT_A_TIME = ParallelConfig(max_concurrency=1)


def sequential(**completion):
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def fail(_):
    raise RuntimeError("this branch fails")


def projection(r, *fields):
    every = {
        "completionReason": r.completion_reason.value,
        "status": r.status.value,
        "successCount": r.success_count,
        "failureCount": r.failure_count,
        "totalCount": r.total_count,
    }
    return {k: every[k] for k in fields}

# 8-13: 25 % of four tolerated; the second failure (50 %) exceeds it.
@durable_execution
def handler(event, context: DurableContext):
    r = context.parallel([fail, fail, lambda c: "c", lambda c: "d"], config=sequential(tolerated_failure_percentage=25))
    return projection(r, "completionReason", "successCount", "failureCount", "totalCount")
