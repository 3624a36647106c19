"""Who may use local mode's AWS endpoint: requests naming it by a loopback Host and signed with its access key.

moto accepts any credentials. In front of it (and of the S3 Vectors front), ``AccessGuard`` serves a request only
when its Host header names the server as 127.0.0.1 or localhost on its port (a web page cannot reach it through
DNS rebinding) and the access key id it is signed with is the server's random one: the ``Credential=<key>/...``
of its SigV4 ``Authorization`` header, the ``X-Amz-Credential`` of a presigned URL (S3's SigV2 forms too), or,
for moto's own ``/moto-api/`` (reset), the key in ``state.CONTROL_TOKEN_HEADER``. The signature itself is not
checked: the key id is the secret, it travels over loopback only, and any secret access key signs. ``freshvec
local up`` makes a key per stack, keeps it in the state file (mode 0600) and prints it for the user's own clients.

A refused request gets no data, only the error the service would send for an unknown key: 403 with
``UnrecognizedClientException`` (JSON protocols: S3 Vectors, Kinesis, DynamoDB, SQS, SSM), ``InvalidAccessKeyId``
(S3) or ``InvalidClientTokenId`` (query protocol), and ``AccessDeniedException``/``AccessDenied`` for a foreign Host.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from freshvec.state import CONTROL_TOKEN_HEADER

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]*/[^/]*/([^/,\s]+)/")
_TOKEN_ENVIRON = "HTTP_" + CONTROL_TOKEN_HEADER.upper().replace("-", "_")
_XML_SERVICES = {"s3"}  # rest-xml; query-protocol services (sts, ...) answer XML too, in an ErrorResponse
_QUERY_SERVICES = {"sts", "iam", "sns", "cloudformation", "elasticloadbalancing", "ec2", "rds"}


def new_access_key() -> str:
    """A random access key id for one local stack (160 bits, hex: any SDK and the AWS CLI take it as it is)."""
    return secrets.token_hex(20)


class AccessGuard:
    """WSGI middleware: ``inner`` answers only requests with a loopback Host and ``access_key`` (module doc)."""

    def __init__(self, inner: WsgiApp, access_key: str) -> None:
        if not access_key:
            raise ValueError("the local AWS endpoint needs an access key to check")
        self._inner = inner
        self._key = access_key.encode("utf-8")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        given, service = _credential(environ)
        if not _host_allowed(environ.get("HTTP_HOST"), str(environ.get("SERVER_PORT", ""))):
            code = "AccessDenied" if service in _XML_SERVICES else "AccessDeniedException"
            message = "the Host header must name this endpoint as 127.0.0.1 or localhost and its port"
            return _refuse(start_response, service, code, message)
        if not self._matches(given) and not self._matches(environ.get(_TOKEN_ENVIRON)):
            code = (
                "InvalidAccessKeyId"
                if service in _XML_SERVICES
                else "InvalidClientTokenId"
                if service in _QUERY_SERVICES
                else "UnrecognizedClientException"
            )
            message = (
                "The security token included in the request is invalid: sign with the access key "
                "`freshvec local up` printed (aws_access_key in its state file)"
            )
            return _refuse(start_response, service, code, message)
        return self._inner(environ, start_response)

    def _matches(self, given: str | None) -> bool:
        # Constant time: how long a refusal takes tells nothing about how much of the key was right.
        return bool(given) and hmac.compare_digest(str(given).encode("utf-8", "surrogatepass"), self._key)


def _credential(environ: Environ) -> tuple[str | None, str]:
    """The access key id a request is signed with and its credential scope's service ("" when unsigned): SigV4
    in the header or a presigned URL's query, or S3's SigV2 (``AWS <key>:<signature>``, ``AWSAccessKeyId=``)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    found = _CREDENTIAL.search(authorization) or _CREDENTIAL.search(
        "Credential=" + query.get("X-Amz-Credential", [""])[0]
    )
    if found is not None:
        return found.group(1), found.group(2)
    if authorization.startswith("AWS "):
        return authorization[4:].partition(":")[0], "s3"
    return (query["AWSAccessKeyId"][0], "s3") if "AWSAccessKeyId" in query else (None, "")


def _host_allowed(host: str | None, port: str) -> bool:
    return bool(host) and str(host).strip().lower() in {f"{name}:{port}" for name in LOOPBACK_NAMES}


def _refuse(start_response: StartResponse, service: str, code: str, message: str) -> list[bytes]:
    if service in _XML_SERVICES:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        content_type = "application/xml"
    elif service in _QUERY_SERVICES:
        error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        body = f"<ErrorResponse>{error}</ErrorResponse>"
        content_type = "text/xml"
    else:
        body = json.dumps({"__type": code, "message": message})
        content_type = "application/x-amz-json-1.1"
    payload = body.encode("utf-8")
    headers = [("Content-Type", content_type), ("Content-Length", str(len(payload))), ("x-amzn-ErrorType", code)]
    start_response("403 Forbidden", headers)
    return [payload]
