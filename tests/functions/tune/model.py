# Memory-bound: a 300 MB working set loaded at init, as a model would be (written, so the pages count
# against the memory limit); each call then does little.
MODEL = b'x' * (300 << 20)


def handler(event, context):
    return MODEL[event['i']] + len(MODEL) >> 20
