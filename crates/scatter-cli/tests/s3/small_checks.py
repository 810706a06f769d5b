"""Small objects put at once share packs, and a put refused in a batch fails alone: run by
tests/gateway.rs with the venv's Python. GW_* is an owner's key, GW_WO_* a write-only key
of the same profile. Prints one line per check passed; the caller counts the hosts' shard
files around it (SMALL_COUNT objects)."""

import base64
import concurrent.futures
import hashlib
import os
import random
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

import rawreq

ENDPOINT = os.environ["GW_ENDPOINT"]
CA = os.environ.get("GW_CA") or True
COUNT = int(os.environ["SMALL_COUNT"])
BUCKET = "small"


def client(key):
    return boto3.client(
        "s3", endpoint_url=ENDPOINT, aws_access_key_id=os.environ[f"{key}_ACCESS"],
        aws_secret_access_key=os.environ[f"{key}_SECRET"], region_name="us-east-1", verify=CA,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                      max_pool_connections=32),
    )


def shard_files():
    return sum(len(files) for d in os.environ["SHARD_DIRS"].split(":") for _, _, files in os.walk(d))


owner, wo = client("GW"), client("GW_WO")
owner.create_bucket(Bucket=BUCKET)
owner.put_object(Bucket=BUCKET, Key="taken", Body=b"first")

rng = random.Random(7)
bodies = {f"obj-{i:04d}": rng.randbytes(rng.randint(0, 20000)) for i in range(COUNT)}


def put(item):
    i, (key, body) = item
    # Every fourth by the write-only key: one profile's keys share batches.
    s3 = wo if i % 4 == 3 else owner
    r = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    assert r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"', (key, r["ETag"])
    return key


def refused(n):
    """A create of a taken name, or one with a wrong Content-MD5, amid the others."""
    try:
        if n % 2:
            owner.put_object(Bucket=BUCKET, Key="taken", Body=b"second", IfNoneMatch="*")
        else:
            wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
            owner.put_object(Bucket=BUCKET, Key=f"bad-{n}", Body=b"payload", ContentMD5=wrong)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "accepted"


before = shard_files()
with concurrent.futures.ThreadPoolExecutor(24) as pool:
    stored = pool.map(put, enumerate(bodies.items()))
    codes = list(pool.map(refused, range(8)))
    assert sorted(stored) == sorted(bodies)
assert codes == ["BadDigest", "PreconditionFailed"] * 4, codes
# One pack per object would be six shard files each.
added = shard_files() - before
assert added <= 6 * COUNT // 2, f"{COUNT} small objects took {added} shard files: they did not share packs"
print(f"small: {COUNT} objects put at once took {added} shard files; 8 refused among them: {sorted(set(codes))}")

for key, body in bodies.items():
    got = owner.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert got == body, key
assert owner.get_object(Bucket=BUCKET, Key="taken")["Body"].read() == b"first"
listed = owner.list_objects_v2(Bucket=BUCKET, Prefix="bad-")
assert listed["KeyCount"] == 0, listed
listed = owner.list_objects_v2(Bucket=BUCKET, Prefix="obj-")
assert listed["KeyCount"] == COUNT, listed["KeyCount"]
print("small: every object reads back bit for bit, the refused ones left nothing")

# A body without Content-Length is held to the length it declares for its decoded bytes
# (which sizes its share of memory, and sends it to a batch): longer or shorter is refused
# and stores nothing; exact is stored.
access, secret = os.environ["GW_ACCESS"], os.environ["GW_SECRET"]
for declared, sent in ((10, 5000), (5000, 10), (3 << 20, 10), (10, 10)):
    got = rawreq.aws_chunked(ENDPOINT, CA, access, secret, f"/{BUCKET}/chunked-{declared}-{sent}", declared, b"c" * sent)
    if declared == sent:
        assert got.startswith("HTTP/1.1 200"), got
        assert owner.get_object(Bucket=BUCKET, Key=f"chunked-{declared}-{sent}")["Body"].read() == b"c" * sent
    else:
        assert got.startswith("HTTP/1.1 400") and "IncompleteBody" in got, (declared, sent, got)
listed = owner.list_objects_v2(Bucket=BUCKET, Prefix="chunked-")
assert [o["Key"] for o in listed.get("Contents", [])] == ["chunked-10-10"], listed
print("small: an aws-chunked body is held to its declared decoded length")

# s3s gathers an aws-chunked body a whole chunk at a time: a chunk declared longer than the
# body (512 MiB for 1 byte) or longer than 8 MiB is refused as its bytes (or its header)
# arrive, not held while the client sends it.
for declared, header, sent in ((1, "20000000", 2 << 20), (64 << 20, "1000000", 4096)):
    framed = f"{header};chunk-signature={'0' * 64}\r\n".encode() + b"x" * sent
    got = rawreq.aws_chunked_framed(ENDPOINT, CA, access, secret, f"/{BUCKET}/framed-{header}", declared, framed)
    assert got.startswith("HTTP/1.1 4"), (declared, header, got)
listed = owner.list_objects_v2(Bucket=BUCKET, Prefix="framed-")
assert listed["KeyCount"] == 0, listed
# The bounds see the request as s3s does: a first x-amz-content-sha256 that is not text
# (s3s skips it) or a decoded length with junk after its digits (s3s reads the digits) is
# refused, not left unbounded.
big = b"20000000;chunk-signature=" + b"0" * 64 + b"\r\n" + b"x" * (2 << 20)
for decoded, extra in ((1, b"x-amz-content-sha256: \xff\r\n"), ("1x", b"")):
    got = rawreq.aws_chunked_framed(ENDPOINT, CA, access, secret, f"/{BUCKET}/hidden", decoded, big, extra=extra)
    assert got.startswith("HTTP/1.1 400") and "InvalidArgument" in got, (decoded, extra, got)
print("small: an aws-chunked chunk longer than its body or than 8 MiB is refused as it arrives")
# A signed aws-chunked body whose chunks are not signed by the request's key (a body swapped
# under a signed request) is a signature failure, small or streamed, and stores nothing.
for size in (100, 3 << 20):
    got = rawreq.aws_chunked_forged(ENDPOINT, CA, access, secret, f"/{BUCKET}/forged-{size}", b"f" * size)
    assert got.startswith("HTTP/1.1 403") and "SignatureDoesNotMatch" in got, (size, got)
listed = owner.list_objects_v2(Bucket=BUCKET, Prefix="forged-")
assert listed["KeyCount"] == 0, listed
print("small: an aws-chunked body whose chunk signatures are forged is refused as a signature failure")
# Ten puts at once, each conditional on the same ETag (If-Match): one wins, the others are
# refused, whatever batch they share; the winner's bytes are what is stored.
for rnd in range(3):
    etag = owner.put_object(Bucket=BUCKET, Key="matched", Body=f"base {rnd}".encode())["ETag"]

    def update(n):
        try:
            owner.put_object(Bucket=BUCKET, Key="matched", Body=f"update {rnd} {n}".encode(), IfMatch=etag)
            return n
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed", e
            return None

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        won = [n for n in pool.map(update, range(10)) if n is not None]
    assert len(won) == 1, f"round {rnd}: {len(won)} writers won the same If-Match"
    got = owner.get_object(Bucket=BUCKET, Key="matched")["Body"].read()
    assert got == f"update {rnd} {won[0]}".encode(), got
print("small: ten puts conditional on one ETag at once: one wins")
# A put conditional on an ETag (If-Match) whose key is deleted and put again, with other
# bytes, while its body is on the way: the object it matched is gone, so it is refused and
# the new object stays. (Version numbers start again at 1 once a key's every version is
# deleted: a condition on the version alone took the new object for the matched one.)
for size in (300, 3 << 20):
    key = f"aba-{size}"
    etag = owner.put_object(Bucket=BUCKET, Key=key, Body=b"matched")["ETag"]
    body = b"conditional" * (size // 11)
    sock = rawreq.raw(ENDPOINT, CA, access, secret, "PUT", f"/{BUCKET}/{key}", len(body), body[:100],
                      headers={"If-Match": etag})
    time.sleep(0.3)
    owner.delete_object(Bucket=BUCKET, Key=key)
    owner.put_object(Bucket=BUCKET, Key=key, Body=b"put again")
    sock.sendall(body[100:])
    got = rawreq.answer(sock)
    sock.close()
    assert got.startswith("HTTP/1.1 412"), (size, got)
    assert owner.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"put again", size
print("small: If-Match on a key deleted and put again while the body was sent is refused")
# A key deleted elsewhere (here by the CLI, as by another device or gateway) starts again at
# version 1: the gateway's next write of it is listed, and If-Match on its ETag holds.
for i in range(3):
    owner.put_object(Bucket=BUCKET, Key="elsewhere", Body=f"old {i}".encode())
import subprocess
rm = subprocess.run([os.environ["SCATTER_EXE"], "rm", f".s3-objects/{BUCKET}/elsewhere"], capture_output=True,
                    text=True, timeout=60)
assert rm.returncode == 0, rm.stderr
etag = owner.put_object(Bucket=BUCKET, Key="elsewhere", Body=b"new")["ETag"]
listed = {o["Key"]: o["ETag"] for o in owner.list_objects_v2(Bucket=BUCKET, Prefix="elsewhere")["Contents"]}
assert listed == {"elsewhere": etag}, (listed, etag)
owner.put_object(Bucket=BUCKET, Key="elsewhere", Body=b"newer", IfMatch=etag)
assert owner.get_object(Bucket=BUCKET, Key="elsewhere")["Body"].read() == b"newer"
print("small: a key deleted outside the gateway and put again is listed as put")
# Deleted outside the gateway and not put again: a write conditional on the ETag the gateway
# still lists is refused by the catalog, and the listing then drops the key.
etag = owner.put_object(Bucket=BUCKET, Key="elsewhere-gone", Body=b"here")["ETag"]
rm = subprocess.run([os.environ["SCATTER_EXE"], "rm", f".s3-objects/{BUCKET}/elsewhere-gone"], capture_output=True,
                    text=True, timeout=60)
assert rm.returncode == 0, rm.stderr
try:
    owner.put_object(Bucket=BUCKET, Key="elsewhere-gone", Body=b"again", IfMatch=etag)
    raise AssertionError("If-Match on an object deleted elsewhere was let through")
except ClientError as e:
    assert e.response["Error"]["Code"] == "PreconditionFailed", e
listed = owner.list_objects_v2(Bucket=BUCKET, Prefix="elsewhere-gone")
assert listed["KeyCount"] == 0, listed
print("small: a write refused for an object deleted elsewhere drops it from the listing")

# Clients that hang up as soon as their body is sent, while other puts keep the batches busy:
# each object is either stored and listed, or neither; none is committed yet left out of
# the listing (the index), where a bucket delete would not see it.
def busy(n):
    owner.put_object(Bucket=BUCKET, Key=f"busy-{n}", Body=rng.randbytes(200_000))


with concurrent.futures.ThreadPoolExecutor(8) as pool:
    background = [pool.submit(busy, n) for n in range(48)]
    for n in range(40):
        body = f"hung up {n}".encode() * 300
        sock = rawreq.raw(ENDPOINT, CA, access, secret, "PUT", f"/{BUCKET}/hung-{n:02d}", len(body), body)
        time.sleep(0.01 * (n % 5))
        sock.close()
    for f in background:
        f.result()
time.sleep(2)
listed = {o["Key"] for o in owner.list_objects_v2(Bucket=BUCKET, Prefix="hung-").get("Contents", [])}
stored = set()
for n in range(40):
    try:
        owner.get_object(Bucket=BUCKET, Key=f"hung-{n:02d}")["Body"].read()
        stored.add(f"hung-{n:02d}")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey", e
assert stored == listed, f"stored but not listed: {sorted(stored - listed)}; listed, not stored: {sorted(listed - stored)}"
print(f"small: of 40 puts whose clients hung up, {len(stored)} were stored, every one of them listed")
# Two deletes of one bucket and a put queued behind them: the put finds the bucket gone,
# and nothing comes back in the next bucket of that name.
for rnd in range(2):
    doomed = f"doomed-{rnd}"
    owner.create_bucket(Bucket=doomed)
    owner.list_objects_v2(Bucket=doomed)
    # Uploads make the first delete take a while (it removes each).
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: owner.create_multipart_upload(Bucket=doomed, Key=f"u{i}"), range(200)))

    def attempt(f):
        try:
            return f()["ResponseMetadata"]["HTTPStatusCode"]
        except ClientError as e:
            return e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(attempt, lambda: owner.delete_bucket(Bucket=doomed))
        time.sleep(0.05)
        second = pool.submit(attempt, lambda: owner.delete_bucket(Bucket=doomed))
        time.sleep(0.05)
        ghost = pool.submit(attempt, lambda: owner.put_object(Bucket=doomed, Key="ghost", Body=b"boo"))
        outcomes = (first.result(), second.result(), ghost.result())
    if 204 in outcomes[:2]:
        # Deleted: the put was refused, and the next bucket of that name is empty.
        assert outcomes[2] != 200, outcomes
        owner.create_bucket(Bucket=doomed)
        left = [o["Key"] for o in owner.list_objects_v2(Bucket=doomed).get("Contents", [])]
        assert left == [], (outcomes, left)
    else:
        # The put came first and the deletes found the bucket not empty.
        assert outcomes[2] == 200, outcomes
print("small: a put queued behind two deletes of its bucket does not come back in the next one")
print("small: all checks passed")
