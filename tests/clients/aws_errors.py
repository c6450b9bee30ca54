"""What every client script expects of a refused call: the AWS error code the server answered."""

import botocore


def expect_error(code, fn, *args, **kwargs):
    """Calls `fn` and returns the ClientError it raised, which must carry `code`."""
    try:
        fn(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e.response}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")
