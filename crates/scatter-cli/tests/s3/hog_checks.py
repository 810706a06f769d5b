"""One profile cannot take every turn from another on a shared gateway: run by
tests/gateway.rs with the venv's Python. GW_WO_* and GW_HOG2_* are two keys of one profile
(the hog: its keys together get one share), GW_OTHER_* a key of another profile (the
victim). Prints one line per check passed."""

import os
import threading
import time

import boto3
from botocore.config import Config

import rawreq

ENDPOINT = os.environ["GW_ENDPOINT"]
CA = os.environ.get("GW_CA") or True
BUCKET = os.environ["GW_HOG_BUCKET"]
OTHER_BUCKET = os.environ["GW_OTHER_BUCKET"]


def raw(method, path, length, sent=b"", key="GW_WO"):
    access, secret = os.environ[f"{key}_ACCESS"], os.environ[f"{key}_SECRET"]
    return rawreq.raw(ENDPOINT, CA, access, secret, method, path, length, sent)


other = boto3.client(
    "s3", endpoint_url=ENDPOINT, aws_access_key_id=os.environ["GW_OTHER_ACCESS"],
    aws_secret_access_key=os.environ["GW_OTHER_SECRET"], region_name="us-east-1", verify=CA,
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}),
)

# Four uploads declaring 1 GiB each, two by each of the hog profile's keys, fed just fast
# enough not to be cut off, take that profile's half of the write budget; the other
# profile's put does not wait behind them.
hogs = [raw("PUT", f"/{BUCKET}/hog-{i}.bin", 1 << 30, b"h" * 65536, ("GW_WO", "GW_HOG2")[i % 2]) for i in range(4)]
feeding = threading.Event()


def feed():
    while not feeding.wait(0.25):
        for sock in hogs:
            try:
                sock.sendall(b"h" * 16384)
            except OSError:
                pass


feeder = threading.Thread(target=feed, daemon=True)
feeder.start()
time.sleep(1)
started = time.monotonic()
other.put_object(Bucket=OTHER_BUCKET, Key="while-hogged.txt", Body=b"small")
hogged = time.monotonic() - started
feeding.set()
feeder.join()
for sock in hogs:
    sock.close()
assert hogged < 20, f"a put waited {hogged:.0f} s behind another profile's four big uploads"
print(f"ok: a put took {hogged:.1f} s beside another profile's four 1 GiB uploads", flush=True)

# The same for XML: a profile's stalled batch deletes take its half, not the other's.
stalled = [raw("POST", f"/{BUCKET}?delete", 8 << 20, b"", ("GW_WO", "GW_HOG2")[i % 2]) for i in range(8)]
time.sleep(0.5)
other.put_object(Bucket=OTHER_BUCKET, Key="to-delete", Body=b"x")
r = other.delete_objects(Bucket=OTHER_BUCKET, Delete={"Objects": [{"Key": "to-delete"}]})
assert [d["Key"] for d in r.get("Deleted", [])] == ["to-delete"], r
for sock in stalled:
    sock.close()
print("ok: a batch delete went through beside another profile's stalled XML", flush=True)
