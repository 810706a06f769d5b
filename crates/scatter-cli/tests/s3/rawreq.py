"""Raw HTTP requests to the gateway for the S3 checks: signed with SigV4 (unsigned payload)
but declaring a body they do not send whole, or not signed at all."""

import socket
import ssl
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def connect(endpoint, ca):
    """A socket to the gateway at `endpoint` (TLS if https, trusting `ca` or the system's)."""
    u = urllib.parse.urlsplit(endpoint)
    sock = socket.create_connection((u.hostname, u.port), timeout=60)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca) if isinstance(ca, str) else ssl.create_default_context()
        sock = ctx.wrap_socket(sock, server_hostname=u.hostname)
    return sock


def raw(endpoint, ca, access, secret, method, path, length, sent=b""):
    """Sends a request signed with (`access`, `secret`) that declares `length` bytes of body
    and sends only `sent`; returns the socket."""
    u = urllib.parse.urlsplit(endpoint)
    req = AWSRequest(method=method, url=endpoint + path, headers={
        "Host": u.netloc, "Content-Length": str(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(req)
    sock = connect(endpoint, ca)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def unsigned(endpoint, ca, head):
    """Sends `head` (request line and headers) as it is; returns the socket."""
    sock = connect(endpoint, ca)
    host = urllib.parse.urlsplit(endpoint).netloc
    first, rest = head.split("\r\n", 1)
    sock.sendall(f"{first}\r\nHost: {host}\r\n{rest}".encode())
    return sock


def answer(sock):
    """The status line and the body's start of the answer on `sock` (or what ended it)."""
    try:
        return sock.recv(4096).decode(errors="replace")
    except OSError as e:
        return f"closed: {e}"
