"""Raw HTTP requests to the gateway for the S3 checks: signed with SigV4 (unsigned payload)
but declaring a body they do not send whole, or not signed at all."""

import base64
import socket
import ssl
import urllib.parse
import zlib

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


def raw(endpoint, ca, access, secret, method, path, length, sent=b"", headers=None):
    """Sends a request signed with (`access`, `secret`), with `headers` besides its own, that
    declares `length` bytes of body and sends only `sent`; returns the socket."""
    u = urllib.parse.urlsplit(endpoint)
    req = AWSRequest(method=method, url=endpoint + path, headers={
        "Host": u.netloc, "Content-Length": str(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        **(headers or {})})
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


def aws_chunked_framed(endpoint, ca, access, secret, path, decoded_length, framed, wait=20, extra=b"", end=False):
    """A PUT declaring `decoded_length` whose aws-chunked body is `framed` as it is (sent
    as one HTTP chunk, then the HTTP body's end if `end`, else nothing), with the raw header
    lines `extra` before the signed ones; returns the answer, or what ended the wait."""
    u = urllib.parse.urlsplit(endpoint)
    req = AWSRequest(method="PUT", url=endpoint + path, headers={
        "Host": u.netloc, "Content-Encoding": "aws-chunked", "Transfer-Encoding": "chunked",
        "x-amz-decoded-content-length": str(decoded_length), "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
    SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(req)
    sock = connect(endpoint, ca)
    head = f"PUT {path} HTTP/1.1\r\n".encode() + extra
    head += ("".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n").encode()
    try:
        sock.sendall(head + f"{len(framed):x}\r\n".encode() + framed + b"\r\n" + (b"0\r\n\r\n" if end else b""))
    except OSError:
        pass  # refused while sending: the answer tells
    sock.settimeout(wait)
    got = answer(sock)
    sock.close()
    return got


def aws_chunked(endpoint, ca, access, secret, path, decoded_length, payload):
    """A PUT of `payload` as an aws-chunked body with no Content-Length (as boto3 sends its
    checksum trailers), declaring `decoded_length` in x-amz-decoded-content-length; returns
    the answer."""
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    body = (f"{len(payload):x}\r\n".encode() + payload + b"\r\n" if payload else b"") + b"0\r\n"
    body += f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    return aws_chunked_framed(endpoint, ca, access, secret, path, decoded_length, body, wait=30, end=True)


def aws_chunked_forged(endpoint, ca, access, secret, path, payload):
    """A PUT of `payload` as a signed aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
    whose request is signed with (`access`, `secret`) but whose chunks carry signatures that
    are not theirs (a body swapped under a signed request); returns the answer."""
    forged = "0" * 64
    body = f"{len(payload):x};chunk-signature={forged}\r\n".encode() + payload + b"\r\n"
    body += f"0;chunk-signature={forged}\r\n\r\n".encode()
    u = urllib.parse.urlsplit(endpoint)
    req = AWSRequest(method="PUT", url=endpoint + path, headers={
        "Host": u.netloc, "Content-Encoding": "aws-chunked", "Content-Length": str(len(body)),
        "x-amz-decoded-content-length": str(len(payload)),
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(req)
    sock = connect(endpoint, ca)
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    got = answer(sock)
    sock.close()
    return got
