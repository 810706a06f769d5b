"""XML that parses into many elements is counted for what it makes the gateway hold: run by
tests/gateway.rs with the venv's Python, which reads the gateway's peak memory before and
after. GW_WO_* is a write-only key, GW_KEY_* a full key of the same profile. Sends, with each
key, two completions of an upload that does not exist, each 8 MiB of `<Part/>` (about 1.2
million parts: s3s builds every one before any handler sees the request), all but their last
byte first and then every last byte at once. Prints each answer's status line."""

import os
import threading

import rawreq

ENDPOINT = os.environ["GW_ENDPOINT"]
CA = os.environ.get("GW_CA") or True
BUCKET = os.environ["GW_BUCKET"]

body = b"<CompleteMultipartUpload>"
body += b"<Part/>" * ((8 * 1024 * 1024 - 60) // 7) + b"</CompleteMultipartUpload>"
path = f"/{BUCKET}/bomb?uploadId=0123456789abcdef0123456789abcdef"


def send(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass  # refused while sending: the answer tells


socks = []
for key in ["GW_WO", "GW_WO", "GW_KEY", "GW_KEY"]:
    access, secret = os.environ[f"{key}_ACCESS"], os.environ[f"{key}_SECRET"]
    sock = rawreq.raw(ENDPOINT, CA, access, secret, "POST", path, len(body))
    send(sock, body[:-1])
    socks.append(sock)


def last(sock):
    send(sock, body[-1:])


threads = [threading.Thread(target=last, args=(s,)) for s in socks]
for t in threads:
    t.start()
for t in threads:
    t.join()
for sock in socks:
    sock.settimeout(60)
    print(rawreq.answer(sock).split("\r\n")[0] or "closed while sending", flush=True)
    sock.close()
