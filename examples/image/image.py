"""Seed 000's image workflow: `thumb` makes a thumbnail while `format` checks the image's format, and
`webp` converts it to WEBP when it is not WEBP already. Images live in an S3-compatible store.

One module, every function (the handler names pick): `thumb`, `format`, `webp`, and `setup`, which creates
the bucket and uploads a test image. The environment says how the functions help the platform hide
`webp`'s cold start (MODE):

  a  no help: `webp` starts cold after `format` ends;
  b  `format` prepares `webp` (stoke.prepare) as soon as it starts: a cold `format` does it first thing in
     its init, for the step its instance was started for (stoke.origin), so both cold starts overlap, as
     in the seed; a warm one at the start of its handler. The prepared `webp` waits for its turn at once,
     then downloads the image;
  c  as b, but the prepared `webp` downloads the image before it waits for its turn (prefetch);
  d, e  no help from the functions: the platform's pre-warmer (jit or eager) warms `webp`.

S3_ENDPOINT names the store, BUCKET the bucket, NEXT the `webp` function `format` prepares, LATENCY_MS
a delay added to every S3 request (standing in for a store in another region), INIT_S extra seconds of
init on top of the real imports (standing in for a larger library set).
"""
import io
import os
import time

import stoke

MODE = os.environ.get("MODE", "a")
# A cold `format` prepares `webp` before its own heavy init, for the step it was started for.
PREPARED_IN_INIT = False
if MODE in ("b", "c") and os.environ.get("_HANDLER", "").endswith(".format"):
    ORIGIN = stoke.origin()
    if ORIGIN is not None and not ORIGIN["prepared"]:
        stoke.prepare(os.environ["NEXT"], {"key": ORIGIN["event"]["key"]})
        PREPARED_IN_INIT = True

time.sleep(float(os.environ.get("INIT_S", "0")))
import boto3  # noqa: E402  (the heavy imports are the point: they are the cold start)
from PIL import Image  # noqa: E402

BUCKET = os.environ.get("BUCKET", "images")
LATENCY_S = float(os.environ.get("LATENCY_MS", "0")) / 1000.0
S3 = boto3.client(
    "s3",
    endpoint_url=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:5000"),
    region_name="us-east-1",
    aws_access_key_id="stoke",
    aws_secret_access_key="stoke",
)


def get(key):
    time.sleep(LATENCY_S)
    return S3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def put(key, data, content_type):
    time.sleep(LATENCY_S)
    S3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType=content_type)


def setup(event, context):
    """Creates the bucket and uploads a photo-like test image (gradients and texture), as JPEG."""
    try:
        S3.create_bucket(Bucket=BUCKET)
    except S3.exceptions.BucketAlreadyOwnedByYou:
        pass
    width, height = event.get("width", 1280), event.get("height", 960)
    img = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    rgb = Image.merge("RGB", (img, noise, img.rotate(90).resize((width, height))))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=90)
    S3.put_object(Bucket=BUCKET, Key=event["key"], Body=out.getvalue(), ContentType="image/jpeg")
    return {"key": event["key"], "bytes": len(out.getvalue())}


def thumb(event, context):
    img = Image.open(io.BytesIO(get(event["key"])))
    img.thumbnail((128, 128))
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=85)
    put(event["key"] + ".thumb.jpg", out.getvalue(), "image/jpeg")
    return {"thumbnail": event["key"] + ".thumb.jpg"}


def format(event, context):  # noqa: A001  (the seed's name for the step)
    global PREPARED_IN_INIT
    if MODE in ("b", "c") and not PREPARED_IN_INIT:
        stoke.prepare(os.environ["NEXT"], {"key": event["key"]})
    PREPARED_IN_INIT = False
    img = Image.open(io.BytesIO(get(event["key"])))
    img.load()  # decode it all: a truncated or corrupt image fails here, not later
    return {"key": event["key"], "format": img.format, "size": list(img.size)}


def webp(event, context):
    data = None
    if stoke.prepared_params() is not None:
        if MODE == "c":
            data = get(stoke.prepared_params()["key"])
        event = stoke.wait_turn()
    if data is None:
        data = get(event["key"])
    img = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    img.save(out, "WEBP", quality=80)
    put(event["key"] + ".webp", out.getvalue(), "image/webp")
    return {"webp": event["key"] + ".webp", "bytes": len(out.getvalue())}
