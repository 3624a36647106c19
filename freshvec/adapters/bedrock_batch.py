"""Bedrock batch inference behind ``ports.BatchEmbeddingJobs``: JSONL in the stack's batch bucket, one job per part.

A submission named ``name`` with n records becomes ``ceil(n / max_records)`` jobs of near-equal size, each with
its own input file and output folder in the batch bucket:

    s3://<bucket>/<prefix>/<name>-<part>/input/<count>-records.jsonl       one {"recordId", "modelInput"} a line
    s3://<bucket>/<prefix>/<name>-<part>/output/<job id>/<input file>.out  written by Bedrock

Each line's ``modelInput`` is the model's InvokeModel body for a document (``bedrock_models``), so the vector
equals the on-demand one. The output holds one line per record, ``modelOutput`` or an ``error`` object, in no
promised order ("The order of records in the output JSONL file is not guaranteed to match the order of
records in the input JSONL file": https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html),
so results are joined on ``recordId``; a record the output lacks is reported as such
(https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-results.html).

Records per job come from Service Quotas ("Minimum number of records per batch inference job for <model>",
"Records per batch inference job for <model>", "Records per input file per batch inference job for <model>")
when the caller may read them, else from the documented defaults (100 and 50,000:
https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html links the quotas).

Idempotent: a job is named ``<name>-<part>`` and created with a client request token derived from its name and
content, and ``submit`` first lists the submission's existing jobs, so submitting again after a crash creates
nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from freshvec import constants as c
from freshvec.adapters.bedrock_models import ModelBody, model_body
from freshvec.adapters.service_quotas import bedrock_quota_values, quota
from freshvec.errors import MisconfigurationError, TransientError, classify
from freshvec.ports import BatchJob, BatchLimits, BatchRecord, BatchResult, BatchTooSmallError
from freshvec.retry import RetryPolicy

logger = logging.getLogger(__name__)

DOCUMENTED_DEFAULTS = "documented defaults"
SERVICE_QUOTAS = "service-quotas"
_RECORD_ID = re.compile(c.BATCH_RECORD_ID_RE)
_SUBMISSION = re.compile(c.BATCH_SUBMISSION_NAME_RE)
_INPUT_FILE = re.compile(r"/input/(\d+)-records\.jsonl$")


@dataclass(frozen=True)
class BatchLocation:
    """Where a job's files go: the stack's batch bucket, a key prefix, and the role Bedrock assumes to use them."""

    bucket: str
    prefix: str
    role_arn: str


class BedrockBatchJobs:
    """``ports.BatchEmbeddingJobs`` over a boto3 ``bedrock`` client and an ``s3`` client (and, optionally, a
    ``service-quotas`` client for the per-model record limits)."""

    def __init__(
        self,
        bedrock_client: Any,
        s3_client: Any,
        location: BatchLocation,
        *,
        provider: str,
        model_id: str,
        dimensions: int,
        normalize: bool = True,
        quotas_client: Any = None,
        retry: RetryPolicy | None = None,
        timeout_hours: int | None = None,
    ) -> None:
        self._bedrock = bedrock_client
        self._s3 = s3_client
        self._quotas = quotas_client
        self.location = location
        self.model_id = model_id
        self.dimensions = dimensions
        self.max_input_chars = c.input_char_limit(provider, model_id)
        self._body: ModelBody = model_body(provider, model_id, dimensions, normalize=normalize)
        self._retry = retry or RetryPolicy()
        self._timeout_hours = timeout_hours
        self._limits: BatchLimits | None = None

    # ---- limits -----------------------------------------------------------------------------------------
    def limits(self) -> BatchLimits:
        if self._limits is None:
            self._limits = self._read_limits()
        return self._limits

    def _read_limits(self) -> BatchLimits:
        low, high = c.BATCH_DEFAULT_RECORDS
        label = c.BATCH_QUOTA_MODEL_NAMES.get(c.foundation_model_id(self.model_id))
        values = bedrock_quota_values(self._quotas, self._call) if self._quotas is not None and label else None
        if not values:
            return BatchLimits(low, high, DOCUMENTED_DEFAULTS)
        minimum = quota(values, f"Minimum number of records per batch inference job for {label}")
        per_job = quota(values, f"Records per batch inference job for {label}")
        per_file = quota(values, f"Records per input file per batch inference job for {label}")
        if minimum is None and per_job is None and per_file is None:
            return BatchLimits(low, high, DOCUMENTED_DEFAULTS)
        maxima = [int(v) for v in (per_job, per_file) if v is not None]  # one input file per job: both bind
        floor = int(minimum) if minimum is not None else low
        return BatchLimits(floor, min(maxima) if maxima else high, SERVICE_QUOTAS)

    # ---- submit -------------------------------------------------------------------------------------------
    def submit(self, name: str, records: Sequence[BatchRecord]) -> list[BatchJob]:
        self._check_submission(name, records)
        limits = self.limits()
        if len(records) < limits.min_records:
            raise BatchTooSmallError(len(records), limits)
        parts = split_records(records, limits)
        existing = {job.name: job for job in self.jobs(name)}
        jobs = []
        for number, part in enumerate(parts, start=1):
            job_name = f"{name}-{number}"
            # An existing part is returned as it was created (its records, not this call's): see the port.
            jobs.append(existing.get(job_name) or self._create(job_name, part))
        return jobs

    @staticmethod
    def _check_submission(name: str, records: Sequence[BatchRecord]) -> None:
        if not _SUBMISSION.match(name):
            raise ValueError(f"batch submission name {name!r} must match {c.BATCH_SUBMISSION_NAME_RE}")
        if not records:
            raise ValueError("a batch submission needs at least one record")
        seen: set[str] = set()
        for record in records:
            if not _RECORD_ID.match(record.record_id):
                raise ValueError(f"record id {record.record_id!r} must match {c.BATCH_RECORD_ID_RE}")
            if record.record_id in seen:
                raise ValueError(f"record id {record.record_id!r} appears twice in one submission")
            seen.add(record.record_id)

    def _create(self, job_name: str, records: Sequence[BatchRecord]) -> BatchJob:
        lines = [
            json.dumps(
                {
                    "recordId": r.record_id,
                    "modelInput": self._body.request([r.text[: self.max_input_chars]], "document"),
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            for r in records
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        folder = f"{self.location.prefix}/{job_name}" if self.location.prefix else job_name
        input_key = f"{folder}/input/{len(records)}-records.jsonl"
        self._call(
            lambda: self._s3.put_object(
                Bucket=self.location.bucket, Key=input_key, Body=data, ContentType="application/jsonl"
            ),
            "S3 PutObject",
        )
        token = hashlib.sha256(f"{job_name}\n{self.model_id}\n".encode() + data).hexdigest()
        params: dict[str, Any] = {
            "jobName": job_name,
            "roleArn": self.location.role_arn,
            "clientRequestToken": token,
            "modelId": self.model_id,
            "inputDataConfig": {
                "s3InputDataConfig": {"s3Uri": f"s3://{self.location.bucket}/{input_key}", "s3InputFormat": "JSONL"}
            },
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{self.location.bucket}/{folder}/output/"}},
        }
        if self._timeout_hours is not None:
            params["timeoutDurationInHours"] = self._timeout_hours
        answer = self._call(lambda: self._bedrock.create_model_invocation_job(**params), "CreateModelInvocationJob")
        return BatchJob(job_id=answer["jobArn"], name=job_name, status="Submitted", record_count=len(records))

    # ---- jobs and their state -----------------------------------------------------------------------------
    def jobs(self, name: str) -> list[BatchJob]:
        pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
        found: dict[int, tuple[Any, BatchJob]] = {}  # part -> (submit time, job)
        token: str | None = None
        while True:
            params: dict[str, Any] = {"nameContains": name, "maxResults": 1000}
            if token:
                params["nextToken"] = token
            page = self._call(
                lambda params=params: self._bedrock.list_model_invocation_jobs(**params), "ListModelInvocationJobs"
            )
            for summary in page.get("invocationJobSummaries", []):
                matched = pattern.match(summary.get("jobName", ""))
                if matched:
                    part = int(matched.group(1))
                    # A name reused after a failed or stopped job: the newest attempt stands.
                    if part not in found or summary["submitTime"] > found[part][0]:
                        found[part] = (summary["submitTime"], _job(summary))
            token = page.get("nextToken")
            if not token:
                return [found[part][1] for part in sorted(found)]

    def status(self, job_id: str) -> BatchJob:
        answer = self._call(
            lambda: self._bedrock.get_model_invocation_job(jobIdentifier=job_id), "GetModelInvocationJob"
        )
        return _job(answer)

    def stop(self, job_id: str) -> None:
        try:
            self._call(lambda: self._bedrock.stop_model_invocation_job(jobIdentifier=job_id), "StopModelInvocationJob")
        except MisconfigurationError:
            if self.status(job_id).done:  # already over: nothing to stop
                return
            raise

    # ---- results ------------------------------------------------------------------------------------------
    def results(self, job: BatchJob) -> Iterator[BatchResult]:
        answer = self._call(
            lambda: self._bedrock.get_model_invocation_job(jobIdentifier=job.job_id), "GetModelInvocationJob"
        )
        current = _job(answer)
        if not current.has_results:
            raise MisconfigurationError(f"batch job {current.name} is {current.status}: it has no results to read")
        input_uri = answer["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        output_uri = answer["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        pending = set(self._input_ids(input_uri))
        # Bedrock writes under <output uri>/<job id>/; each job has its own output folder here, so every .out file
        # below it is this job's, whatever the exact layout.
        for key in self._keys(_key_of(output_uri)):
            if not key.endswith(".jsonl.out"):
                continue  # manifest.json.out: counts only
            for line in self._lines(key):
                result = self._result(line, pending)
                if result is not None:
                    yield result
        for record_id in sorted(pending):
            yield BatchResult(record_id, error="no output for this record")

    def _result(self, line: str, pending: set[str]) -> BatchResult | None:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("batch output line is not JSON; skipped: %.200s", line)
            return None
        record_id = item.get("recordId") if isinstance(item, dict) else None
        if record_id not in pending:
            return None  # not ours, or seen already
        pending.discard(record_id)
        if "error" in item or "modelOutput" not in item:
            error = item.get("error") or {}
            return BatchResult(record_id, error=f"{error.get('errorCode', '?')}: {error.get('errorMessage', 'error')}")
        embedded = self._body.parse(item["modelOutput"], 1)  # a wrong dimension is the whole job's problem
        return BatchResult(record_id, vector=embedded.vectors[0], input_tokens=embedded.input_tokens)

    def _input_ids(self, uri: str) -> list[str]:
        ids = []
        for line in self._lines(_key_of(uri)):
            record_id = json.loads(line).get("recordId")
            if isinstance(record_id, str):
                ids.append(record_id)
        return ids

    def _keys(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            page = self._call(lambda params=params: self._s3.list_objects_v2(**params), "S3 ListObjectsV2")
            yield from (item["Key"] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not token:
                return

    def _lines(self, key: str) -> Iterator[str]:
        body = self._call(lambda: self._s3.get_object(Bucket=self.location.bucket, Key=key), "S3 GetObject")["Body"]
        for raw in body.iter_lines():
            if raw.strip():
                yield raw.decode("utf-8")

    # ---- errors ----------------------------------------------------------------------------------------
    def _call(self, call: Any, what: str) -> Any:
        try:
            return self._retry.call(call, what)
        except Exception as exc:
            kind = classify(exc)
            if kind is TransientError:
                raise TransientError(f"{what}: {exc}") from exc
            raise MisconfigurationError(f"{what}: {exc}") from exc


def split_records(records: Sequence[BatchRecord], limits: BatchLimits) -> list[Sequence[BatchRecord]]:
    """``ceil(n / max_records)`` parts of near-equal size (each between the minimum and the maximum)."""
    count = math.ceil(len(records) / limits.max_records)
    size, extra = divmod(len(records), count)
    if size < limits.min_records:
        raise MisconfigurationError(
            f"{len(records)} records cannot be split into jobs of {limits.min_records} to {limits.max_records} records"
        )
    parts, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        parts.append(records[start:end])
        start = end
    return parts


def _job(answer: dict[str, Any]) -> BatchJob:
    input_uri = answer.get("inputDataConfig", {}).get("s3InputDataConfig", {}).get("s3Uri", "")
    counted = _INPUT_FILE.search(input_uri)
    submitted = answer.get("submitTime")
    return BatchJob(
        job_id=answer["jobArn"],
        name=answer.get("jobName", ""),
        status=answer.get("status", "Submitted"),
        record_count=int(counted.group(1)) if counted else int(answer.get("totalRecordCount") or 0),
        message=answer.get("message", ""),
        processed_records=answer.get("processedRecordCount"),
        error_records=answer.get("errorRecordCount"),
        submitted_at=submitted.timestamp() if submitted is not None else None,
    )


def _key_of(uri: str) -> str:
    """The key part of an ``s3://bucket/key`` URI."""
    return uri.split("/", 3)[3] if uri.count("/") >= 3 else ""
