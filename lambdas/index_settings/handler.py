"""Index settings custom resource: CloudFormation event -> ``freshvec.index_settings`` -> the response it waits for.

Thin on purpose: the event's properties -> one domain call with an ``S3VectorsStore`` (the asset's bundled boto3
1.44.5 has UpdateIndexMode and UpdateMetadataConfiguration) -> SUCCESS or FAILED with the reason, PUT to the
pre-signed response URL. The physical id names the bucket and index, so a changed setting updates the same resource.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from freshvec import constants as c
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.index_settings import apply_index_settings, remove_text_search

logger = Logger(service=c.SERVICE_INDEX_SETTINGS)
_MARGIN_S = 60  # stop waiting this long before the function's own timeout, to answer CloudFormation in time


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    props = event["ResourceProperties"]
    bucket, index = props["VectorBucketName"], props["IndexName"]
    data: dict[str, str] = {}
    try:
        store = S3VectorsStore(boto3.client("s3vectors"), bucket, index)
        if event["RequestType"] == "Delete":
            remove_text_search(store)
        else:
            keys = {k: v or None for k, v in json.loads(props["TextSearch"]).items()}
            deadline = context.get_remaining_time_in_millis() / 1000 - _MARGIN_S
            poll = min(10.0, max(1.0, deadline / 60))
            data["Status"] = apply_index_settings(store, props["IndexMode"], keys, deadline_s=deadline, poll_s=poll)
            logger.info("index settings applied", extra={"index": index, "status": data["Status"]})
        status, reason = "SUCCESS", "applied"
    except Exception as exc:  # CloudFormation must hear back, or it waits an hour
        logger.exception("index settings failed")
        if event["RequestType"] == "Delete" and "NotFound" in type(exc.__cause__ or exc).__name__ + str(exc):
            status, reason = "SUCCESS", "the index is already gone"
        else:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:500]
    _respond(event, status, reason, data, physical_id=f"{bucket}/{index}")


def _respond(event: dict[str, Any], status: str, reason: str, data: dict[str, str], *, physical_id: str) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason,
            "PhysicalResourceId": event.get("PhysicalResourceId") or physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https URL
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        answer.read()
