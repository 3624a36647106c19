"""Alarms on every way the pipeline can fall behind or park data, an encrypted SNS topic, one dashboard."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from freshvec import constants as c
from freshvec.config import PipelineConfig
from stacks import constants as k

_PERIOD = Duration.minutes(k.ALARM_PERIOD_MINUTES)
CLOUDWATCH_ALARM_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        key: kms.Key,
        forwarder: lambda_.Function,
        sink: lambda_.Function,
        dlq: sqs.IQueue,
        on_failure_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="freshvec alarms", master_key=key, enforce_ssl=True)
        # CloudWatch publishes alarm notifications to the encrypted topic and needs the key for that; actions named
        # (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=list(CLOUDWATCH_ALARM_KMS_ACTIONS),
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        forwarder_lag = _custom(c.M_FORWARDER_LAG_MS, c.SERVICE_FORWARDER, "Maximum")
        trimmed = _custom(c.M_TRIMMED_DATA_EVENTS, c.SERVICE_FORWARDER, "Sum")
        iterator_age = sink.metric("IteratorAge", statistic="Maximum", period=_PERIOD)
        dlq_depth = dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=_PERIOD)
        failed_batches = cw.Metric(
            namespace="AWS/S3",
            metric_name="PutRequests",
            dimensions_map={"BucketName": on_failure_bucket.bucket_name, "FilterId": k.ON_FAILURE_METRICS_FILTER_ID},
            statistic="Sum",
            period=_PERIOD,
        )

        self.alarms: dict[str, cw.Alarm] = {}
        self._alarm(
            "SinkIteratorAge",
            iterator_age,
            k.ITERATOR_AGE_ALARM_MS,
            "The sink is more than five minutes behind the Kinesis stream.",
        )
        self._alarm(
            "ForwarderLag",
            forwarder_lag,
            k.FORWARDER_LAG_ALARM_MS,
            "The newest change forwarded to Kinesis is more than five minutes old.",
            evaluation_periods=k.FORWARDER_LAG_EVALUATION_PERIODS,
        )
        postgres = config.source.kind == "postgres"
        slot_lag = _custom(c.M_SLOT_LAG_BYTES, c.SERVICE_FORWARDER, "Maximum")
        if postgres:
            # The forwarder reports the lag after every run: no data means it is not running or cannot reach
            # the database, while the slot keeps WAL growing on the server's disk.
            self._alarm(
                "SlotLag",
                slot_lag,
                k.SLOT_LAG_ALARM_BYTES,
                f"The PostgreSQL replication slot holds back {k.SLOT_LAG_ALARM_BYTES // 2**20} MiB of WAL or more, or "
                "the forwarder stopped reporting it: WAL grows on the database's disk until the slot is read.",
                evaluation_periods=k.SLOT_LAG_EVALUATION_PERIODS,
                missing=cw.TreatMissingData.BREACHING,
            )
        else:
            self._alarm(
                "TrimmedData",
                trimmed,
                1,
                "The forwarder fell more than 24 h behind a Keyspaces shard: changes were trimmed before being read. "
                "Backfill the table (freshvec backfill) to repair the index.",
            )
            self._alarm(
                "CreatedAtRegressions",
                _custom(c.M_CREATED_AT_REGRESSIONS, c.SERVICE_FORWARDER, "Sum"),
                1,
                "A Keyspaces record's createdAt was older than the previous record's of the same row in one shard: "
                "versions assume it never goes backwards. Run freshvec reconcile (and --repair) to check the index.",
            )
        self._alarm(
            "PoisonRecords", dlq_depth, 1, "Change events were parked in the sink DLQ; inspect and `freshvec redrive`."
        )
        self._alarm(
            "FailedBatches",
            failed_batches,
            1,
            "A Kinesis batch exhausted its retries and was written to the on-failure bucket; `freshvec redrive`.",
        )
        for name, function in (("Forwarder", forwarder), ("Sink", sink)):
            self._alarm(f"{name}Errors", function.metric_errors(period=_PERIOD), 1, f"The {name.lower()} failed.")
            self._alarm(
                f"{name}Throttles", function.metric_throttles(period=_PERIOD), 1, f"The {name.lower()} was throttled."
            )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{config.stack_name}-pipeline")
        self.dashboard.add_widgets(
            _graph(
                "Changes forwarded and received",
                [
                    _custom(c.M_CHANGES_FORWARDED, c.SERVICE_FORWARDER, "Sum"),
                    _custom(c.M_CHANGES_RECEIVED, c.SERVICE_SINK, "Sum"),
                ],
            ),
            _graph(
                "Freshness and lag (ms)",
                [
                    _custom(c.M_FRESHNESS_MS, c.SERVICE_SINK, "p99"),
                    forwarder_lag,
                    iterator_age,
                ],
            ),
            _graph(
                "Vectors written",
                [
                    _custom(c.M_VECTORS_PUT, c.SERVICE_SINK, "Sum"),
                    _custom(c.M_VECTORS_DELETED, c.SERVICE_SINK, "Sum"),
                    _custom(c.M_EMBEDDINGS_COMPUTED, c.SERVICE_SINK, "Sum"),
                    _custom(c.M_EMBEDDINGS_SKIPPED, c.SERVICE_SINK, "Sum"),
                ],
            ),
            _graph(
                "Parked and lost",
                [
                    dlq_depth,
                    failed_batches,
                    slot_lag if postgres else trimmed,
                    _custom(c.M_DLQ_RECORDS, c.SERVICE_SINK, "Sum"),
                ],
            ),
            _graph(
                "Lambda errors and throttles",
                [
                    forwarder.metric_errors(period=_PERIOD),
                    sink.metric_errors(period=_PERIOD),
                    forwarder.metric_throttles(period=_PERIOD),
                    sink.metric_throttles(period=_PERIOD),
                    _custom(c.M_THROTTLES, c.SERVICE_FORWARDER, "Sum"),
                ],
            ),
            cw.AlarmStatusWidget(
                title="Alarms",
                alarms=list(self.alarms.values()),
                width=k.DASHBOARD_WIDGET_WIDTH,
                height=k.DASHBOARD_WIDGET_HEIGHT,
            ),
        )

    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        threshold: float,
        description: str,
        *,
        evaluation_periods: int = 1,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cw.Alarm(
            self,
            name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods,
            # No data means nothing happened (no lag reported, no object arrived, no error), unless said otherwise.
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms[name] = alarm


def _custom(metric_name: str, service: str, statistic: str) -> cw.Metric:
    return cw.Metric(
        namespace=c.METRICS_NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=_PERIOD,
    )


def _graph(title: str, metrics: list[cw.IMetric]) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=metrics, width=k.DASHBOARD_WIDGET_WIDTH, height=k.DASHBOARD_WIDGET_HEIGHT)
