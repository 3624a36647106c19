"""The synthesized template carries the pipeline config into every resource (properties, not counts)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aws_cdk.assertions import Match

from freshvec import constants as c
from freshvec.cli.parked import REDRIVEN_PREFIX
from freshvec.config import PipelineConfig
from stacks import constants as k
from tests.infra.conftest import Synth, statements


def role_statements(synth: Synth, role: Any) -> list[dict[str, Any]]:
    role_id = synth.logical_id(role)
    return statements(synth.template, lambda _lid, r: {"Ref": role_id} in r["Properties"]["Roles"])


def statement_with(stmts: list[dict[str, Any]], action: str) -> dict[str, Any]:
    matching = [s for s in stmts if action in _as_list(s["Action"])]
    assert len(matching) == 1, f"{action}: {matching}"
    return matching[0]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ref_arn(synth: Synth, construct: Any, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [synth.logical_id(construct), attribute]}


# ---- source table ------------------------------------------------------------------------------------
def test_keyspaces_table_has_cdc_pitr_encryption_and_the_configured_schema(synth: Synth) -> None:
    table = synth.one("AWS::Cassandra::Table")
    props = table["Properties"]
    assert props["KeyspaceName"] == "media"
    assert props["TableName"] == "movies"
    assert props["CdcSpecification"] == {"Status": "ENABLED", "ViewType": "NEW_AND_OLD_IMAGES"}
    assert props["PointInTimeRecoveryEnabled"] is True
    assert props["ClientSideTimestampsEnabled"] is True  # re-sync reads version rows by WRITETIME
    assert props["EncryptionSpecification"] == {
        "EncryptionType": "CUSTOMER_MANAGED_KMS_KEY",
        "KmsKeyIdentifier": ref_arn(synth, synth.stack.key),
    }
    assert props["PartitionKeyColumns"] == [{"ColumnName": "title", "ColumnType": "text"}]
    assert "ClusteringKeyColumns" not in props
    regular = {col["ColumnName"]: col["ColumnType"] for col in props["RegularColumns"]}
    assert regular == {n: t for n, t in synth.config.columns.items() if n != "title"}
    assert props["DefaultTimeToLive"] == 0  # rows never expire unless written with USING TTL
    assert synth.logical_id(synth.stack.source.keyspace) in table["DependsOn"]


def test_composite_key_keeps_partition_and_clustering_order(variant: Synth) -> None:
    props = variant.one("AWS::Cassandra::Table")["Properties"]
    assert "ClientSideTimestampsEnabled" not in props  # turned on by hand: adding it would replace the table
    assert props["PartitionKeyColumns"] == [{"ColumnName": "product_id", "ColumnType": "uuid"}]
    assert props["ClusteringKeyColumns"] == [
        {"Column": {"ColumnName": "posted_at", "ColumnType": "timestamp"}, "OrderBy": "ASC"},
        {"Column": {"ColumnName": "reviewer", "ColumnType": "text"}, "OrderBy": "ASC"},
    ]
    assert {c["ColumnName"] for c in props["RegularColumns"]} == {"body", "stars", "tags"}


def test_per_row_ttl_is_switched_on_after_the_table_exists(synth: Synth) -> None:
    custom = synth.one("Custom::AWS")
    create = json.loads(custom["Properties"]["Create"])
    assert create["service"] == "Keyspaces"
    assert create["action"] == "UpdateTable"
    assert create["parameters"] == {"keyspaceName": "media", "tableName": "movies", "ttl": {"status": "ENABLED"}}
    assert create["physicalResourceId"] == {"id": "media.movies.ttl"}
    assert "Delete" not in custom["Properties"]  # TTL cannot be switched off again
    assert synth.logical_id(synth.stack.source.table) in custom["DependsOn"]
    ttl_policy = statement_with(role_statements(synth, synth.stack.source.row_ttl.grant_principal), "cassandra:Alter")
    assert ttl_policy["Action"] == ["cassandra:Alter", "cassandra:AlterMultiRegionResource"]  # UpdateTable's actions
    assert ttl_policy["Resource"]["Fn::Join"][1][-1] == ":/keyspace/media/table/movies"


def test_a_renamed_table_gets_per_row_ttl_too(synth: Synth, variant: Synth) -> None:
    """Renaming keyspace or table replaces the table; CloudFormation then sends the custom resource an Update
    (its properties changed), which must switch TTL on for the new table and report a new physical id."""
    for config, custom in ((synth.config, synth.one("Custom::AWS")), (variant.config, variant.one("Custom::AWS"))):
        update = json.loads(custom["Properties"]["Update"])
        assert update["action"] == "UpdateTable"
        assert update["parameters"] == {
            "keyspaceName": config.keyspace,
            "tableName": config.table,
            "ttl": {"status": "ENABLED"},
        }
        assert update["physicalResourceId"] == {"id": f"{config.keyspace}.{config.table}.ttl"}
        assert json.loads(custom["Properties"]["Create"]) == update
    role = variant.stack.source.row_ttl.grant_principal
    ttl_policy = statement_with(role_statements(variant, role), "cassandra:Alter")
    assert ttl_policy["Resource"]["Fn::Join"][1][-1] == ":/keyspace/shop/table/reviews"  # the new table only


# ---- change stream -----------------------------------------------------------------------------------
def test_kinesis_stream_is_kms_encrypted_on_demand_with_configured_retention(synth: Synth) -> None:
    props = synth.one("AWS::Kinesis::Stream")["Properties"]
    assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": ref_arn(synth, synth.stack.key)}
    assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in props
    assert props["RetentionPeriodHours"] == 24


def test_provisioned_stream_gets_the_configured_shards_and_retention(variant: Synth) -> None:
    props = variant.one("AWS::Kinesis::Stream")["Properties"]
    assert props["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert props["ShardCount"] == 4
    assert props["RetentionPeriodHours"] == 48


# ---- vector store ------------------------------------------------------------------------------------
def test_vector_bucket_is_sse_kms_with_the_stack_key(synth: Synth) -> None:
    props = synth.one("AWS::S3Vectors::VectorBucket")["Properties"]
    assert props["EncryptionConfiguration"] == {"SseType": "aws:kms", "KmsKeyArn": ref_arn(synth, synth.stack.key)}
    assert "VectorBucketName" not in props  # CloudFormation names it unless the config does


def test_index_matches_the_embedding_model_and_is_deleted_before_its_bucket(synth: Synth) -> None:
    index = synth.one("AWS::S3Vectors::Index")
    props = index["Properties"]
    assert props["DataType"] == "float32"
    assert props["Dimension"] == synth.config.embedding.dimensions == 256
    assert props["DistanceMetric"] == "cosine"
    assert props["IndexName"] == synth.config.vector_index_name
    assert props["IndexName"].startswith("movies-")
    assert props["MetadataConfiguration"] == {
        "NonFilterableMetadataKeys": ["overview", *c.PIPELINE_NON_FILTERABLE_KEYS]
    }
    bucket_id = synth.logical_id(synth.stack.vectors.bucket)
    assert props["VectorBucketArn"] == {"Fn::GetAtt": [bucket_id, "VectorBucketArn"]}
    assert bucket_id in index["DependsOn"]


def test_variant_index_uses_cohere_dimensions_metric_and_bucket_name(variant: Synth) -> None:
    props = variant.one("AWS::S3Vectors::Index")["Properties"]
    assert props["Dimension"] == 1024
    assert props["DistanceMetric"] == "euclidean"
    assert props["MetadataConfiguration"] == {"NonFilterableMetadataKeys": ["body", *c.PIPELINE_NON_FILTERABLE_KEYS]}
    assert props["IndexName"] == variant.config.vector_index_name
    assert variant.one("AWS::S3Vectors::VectorBucket")["Properties"]["VectorBucketName"] == "shop-reviews-vectors"


def test_key_policy_lets_s3_vectors_index_and_cloudwatch_publish(synth: Synth) -> None:
    policy = synth.one("AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    by_sid = {s.get("Sid"): s for s in policy}
    indexing = by_sid["AllowS3VectorsIndexing"]
    assert indexing["Principal"] == {"Service": "indexing.s3vectors.amazonaws.com"}
    assert indexing["Action"] == "kms:Decrypt"
    assert indexing["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    alarms = by_sid["AllowCloudWatchAlarmsToPublish"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert synth.one("AWS::KMS::Key")["Properties"]["EnableKeyRotation"] is True


# ---- forwarder ---------------------------------------------------------------------------------------
def test_checkpoint_table_schema_billing_encryption_and_pitr(synth: Synth) -> None:
    props = synth.one("AWS::DynamoDB::Table")["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": c.CHECKPOINT_PK, "KeyType": "HASH"},
        {"AttributeName": c.CHECKPOINT_SK, "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "stream", "AttributeType": "S"} in props["AttributeDefinitions"]
    assert {"AttributeName": "shard", "AttributeType": "S"} in props["AttributeDefinitions"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {
        "KMSMasterKeyId": ref_arn(synth, synth.stack.key),
        "SSEEnabled": True,
        "SSEType": "KMS",
    }
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def _function(synth: Synth, function: Any) -> dict[str, Any]:
    return synth.template["Resources"][synth.logical_id(function)]["Properties"]


def test_forwarder_function_runtime_sizes_environment_and_concurrency(synth: Synth) -> None:
    props = _function(synth, synth.stack.forwarder.function)
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "lambdas.forwarder.handler.handler"
    assert props["MemorySize"] == 512
    assert props["Timeout"] == 70
    # No reservation by default: a new account's concurrency quota of 10 leaves no room for one.
    assert "ReservedConcurrentExecutions" not in props
    assert props["Layers"] == [{"Ref": synth.logical_id(synth.stack.node.find_child("Dependencies"))}]
    env = props["Environment"]["Variables"]
    assert PipelineConfig.from_json(env[c.ENV_CONFIG]) == synth.config
    assert env[c.ENV_STREAM_NAME] == {"Ref": synth.logical_id(synth.stack.change_stream.stream)}
    assert env[c.ENV_CHECKPOINT_TABLE] == {"Ref": synth.logical_id(synth.stack.forwarder.checkpoints)}
    assert env["POWERTOOLS_SERVICE_NAME"] == c.SERVICE_FORWARDER
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == c.METRICS_NAMESPACE


def test_forwarder_runs_on_the_configured_schedule_without_async_retries(synth: Synth, variant: Synth) -> None:
    fn_id = synth.logical_id(synth.stack.forwarder.function)
    rule = synth.one("AWS::Events::Rule")["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["State"] == "ENABLED"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert variant.one("AWS::Events::Rule")["Properties"]["ScheduleExpression"] == "rate(2 minutes)"
    invoke = synth.one("AWS::Lambda::EventInvokeConfig")["Properties"]
    assert invoke["FunctionName"] == {"Ref": fn_id}
    assert invoke["MaximumRetryAttempts"] == 0


def test_forwarder_iam_reads_this_tables_streams_and_writes_this_stream_and_table(synth: Synth) -> None:
    stmts = role_statements(synth, synth.stack.forwarder.function.role)
    read = statement_with(stmts, "cassandra:GetRecords")
    assert sorted(read["Action"]) == ["cassandra:GetRecords", "cassandra:GetShardIterator", "cassandra:GetStream"]
    assert read["Resource"]["Fn::Join"][1][-1] == ":/keyspace/media/table/movies/stream/*"
    assert statement_with(stmts, "cassandra:ListStreams")["Resource"] == "*"
    system = statement_with(stmts, "cassandra:Select")
    assert system["Resource"]["Fn::Join"][1][-1] == ":/keyspace/system*"
    put = statement_with(stmts, "kinesis:PutRecords")
    assert put["Action"] == "kinesis:PutRecords"
    assert put["Resource"] == ref_arn(synth, synth.stack.change_stream.stream)
    ddb = statement_with(stmts, "dynamodb:UpdateItem")
    assert ddb["Resource"] == ref_arn(synth, synth.stack.forwarder.checkpoints)
    assert statement_with(stmts, "kms:GenerateDataKey")["Resource"] == ref_arn(synth, synth.stack.key)
    all_actions = {a for s in stmts for a in _as_list(s["Action"])}
    assert not any(a.startswith(("bedrock:", "s3vectors:", "sqs:")) for a in all_actions)


# ---- sink --------------------------------------------------------------------------------------------
def test_sink_event_source_mapping_has_every_safety_setting(synth: Synth) -> None:
    props = synth.one("AWS::Lambda::EventSourceMapping")["Properties"]
    assert props["EventSourceArn"] == ref_arn(synth, synth.stack.change_stream.stream)
    assert props["FunctionName"] == {"Ref": synth.logical_id(synth.stack.sink.function)}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["MaximumRetryAttempts"] == 10
    assert props["MaximumRecordAgeInSeconds"] == 3600
    assert props["BatchSize"] == 100
    assert props["MaximumBatchingWindowInSeconds"] == 1
    assert props["ParallelizationFactor"] == 1
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["DestinationConfig"] == {
        "OnFailure": {"Destination": ref_arn(synth, synth.stack.sink.on_failure_bucket)}
    }


def test_variant_event_source_mapping_follows_the_config(variant: Synth) -> None:
    props = variant.one("AWS::Lambda::EventSourceMapping")["Properties"]
    assert (props["BatchSize"], props["MaximumBatchingWindowInSeconds"], props["ParallelizationFactor"]) == (250, 5, 3)
    assert (props["MaximumRetryAttempts"], props["MaximumRecordAgeInSeconds"]) == (7, 7200)
    sink = _function(variant, variant.stack.sink.function)
    assert sink["ReservedConcurrentExecutions"] == 12
    assert (sink["MemorySize"], sink["Timeout"]) == (2048, 300)
    forwarder = _function(variant, variant.stack.forwarder.function)
    assert (forwarder["MemorySize"], forwarder["Timeout"]) == (256, 100)
    assert forwarder["ReservedConcurrentExecutions"] == 3  # forwarder.reserved_concurrency, when set


def test_sink_function_environment_and_no_reserved_concurrency_by_default(synth: Synth) -> None:
    props = _function(synth, synth.stack.sink.function)
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "lambdas.sink.handler.handler"
    assert (props["MemorySize"], props["Timeout"]) == (1024, 120)
    assert "ReservedConcurrentExecutions" not in props
    env = props["Environment"]["Variables"]
    assert PipelineConfig.from_json(env[c.ENV_CONFIG]) == synth.config
    assert env[c.ENV_VECTOR_INDEX] == synth.config.vector_index_name
    assert env[c.ENV_VECTOR_BUCKET] == {
        "Fn::Select": [1, {"Fn::Split": ["/", ref_arn(synth, synth.stack.vectors.bucket, "VectorBucketArn")]}]
    }
    assert env[c.ENV_DLQ_URL] == {"Ref": synth.logical_id(synth.stack.sink.dlq)}
    assert env["POWERTOOLS_SERVICE_NAME"] == c.SERVICE_SINK


def test_sink_iam_is_one_model_one_index_one_queue_one_bucket(synth: Synth, variant: Synth) -> None:
    stmts = role_statements(synth, synth.stack.sink.function.role)
    bedrock = statement_with(stmts, "bedrock:InvokeModel")
    assert bedrock["Action"] == "bedrock:InvokeModel"
    assert bedrock["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":bedrock:",
                {"Ref": "AWS::Region"},
                "::foundation-model/amazon.titan-embed-text-v2:0",
            ],
        ]
    }
    vectors = statement_with(stmts, "s3vectors:PutVectors")
    assert sorted(vectors["Action"]) == [
        "s3vectors:DeleteVectors",
        "s3vectors:GetIndex",
        "s3vectors:GetVectors",
        "s3vectors:PutVectors",
    ]
    assert vectors["Resource"] == ref_arn(synth, synth.stack.vectors.index, "IndexArn")
    assert statement_with(stmts, "sqs:SendMessage")["Resource"] == ref_arn(synth, synth.stack.sink.dlq)
    bucket_arn = ref_arn(synth, synth.stack.sink.on_failure_bucket)
    assert statement_with(stmts, "s3:PutObject")["Resource"] == {"Fn::Join": ["", [bucket_arn, "/*"]]}
    assert statement_with(stmts, "s3:ListBucket")["Resource"] == bucket_arn
    assert statement_with(stmts, "kinesis:GetRecords")["Resource"] == ref_arn(synth, synth.stack.change_stream.stream)
    s3_actions = {a for s in stmts for a in _as_list(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:PutObject", "s3:ListBucket"}
    cohere = statement_with(role_statements(variant, variant.stack.sink.function.role), "bedrock:InvokeModel")
    assert cohere["Resource"]["Fn::Join"][1][-1] == "::foundation-model/cohere.embed-english-v3"


def test_dlq_is_kms_encrypted_tls_only_with_configured_retention(synth: Synth, variant: Synth) -> None:
    props = synth.one("AWS::SQS::Queue")["Properties"]
    assert props["KmsMasterKeyId"] == ref_arn(synth, synth.stack.key)
    assert props["MessageRetentionPeriod"] == 14 * 86400
    assert variant.one("AWS::SQS::Queue")["Properties"]["MessageRetentionPeriod"] == 4 * 86400
    _assert_denies_insecure_transport(synth.one("AWS::SQS::QueuePolicy")["Properties"]["PolicyDocument"])


def _assert_denies_insecure_transport(document: dict[str, Any]) -> None:
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in document["Statement"]
    )


def test_on_failure_bucket_is_encrypted_private_tls_only_expiring_and_metered(synth: Synth) -> None:
    bucket_id = synth.logical_id(synth.stack.sink.on_failure_bucket)
    props = synth.template["Resources"][bucket_id]["Properties"]
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": ref_arn(synth, synth.stack.key),
    }
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["LifecycleConfiguration"]["Rules"] == [
        {"ExpirationInDays": k.ON_FAILURE_EXPIRY_DAYS, "Id": "ExpireFailedBatches", "Status": "Enabled"}
    ]
    # Only what Lambda delivers (aws/lambda/...), not the copies `freshvec redrive` makes under redriven/.
    assert props["MetricsConfigurations"] == [{"Id": k.ON_FAILURE_METRICS_FILTER_ID, "Prefix": "aws/lambda/"}]
    assert not REDRIVEN_PREFIX.startswith(k.ON_FAILURE_LAMBDA_PREFIX)
    [policy] = [
        p for p in synth.resources("AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    _assert_denies_insecure_transport(policy["Properties"]["PolicyDocument"])


# ---- monitoring --------------------------------------------------------------------------------------
def _alarm_for(synth: Synth, namespace: str, metric: str) -> dict[str, Any]:
    found = [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == namespace and a["Properties"].get("MetricName") == metric
    ]
    assert found, f"no alarm on {namespace}/{metric}"
    return found[0]


def test_every_failure_signal_has_an_alarm_that_notifies_the_topic(synth: Synth) -> None:
    topic = {"Ref": synth.logical_id(synth.stack.monitoring.topic)}
    iterator = _alarm_for(synth, "AWS/Lambda", "IteratorAge")
    assert iterator["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": synth.logical_id(synth.stack.sink.function)}}
    ]
    assert iterator["Threshold"] == k.ITERATOR_AGE_ALARM_MS
    lag = _alarm_for(synth, c.METRICS_NAMESPACE, c.M_FORWARDER_LAG_MS)
    assert lag["Dimensions"] == [{"Name": "service", "Value": c.SERVICE_FORWARDER}]
    assert lag["Statistic"] == "Maximum"
    trimmed = _alarm_for(synth, c.METRICS_NAMESPACE, c.M_TRIMMED_DATA_EVENTS)
    assert (trimmed["Threshold"], trimmed["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    regressions = _alarm_for(synth, c.METRICS_NAMESPACE, c.M_CREATED_AT_REGRESSIONS)
    assert regressions["Dimensions"] == [{"Name": "service", "Value": c.SERVICE_FORWARDER}]
    assert (regressions["Statistic"], regressions["Threshold"]) == ("Sum", 1)
    dlq = _alarm_for(synth, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [synth.logical_id(synth.stack.sink.dlq), "QueueName"]}}
    ]
    assert dlq["Threshold"] == 1
    arrivals = _alarm_for(synth, "AWS/S3", "PutRequests")
    assert {"Name": "FilterId", "Value": k.ON_FAILURE_METRICS_FILTER_ID} in arrivals["Dimensions"]
    assert arrivals["Threshold"] == 1
    errors = [
        a for a in synth.resources("AWS::CloudWatch::Alarm").values() if a["Properties"].get("MetricName") == "Errors"
    ]
    throttles = [
        a
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "Throttles"
    ]
    fn_ids = {synth.logical_id(synth.stack.forwarder.function), synth.logical_id(synth.stack.sink.function)}
    for group in (errors, throttles):
        assert {a["Properties"]["Dimensions"][0]["Value"]["Ref"] for a in group} == fn_ids
    for alarm in synth.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [topic]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_alarm_topic_is_encrypted_and_emails_only_when_configured(synth: Synth, variant: Synth) -> None:
    assert synth.one("AWS::SNS::Topic")["Properties"]["KmsMasterKeyId"] == ref_arn(synth, synth.stack.key)
    assert synth.resources("AWS::SNS::Subscription") == {}
    subscription = variant.one("AWS::SNS::Subscription")["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "oncall@example.com")


def test_dashboard_shows_the_pipeline(synth: Synth) -> None:
    dashboard = synth.one("AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == "freshvec-pipeline"
    body = json.dumps(synth.stack.resolve(dashboard["DashboardBody"]))
    for metric in (c.M_FORWARDER_LAG_MS, c.M_FRESHNESS_MS, c.M_VECTORS_PUT, "IteratorAge", "PutRequests"):
        assert metric in body


# ---- outputs, names, removal -------------------------------------------------------------------------
OUTPUT_NAMES = [getattr(c, name) for name in dir(c) if name.startswith("OUT_")]


def test_every_cli_output_is_present_and_config_round_trips(synth: Synth) -> None:
    outputs = synth.template["Outputs"]
    assert sorted(outputs) == sorted(OUTPUT_NAMES)
    assert PipelineConfig.from_json(outputs[c.OUT_PIPELINE_CONFIG]["Value"]) == synth.config
    assert outputs[c.OUT_REGION]["Value"] == {"Ref": "AWS::Region"}
    assert outputs[c.OUT_KEYSPACE]["Value"] == "media"
    assert outputs[c.OUT_TABLE]["Value"] == "movies"
    assert outputs[c.OUT_VECTOR_INDEX]["Value"] == synth.config.vector_index_name
    operator_policy = synth.stack.operator.policy.node.default_child
    assert outputs[c.OUT_OPERATOR_POLICY_ARN]["Value"] == {"Ref": synth.logical_id(operator_policy)}
    assert outputs[c.OUT_VECTOR_INDEX_ARN]["Value"] == ref_arn(synth, synth.stack.vectors.index, "IndexArn")
    assert outputs[c.OUT_SINK_DLQ_URL]["Value"] == {"Ref": synth.logical_id(synth.stack.sink.dlq)}
    assert outputs[c.OUT_FORWARDER_FUNCTION]["Value"] == {"Ref": synth.logical_id(synth.stack.forwarder.function)}
    assert outputs[c.OUT_DASHBOARD]["Value"] == {"Ref": synth.logical_id(synth.stack.monitoring.dashboard)}


def test_stack_name_comes_from_the_config(synth: Synth, variant: Synth) -> None:
    assert synth.stack.stack_name == "freshvec"
    assert variant.stack.stack_name == "freshvec-variant"


def _policy(synth: Synth, construct: Any) -> str:
    return synth.template["Resources"][synth.logical_id(construct)]["DeletionPolicy"]


def test_destroy_removes_data_resources_and_empties_the_bucket(synth: Synth) -> None:
    stack = synth.stack
    for construct in (stack.source.keyspace, stack.source.table, stack.vectors.bucket, stack.vectors.index):
        assert _policy(synth, construct) == "Delete"
    assert _policy(synth, stack.sink.on_failure_bucket) == "Delete"
    assert _policy(synth, stack.key) == "Delete"
    assert synth.resources("Custom::S3AutoDeleteObjects")


def test_retain_keeps_data_resources_and_their_key(variant: Synth) -> None:
    stack = variant.stack
    for construct in (stack.source.keyspace, stack.source.table, stack.vectors.bucket, stack.vectors.index):
        assert _policy(variant, construct) == "Retain"
    assert _policy(variant, stack.sink.on_failure_bucket) == "Retain"
    assert _policy(variant, stack.key) == "Retain"
    assert _policy(variant, stack.change_stream.stream) == "Delete"
    assert variant.resources("Custom::S3AutoDeleteObjects") == {}


def test_log_groups_have_retention(synth: Synth) -> None:
    groups = synth.resources("AWS::Logs::LogGroup")
    assert len(groups) == 4  # forwarder, sink, the TTL switch, the index settings
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == 30
    synth.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": "lambdas.sink.handler.handler", "LoggingConfig": {"LogGroup": Match.any_value()}},
    )


def test_index_settings_are_applied_in_place_by_a_custom_resource(synth: Synth, variant: Synth) -> None:
    """Mode and full-text keys travel as properties of one custom resource after the index; the index's own
    definition (and so its name) does not depend on them."""
    for result, text_search in ((synth, {}), (variant, {"body": "en"})):
        [settings] = result.resources("AWS::CloudFormation::CustomResource").values()
        props = settings["Properties"]
        assert props["IndexMode"] == "ENHANCED" and json.loads(props["TextSearch"]) == text_search
        [index_id] = result.resources("AWS::S3Vectors::Index")
        assert index_id in settings["DependsOn"]
        assert props["IndexName"] == result.config.vector_index_name
        assert props["ServiceToken"]["Fn::GetAtt"][0] == result.logical_id(result.stack.index_settings.function)
    off = dataclasses.replace(
        variant.config, text_search=dataclasses.replace(variant.config.text_search, enabled=False)
    )
    assert off.vector_index_name == variant.config.vector_index_name  # text search on or off: the same index
    synth.assertions.has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": "lambdas.index_settings.handler.handler", "Timeout": 900, "Runtime": "python3.13"},
    )


def test_the_index_settings_role_may_change_only_this_index(synth: Synth) -> None:
    role = synth.logical_id(synth.stack.index_settings.function.role)
    found = statements(synth.template, lambda _lid, r: {"Ref": role} in r["Properties"]["Roles"])
    s3v = [
        s
        for s in found
        if any(
            str(a).startswith("s3vectors:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        )
    ]
    assert s3v == [
        {
            "Action": ["s3vectors:GetIndex", "s3vectors:UpdateIndexMode", "s3vectors:UpdateMetadataConfiguration"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [synth.logical_id(synth.stack.vectors.index), "IndexArn"]},
        }
    ]
