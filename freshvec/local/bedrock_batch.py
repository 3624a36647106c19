"""A stand-in for Bedrock batch inference (no emulator exists; moto has none): the ``bedrock`` job calls over S3.

It answers ``create_model_invocation_job``, ``get_model_invocation_job``, ``stop_model_invocation_job`` and
``list_model_invocation_jobs`` like a boto3 ``bedrock`` client: parameters are checked against the botocore
service model (``ParamValidationError``, as boto3 raises before sending), the service-side rules answer
``ClientError`` with the model's codes and HTTP statuses, and answers have the model's output shapes.
``freshvec.local.bedrock_server`` serves the same calls over HTTP for local mode, where the CLI's ordinary
boto3 client reaches it; ``freshvec.testing.fakes.bedrock_batch`` adds fault injection for the tests.

Jobs read their JSONL input from S3 (moto's, locally) and write their output there, as the service does:
``<output uri>/<job id>/<input file>.out`` with one line per record, ``modelOutput`` or an ``error`` object, in
an order unrelated to the input's (the documentation promises no order), and ``manifest.json.out`` with the
counts (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-results.html). Each record's
``modelInput`` goes to ``invoke(model_id, body)`` — a strict per-model fake in tests, WordLlama in local mode —
so a body the model would refuse becomes that record's error.

The rules, each as the service states it:
- a job holds at least the model's minimum number of records and at most its maximum, else
  ValidationException at creation ("Minimum number of records per batch inference job", "Records per batch
  inference job": https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html);
- at most ``max_active_jobs`` submitted or in-progress jobs per model, else ServiceQuotaExceededException
  ("Sum of in-progress and submitted batch inference jobs using a base model");
- the same ``clientRequestToken`` returns the job it created (the token is the model's idempotency token); a
  job name in use with another token is a ConflictException;
- states Submitted -> Validating -> Scheduled -> InProgress -> Completed | PartiallyCompleted | Failed;
  StopModelInvocationJob moves a running job to Stopping, then Stopped; a job not done by its
  ``jobExpirationTime`` (submit time + ``timeoutDurationInHours``, 24 to 168, default 24) is Expired
  (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-monitor.html).

``step()`` moves every unfinished job one state (tests drive it); ``start()`` runs a thread that steps every
``interval_s`` (local mode).
"""

from __future__ import annotations

import json
import random
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
from botocore.exceptions import ClientError, ParamValidationError
from botocore.validate import ParamValidator

from freshvec import constants as c

_MODEL = botocore.session.get_session().get_service_model("bedrock")
_JOB_NAME = re.compile(r"^[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}$")
_S3_URI = re.compile(r"^s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(?:/(.*))?$")
_JOB_IDENTIFIER = re.compile(
    r"^(?:arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?([a-z0-9]{12})$"
)
_ROLE_ARN = re.compile(r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$")
RUNNING = ("Submitted", "Validating", "Scheduled", "InProgress")
DEFAULT_TIMEOUT_HOURS = 24
Invoke = Callable[[str, str], dict[str, Any]]  # (model id, JSON body) -> the model's response payload


def _status_of(operation: str, code: str) -> int:
    for shape in _MODEL.operation_model(operation).error_shapes:
        if shape.name == code:
            return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
    raise ValueError(f"{operation} does not raise {code}")


def service_error(operation: str, code: str, message: str) -> ClientError:
    """A ClientError as boto3 builds it from the service's answer (the code must be one the operation raises)."""
    status = _status_of(operation, code)
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {"x-amzn-errortype": code}},
            "message": message,
        },
        operation,
    )


@dataclass(frozen=True)
class RecordLimits:
    min_records: int = c.BATCH_DEFAULT_RECORDS[0]
    max_records: int = c.BATCH_DEFAULT_RECORDS[1]


@dataclass
class _Job:
    arn: str
    name: str
    model_id: str
    role_arn: str
    token: str | None
    input_uri: str
    output_uri: str
    submit_time: datetime
    expiration_time: datetime
    timeout_hours: int
    status: str = "Submitted"
    message: str = ""
    last_modified: datetime | None = None
    end_time: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)  # total/processed/success/error record counts
    records: list[dict[str, Any]] = field(default_factory=list)  # parsed at validation
    running: bool = False  # one stepper embeds its records


class BatchInferenceStandIn:
    """The job calls of one account and Region; ``invoke`` answers each record's model call."""

    def __init__(
        self,
        s3_client: Any,
        invoke: Invoke,
        *,
        models: Mapping[str, RecordLimits],
        account: str = "123456789012",
        region: str = "us-east-1",
        max_active_jobs: int = c.BATCH_DEFAULT_ACTIVE_JOBS,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self._s3 = s3_client
        self._invoke = invoke
        self.models = dict(models)  # model id (or inference profile id) -> its record limits
        self.account = account
        self.region = region
        self.max_active_jobs = max_active_jobs
        self._clock = clock
        self._random = random.Random(seed)  # noqa: S311 - job ids and output order, reproducible in tests
        self._jobs: dict[str, _Job] = {}  # job id -> job, in creation order
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._stop_worker = threading.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    # ---- the boto3 surface ----------------------------------------------------------------------------
    def create_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        op = "CreateModelInvocationJob"
        self._validated(op, params)
        with self._lock:
            token = params.get("clientRequestToken")
            for job in self._jobs.values():
                if token is not None and job.token == token:
                    return self._answer({"jobArn": job.arn})
            self._check_create(op, params)
            limits = self.models[params["modelId"]]
            input_uri = params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
            lines = self._input_lines(op, input_uri)
            if len(lines) < limits.min_records:
                raise service_error(
                    op,
                    "ValidationException",
                    f"The number of records in the input ({len(lines)}) is below the minimum number of records "
                    f"per batch inference job for {params['modelId']} ({limits.min_records}).",
                )
            if len(lines) > limits.max_records:
                raise service_error(
                    op,
                    "ValidationException",
                    f"The number of records in the input ({len(lines)}) is above the maximum number of records "
                    f"per batch inference job for {params['modelId']} ({limits.max_records}).",
                )
            now = self._now()
            hours = params.get("timeoutDurationInHours", DEFAULT_TIMEOUT_HOURS)
            job_id = "".join(self._random.choice(string.ascii_lowercase + string.digits) for _ in range(12))
            job = _Job(
                arn=f"arn:aws:bedrock:{self.region}:{self.account}:model-invocation-job/{job_id}",
                name=params["jobName"],
                model_id=params["modelId"],
                role_arn=params["roleArn"],
                token=token,
                input_uri=input_uri,
                output_uri=params["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"],
                submit_time=now,
                expiration_time=now + timedelta(hours=hours),
                timeout_hours=hours,
                last_modified=now,
                counts={"totalRecordCount": len(lines)},
            )
            self._jobs[job_id] = job
            return self._answer({"jobArn": job.arn})

    def get_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        op = "GetModelInvocationJob"
        self._validated(op, params)
        with self._lock:
            return self._answer(self._describe(self._find(op, params["jobIdentifier"])))

    def stop_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        op = "StopModelInvocationJob"
        self._validated(op, params)
        with self._lock:
            job = self._find(op, params["jobIdentifier"])
            if job.status not in RUNNING:
                raise service_error(op, "ConflictException", f"The job is {job.status} and cannot be stopped.")
            self._move(job, "Stopping")
            return self._answer({})

    def list_model_invocation_jobs(self, **params: Any) -> dict[str, Any]:
        op = "ListModelInvocationJobs"
        self._validated(op, params)
        with self._lock:
            jobs = list(self._jobs.values())
        if "statusEquals" in params:
            jobs = [j for j in jobs if j.status == params["statusEquals"]]
        if "nameContains" in params:
            jobs = [j for j in jobs if params["nameContains"] in j.name]
        if "submitTimeAfter" in params:
            jobs = [j for j in jobs if j.submit_time > params["submitTimeAfter"]]
        if "submitTimeBefore" in params:
            jobs = [j for j in jobs if j.submit_time < params["submitTimeBefore"]]
        jobs.sort(key=lambda j: j.submit_time, reverse=params.get("sortOrder", "Descending") == "Descending")
        start = 0
        if "nextToken" in params:
            if not params["nextToken"].isdigit():
                raise service_error(op, "ValidationException", "The nextToken is not valid.")
            start = int(params["nextToken"])
        size = params.get("maxResults", 1000)
        answer: dict[str, Any] = {"invocationJobSummaries": [self._describe(j) for j in jobs[start : start + size]]}
        if start + size < len(jobs):
            answer["nextToken"] = str(start + size)
        return self._answer(answer)

    # ---- the engine ------------------------------------------------------------------------------------
    def step(self) -> bool:
        """Move every unfinished job one state; True if any moved."""
        moved = False
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.status in (*RUNNING, "Stopping")]
        for job in jobs:
            moved = self._advance(job) or moved
        return moved

    def run_until_done(self, max_steps: int = 100) -> None:
        for _ in range(max_steps):
            if not self.step():
                return
        raise RuntimeError(f"jobs still running after {max_steps} steps")

    def start(self, interval_s: float = 0.5) -> BatchInferenceStandIn:
        """Step in a background thread (local mode), until ``stop``."""

        def loop() -> None:
            while not self._stop_worker.wait(interval_s):
                self.step()

        self._stop_worker.clear()
        self._worker = threading.Thread(target=loop, name="bedrock-batch-stand-in", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop_worker.set()
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None

    def _advance(self, job: _Job) -> bool:
        with self._lock:
            status = job.status
            if status == "Stopping":
                self._move(job, "Stopped", end=True)
            elif self._now() >= job.expiration_time:
                self._move(job, "Expired", end=True, message="The job did not finish before its expiration time.")
            elif status in ("Submitted", "Scheduled"):
                self._move(job, "Validating" if status == "Submitted" else "InProgress")
            elif status == "Validating":
                problem = self._parse_records(job)
                self._move(job, "Failed" if problem else "Scheduled", end=bool(problem), message=problem)
            elif job.running:
                return False
            else:
                job.running = True
        if status == "InProgress" and job.running:
            self._run(job)  # embed every record outside the lock: the model calls take time
        return True

    def _parse_records(self, job: _Job) -> str:
        records = []
        for number, line in enumerate(self._input_lines("GetModelInvocationJob", job.input_uri), start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return f"Line {number} of the input is not valid JSON."
            if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict):
                return f"Line {number} of the input has no modelInput object."
            if "recordId" not in record:  # the service adds one (batch-inference-data.html)
                alphabet = string.ascii_uppercase + string.digits
                record["recordId"] = "".join(self._random.choice(alphabet) for _ in range(11))
            records.append(record)
        job.records = records
        return ""

    def _run(self, job: _Job) -> None:
        lines = []
        errors = 0
        for record in job.records:
            with self._lock:
                if job.status != "InProgress":  # stopped meanwhile
                    return
            body = json.dumps(record["modelInput"])
            try:
                output: dict[str, Any] = {"modelOutput": self._invoke(job.model_id, body)}
            except ClientError as exc:
                errors += 1
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
                output = {"error": {"errorCode": status, "errorMessage": exc.response["Error"]["Message"]}}
            lines.append(json.dumps({"recordId": record["recordId"], "modelInput": record["modelInput"], **output}))
        self._random.shuffle(lines)  # no promised order
        bucket, folder = _split_uri(job.output_uri)
        base = f"{folder.rstrip('/')}/{job.arn.rsplit('/', 1)[1]}/".lstrip("/")
        input_name = _split_uri(job.input_uri)[1].rsplit("/", 1)[-1]
        self._s3.put_object(Bucket=bucket, Key=f"{base}{input_name}.out", Body=("\n".join(lines) + "\n").encode())
        total = len(job.records)
        counts = {
            "totalRecordCount": total,
            "processedRecordCount": total,
            "successRecordCount": total - errors,
            "errorRecordCount": errors,
        }
        manifest = {**counts, "inputTokenCount": 0, "outputTokenCount": 0}
        self._s3.put_object(Bucket=bucket, Key=f"{base}manifest.json.out", Body=json.dumps(manifest).encode())
        with self._lock:
            if job.status != "InProgress":
                return
            job.counts = counts
            if errors == total:
                self._move(job, "Failed", end=True, message="Every record of the job failed.")
            else:
                self._move(job, "PartiallyCompleted" if errors else "Completed", end=True)

    # ---- checks ---------------------------------------------------------------------------------------
    def _check_create(self, op: str, params: dict[str, Any]) -> None:
        if not _JOB_NAME.match(params["jobName"]):
            raise service_error(op, "ValidationException", "The jobName does not match the required pattern.")
        if not _ROLE_ARN.match(params["roleArn"]):
            raise service_error(op, "ValidationException", "The roleArn is not a valid IAM role ARN.")
        if params["modelId"] not in self.models:
            raise service_error(op, "ValidationException", "The provided model identifier is invalid.")
        for config, key in (("inputDataConfig", "s3InputDataConfig"), ("outputDataConfig", "s3OutputDataConfig")):
            location = params[config].get(key)
            if not location or not _S3_URI.match(location["s3Uri"]):
                raise service_error(op, "ValidationException", f"{config}.{key}.s3Uri is not a valid S3 URI.")
        if any(j.name == params["jobName"] for j in self._jobs.values()):
            raise service_error(op, "ConflictException", f"A job named {params['jobName']} already exists.")
        active = [j for j in self._jobs.values() if j.model_id == params["modelId"] and j.status in RUNNING]
        if len(active) >= self.max_active_jobs:
            raise service_error(
                op,
                "ServiceQuotaExceededException",
                f"There are {len(active)} submitted or in-progress jobs for {params['modelId']}; the quota is "
                f"{self.max_active_jobs}.",
            )

    def _input_lines(self, op: str, uri: str) -> list[str]:
        bucket, key = _split_uri(uri)
        try:
            if key.endswith(".jsonl"):
                keys = [key]
            else:
                listed = self._s3.list_objects_v2(Bucket=bucket, Prefix=key)
                keys = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".jsonl")]
            lines = []
            for name in keys:
                data = self._s3.get_object(Bucket=bucket, Key=name)["Body"].read().decode("utf-8")
                lines.extend(line for line in data.splitlines() if line.strip())
        except ClientError as exc:
            raise service_error(op, "ValidationException", f"Cannot read the input at {uri}: {exc}") from exc
        if not keys:
            raise service_error(op, "ValidationException", f"No .jsonl input file found at {uri}.")
        return lines

    def _find(self, op: str, identifier: str) -> _Job:
        matched = _JOB_IDENTIFIER.match(identifier)
        job = self._jobs.get(matched.group(1)) if matched else None
        if job is None:
            raise service_error(op, "ResourceNotFoundException", f"Job {identifier} not found.")
        return job

    def _validated(self, op: str, params: dict[str, Any]) -> None:
        report = ParamValidator().validate(params, _MODEL.operation_model(op).input_shape)
        if report.has_errors():
            raise ParamValidationError(report=report.generate_report())
        self.calls.append((op, params))

    # ---- answers --------------------------------------------------------------------------------------
    def _describe(self, job: _Job) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "jobArn": job.arn,
            "jobName": job.name,
            "modelId": job.model_id,
            "roleArn": job.role_arn,
            "status": job.status,
            "submitTime": job.submit_time,
            "lastModifiedTime": job.last_modified or job.submit_time,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": job.input_uri, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": job.output_uri}},
            "timeoutDurationInHours": job.timeout_hours,
            "jobExpirationTime": job.expiration_time,
            **job.counts,
        }
        if job.token is not None:
            answer["clientRequestToken"] = job.token
        if job.message:
            answer["message"] = job.message
        if job.end_time is not None:
            answer["endTime"] = job.end_time
        return answer

    def _move(self, job: _Job, status: str, *, end: bool = False, message: str = "") -> None:
        job.status = status
        job.last_modified = self._now()
        if message:
            job.message = message
        if end:
            job.end_time = job.last_modified

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    @staticmethod
    def _answer(answer: dict[str, Any]) -> dict[str, Any]:
        request_id = secrets.token_hex(16)
        return {**answer, "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": request_id, "RetryAttempts": 0}}


def _split_uri(uri: str) -> tuple[str, str]:
    matched = _S3_URI.match(uri)
    if not matched:
        raise ValueError(f"{uri} is not an S3 URI")
    return matched.group(1), matched.group(2) or ""
