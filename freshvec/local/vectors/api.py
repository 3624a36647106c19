"""The S3 Vectors API moto lacks, served in front of moto on the same endpoint.

``S3VectorsFront`` wraps moto's WSGI application. It answers ``QueryVectors`` (vector, full-text, hybrid),
``GetIndex`` with ``indexMode`` and ``metadataConfiguration`` (``nonFilterableMetadataKeys`` and
``textSearchConfigurations`` with each analyzer's status), ``UpdateIndexMode``, ``UpdateMetadataConfiguration``
and ``PutVectorBucketDefaultIndexMode``. Every other request goes to moto unchanged; the writes moto stores
(``CreateVectorBucket``, ``CreateIndex``, ``PutVectors``, ``DeleteVectors``, ``DeleteIndex``,
``DeleteVectorBucket``) are also applied to the front's copy of each index (``engine.IndexState``) once moto
accepted them, under the index's lock, so a query sees every write that returned before it; ``GetVectors`` and
``ListVectors`` go to moto under the same lock (moto's reads are not safe against a concurrent write). ``PutVectors`` is
checked against the metadata limits moto does not check (50 keys, 2 KB filterable, 40 KB in all, docs
"Limitations and restrictions").

Index modes (docs "Changing a vector index's mode", ``UpdateIndexMode``): buckets created after 2026-09-30
hold only ENHANCED indexes. ``legacy_buckets=True`` makes the front's buckets behave like older ones: their
indexes start CLASSIC and may be switched either way, which is how CLASSIC semantics are exercised locally.
Errors come back as the service sends them: status, ``x-amzn-ErrorType`` and ``{"message"}``.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from freshvec import constants as c
from freshvec.local.vectors.analyzers import LANGUAGES
from freshvec.local.vectors.engine import CLASSIC, ENHANCED, IndexState, ServiceError, invalid
from freshvec.metadata import entry_bytes

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_MAX_METADATA_KEYS = 50


class S3VectorsFront:
    """WSGI middleware: the missing S3 Vectors operations here, everything else from ``inner`` (moto)."""

    def __init__(self, inner: WsgiApp, *, legacy_buckets: bool = False, analyzer_build_seconds: float = 0.0) -> None:
        self._inner = inner
        self._legacy = legacy_buckets
        self._build_seconds = analyzer_build_seconds
        self._lock = threading.RLock()
        self._kinesis_puts = threading.Lock()
        self._indexes: dict[tuple[str, str], IndexState] = {}
        self._bucket_modes: dict[str, str] = {}
        self._handlers: dict[str, Callable[[Environ, dict[str, Any]], tuple[int, Any]]] = {
            "QueryVectors": self._query_vectors,
            "GetIndex": self._get_index,
            "UpdateIndexMode": self._update_index_mode,
            "UpdateMetadataConfiguration": self._update_metadata_configuration,
            "PutVectorBucketDefaultIndexMode": self._put_default_mode,
            "CreateVectorBucket": self._create_bucket,
            "CreateIndex": self._create_index,
            "PutVectors": self._put_vectors,
            "DeleteVectors": self._delete_vectors,
            "DeleteIndex": self._delete_index,
            "DeleteVectorBucket": self._delete_bucket,
            # Reads of an index wait for its writes: moto iterates the index's dict unguarded, and a write landing
            # mid-iteration fails the read with a 500 the service never sends.
            "GetVectors": self._locked_read("GetVectors"),
            "ListVectors": self._locked_read("ListVectors"),
        }

    # ---- WSGI -----------------------------------------------------------------------------------
    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/moto-api/reset":
            with self._lock:
                self._indexes.clear()
                self._bucket_modes.clear()
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(_KINESIS_PUTS):
            # moto numbers a shard's next record from its current last one without a lock: two puts at once
            # get the same sequence number and one record replaces the other. Kinesis never drops a put it
            # acknowledged, so puts are taken one at a time.
            with self._kinesis_puts:
                return self._inner(environ, start_response)
        handler = self._handlers.get(path.lstrip("/"))
        if handler is None or environ.get("REQUEST_METHOD") != "POST" or not _is_s3vectors(environ):
            return self._inner(environ, start_response)
        try:
            body = _read_json(environ)
            status, answer = handler(environ, body)
        except ServiceError as exc:
            return _respond(start_response, exc.status, {"message": str(exc)}, error=exc.code)
        return _respond(start_response, status, answer)

    def _moto(
        self, environ: Environ, operation: str, body: Mapping[str, Any], *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """One call into moto with the caller's headers; its error becomes a ServiceError. ``raw``: the caller's
        request body as received, forwarded as is (a PutVectors body is large; encoding it again costs more than
        moto's own handling of it)."""
        payload = raw if raw is not None else json.dumps(body).encode("utf-8")
        inner = dict(environ)
        inner.update(
            {
                "PATH_INFO": f"/{operation}",
                "RAW_URI": f"/{operation}",
                "REQUEST_URI": f"/{operation}",
                "wsgi.input": io.BytesIO(payload),
                "CONTENT_LENGTH": str(len(payload)),
                "QUERY_STRING": "",
            }
        )
        captured: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = int(status.split(maxsplit=1)[0]), dict(headers)
            return lambda _data: None

        chunks = self._inner(inner, start)
        try:
            raw = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        answer = json.loads(raw) if raw.strip() else {}
        if captured["status"] >= 400:
            headers = {k.lower(): v for k, v in captured["headers"].items()}
            code = headers.get("x-amzn-errortype") or answer.get("__type") or answer.get("code") or "ServiceError"
            message = answer.get("message") or answer.get("Message") or raw.decode("utf-8", "replace")
            raise ServiceError(str(code).split(":")[0], str(message), captured["status"])
        return captured["status"], answer

    # ---- index registry -----------------------------------------------------------------------
    def _state(self, environ: Environ, body: Mapping[str, Any]) -> IndexState:
        """The front's copy of the index a request names; an index only moto knows is read from moto once."""
        name = self._index_name(body)
        with self._lock:
            state = self._indexes.get(name)
        if state is not None:
            return state
        _, found = self._moto(environ, "GetIndex", _index_ref(body))
        index = found["index"]
        bucket_mode = self._bucket_modes.get(name[0], CLASSIC if self._legacy else ENHANCED)
        state = IndexState(index["indexArn"], int(index["dimension"]), str(index["distanceMetric"]), bucket_mode)
        _, listed = self._moto(environ, "ListVectors", {**_index_ref(body), "returnData": True, "returnMetadata": True})
        state.put([v for v in listed.get("vectors", []) if v.get("data")])
        with self._lock:
            return self._indexes.setdefault(name, state)

    def _index_name(self, body: Mapping[str, Any]) -> tuple[str, str]:
        arn = body.get("indexArn")
        if arn:
            parts = str(arn).split("/")
            if len(parts) != 4 or parts[2] != "index":
                raise invalid(f"not an index ARN: {arn}")
            return parts[1], parts[3]
        bucket, index = body.get("vectorBucketName"), body.get("indexName")
        if not bucket or not index:
            raise invalid("name the index by indexArn, or by vectorBucketName and indexName")
        return str(bucket), str(index)

    # ---- operations -----------------------------------------------------------------------------
    def _query_vectors(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, self._state(environ, body).query(body)

    def _get_index(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        status, answer = self._moto(environ, "GetIndex", body)
        state = self._state(environ, body)
        with state.lock:
            answer["index"].update(state.describe())
        return status, answer

    def _update_index_mode(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        mode = body.get("indexMode")
        if mode not in (CLASSIC, ENHANCED):
            raise invalid("indexMode must be CLASSIC or ENHANCED")
        state = self._state(environ, body)
        if mode == CLASSIC and not self._legacy:
            raise invalid("CLASSIC is only for indexes in vector buckets created before 2026-09-30")
        with state.lock:
            if mode == CLASSIC and state.text_keys:
                raise invalid("delete the index's textSearchConfigurations before switching it to CLASSIC")
            state.mode = mode
        return 200, {}

    def _update_metadata_configuration(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        add = (body.get("add") or {}).get("textSearchConfigurations")
        delete = (body.get("delete") or {}).get("textSearchConfigurations")
        if bool(add) == bool(delete):
            raise invalid("specify either add or delete, not both and not neither")
        state = self._state(environ, body)
        if add:
            state.add_text_keys(_text_configurations(add, state.non_filterable), self._build_seconds)
        else:
            state.delete_text_keys([str(entry.get("metadataKey")) for entry in delete])
        return 200, {"indexArn": state.arn}

    def _put_default_mode(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        mode = body.get("defaultIndexMode")
        if mode not in (CLASSIC, ENHANCED):
            raise invalid("defaultIndexMode must be CLASSIC or ENHANCED")
        if mode == CLASSIC and not self._legacy:
            raise invalid("CLASSIC is only for vector buckets created before 2026-09-30")
        bucket = body.get("vectorBucketName") or str(body.get("vectorBucketArn", "")).split("/")[-1]
        self._moto(environ, "GetVectorBucket", {"vectorBucketName": bucket})
        with self._lock:
            self._bucket_modes[bucket] = mode
        return 200, {}

    def _create_bucket(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        answer = self._moto(environ, "CreateVectorBucket", body)
        with self._lock:
            self._bucket_modes[str(body.get("vectorBucketName"))] = CLASSIC if self._legacy else ENHANCED
        return answer

    def _create_index(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        configuration = body.get("metadataConfiguration") or {}
        non_filterable = tuple(configuration.get("nonFilterableMetadataKeys") or ())
        if len(non_filterable) > c.S3V_MAX_NON_FILTERABLE_KEYS:
            raise invalid(f"at most {c.S3V_MAX_NON_FILTERABLE_KEYS} nonFilterableMetadataKeys")
        text = _text_configurations(configuration.get("textSearchConfigurations") or [], non_filterable)
        bucket = body.get("vectorBucketName") or str(body.get("vectorBucketArn", "")).split("/")[-1]
        mode = self._bucket_modes.get(bucket, CLASSIC if self._legacy else ENHANCED)
        if text and mode != ENHANCED:
            raise invalid("textSearchConfigurations need an ENHANCED index; this bucket creates CLASSIC indexes")
        status, answer = self._moto(environ, "CreateIndex", body)
        _, found = self._moto(environ, "GetIndex", {"vectorBucketName": bucket, "indexName": body.get("indexName")})
        index = found["index"]
        state = IndexState(
            index["indexArn"], int(index["dimension"]), str(index["distanceMetric"]), mode, non_filterable
        )
        if text:
            state.add_text_keys(text, self._build_seconds)
        with self._lock:
            self._indexes[(bucket, str(body.get("indexName")))] = state
        return status, answer or {"indexArn": index["indexArn"]}

    def _locked_read(self, operation: str) -> Callable[[Environ, dict[str, Any]], tuple[int, Any]]:
        def read(environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
            state = self._state(environ, body)
            with state.lock:
                return self._moto(environ, operation, body, raw=environ.get(_RAW_BODY))

        return read

    def _put_vectors(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        state = self._state(environ, body)
        vectors = body.get("vectors") or []
        for vector in vectors:
            _check_metadata(str(vector.get("key")), vector.get("metadata") or {}, state.non_filterable)
            values = (vector.get("data") or {}).get("float32")
            if not isinstance(values, list) or len(values) != state.dimension:
                raise invalid(f"vector {vector.get('key')!r} does not have {state.dimension} dimensions")
        with state.lock:  # moto and the copy change together: writes to one index are applied in one order
            answer = self._moto(environ, "PutVectors", body, raw=environ.get(_RAW_BODY))
            state.put(vectors)
        return answer

    def _delete_vectors(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        state = self._state(environ, body)
        with state.lock:
            answer = self._moto(environ, "DeleteVectors", body)
            state.delete([str(k) for k in body.get("keys") or []])
        return answer

    def _delete_index(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        name = self._index_name(body)
        answer = self._moto(environ, "DeleteIndex", body)
        with self._lock:
            self._indexes.pop(name, None)
        return answer

    def _delete_bucket(self, environ: Environ, body: dict[str, Any]) -> tuple[int, Any]:
        answer = self._moto(environ, "DeleteVectorBucket", body)
        bucket = body.get("vectorBucketName") or str(body.get("vectorBucketArn", "")).split("/")[-1]
        with self._lock:
            self._bucket_modes.pop(bucket, None)
            for name in [n for n in self._indexes if n[0] == bucket]:
                del self._indexes[name]
        return answer


def _text_configurations(entries: Any, non_filterable: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(entries, list) or len(entries) > 10:
        raise invalid("textSearchConfigurations takes at most 10 entries")
    seen: set[str] = set()
    for entry in entries:
        key, language = entry.get("metadataKey"), entry.get("language")
        if not isinstance(key, str) or not 1 <= len(key) <= 63:
            raise invalid("each textSearchConfigurations entry needs a metadataKey of 1 to 63 characters")
        if language is not None and language not in LANGUAGES:
            raise invalid(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
        if key in seen:
            raise invalid(f"metadata key {key!r} appears twice in textSearchConfigurations")
        seen.add(key)
    return entries


def _check_metadata(key: str, metadata: Mapping[str, Any], non_filterable: tuple[str, ...]) -> None:
    if len(metadata) > _MAX_METADATA_KEYS:
        raise invalid(f"vector {key!r} has {len(metadata)} metadata keys; at most {_MAX_METADATA_KEYS}")
    sizes = {k: entry_bytes(k, v) for k, v in metadata.items()}
    filterable = sum(size for k, size in sizes.items() if k not in non_filterable)
    if filterable > c.S3V_MAX_FILTERABLE_METADATA_BYTES:
        raise invalid(f"vector {key!r} has {filterable} bytes of filterable metadata; at most 2048")
    if sum(sizes.values()) > c.S3V_MAX_TOTAL_METADATA_BYTES:
        raise invalid(f"vector {key!r} has {sum(sizes.values())} bytes of metadata; at most 40 KB")


def _index_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    if body.get("indexArn"):
        return {"indexArn": body["indexArn"]}
    return {"vectorBucketName": body.get("vectorBucketName"), "indexName": body.get("indexName")}


_KINESIS_PUTS = "Kinesis_20131202.PutRecord"  # the X-Amz-Target prefix of PutRecord and PutRecords
_RAW_BODY = "freshvec.raw_body"  # the request body as received, kept in the WSGI environ by _read_json


def _is_s3vectors(environ: Environ) -> bool:
    """A request signed for S3 Vectors (SigV4 credential scope ``.../s3vectors/aws4_request``)."""
    return "/s3vectors/aws4_request" in environ.get("HTTP_AUTHORIZATION", "")


def _read_json(environ: Environ) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ[_RAW_BODY] = raw
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid(f"the request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def _respond(start_response: StartResponse, status: int, answer: Any, *, error: str | None = None) -> list[bytes]:
    payload = json.dumps(answer).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    if error:
        headers.append(("x-amzn-ErrorType", error))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [payload]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}
