"""The Amazon Keyspaces keyspace and table the pipeline follows: CDC on, PITR, KMS encryption, per-row TTL."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_cassandra as cassandra
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from freshvec.config import PipelineConfig, check_cloudformation_names
from stacks import constants as k

# The custom resource makes one call, Keyspaces UpdateTable, which the Service Authorization Reference maps to
# cassandra:Alter and cassandra:AlterMultiRegionResource
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonkeyspacesforapachecassandra.html).
# It never calls GetTable, so it needs no cassandra:Select.
ROW_TTL_ACTIONS = ("cassandra:Alter", "cassandra:AlterMultiRegionResource")


class SourceTable(Construct):
    """Keyspace + table built from the config's columns and primary key."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, key: kms.IKey, removal: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        check_cloudformation_names(config)
        self.keyspace_name = config.keyspace
        self.table_name = config.table

        self.keyspace = cassandra.CfnKeyspace(self, "Keyspace", keyspace_name=config.keyspace)
        self.keyspace.apply_removal_policy(removal)

        key_columns = set(config.primary_key)
        by_hand = bool(self.node.try_get_context(k.CTX_CLIENT_SIDE_TIMESTAMPS_BY_HAND))
        column = cassandra.CfnTable.ColumnProperty
        self.table = cassandra.CfnTable(
            self,
            "Table",
            keyspace_name=config.keyspace,
            table_name=config.table,
            partition_key_columns=[column(column_name=n, column_type=config.columns[n]) for n in config.partition_key],
            clustering_key_columns=[
                cassandra.CfnTable.ClusteringKeyColumnProperty(
                    column=column(column_name=n, column_type=config.columns[n]), order_by=k.CLUSTERING_ORDER
                )
                for n in config.clustering_key
            ]
            or None,
            regular_columns=[
                column(column_name=name, column_type=type_text)
                for name, type_text in config.columns.items()
                if name not in key_columns
            ],
            billing_mode=cassandra.CfnTable.BillingModeProperty(mode="ON_DEMAND"),
            point_in_time_recovery_enabled=True,
            encryption_specification=cassandra.CfnTable.EncryptionSpecificationProperty(
                encryption_type="CUSTOMER_MANAGED_KMS_KEY", kms_key_identifier=key.key_arn
            ),
            cdc_specification=cassandra.CfnTable.CdcSpecificationProperty(
                status="ENABLED", view_type=k.KEYSPACES_VIEW_TYPE
            ),
            # 0 = rows never expire by default; per-row TTL (USING TTL) is switched on below.
            default_time_to_live=0,
            # Re-sync reads (backfill, redrive, reconcile) version each row by its cells' WRITETIME, which
            # Keyspaces serves once client-side timestamps are on. It cannot be switched off again, and
            # CloudFormation replaces the table to change it, so an existing table is altered once by hand
            # (docs/deploy.md; https://docs.aws.amazon.com/keyspaces/latest/devguide/client-side-timestamps-how-to.html).
            client_side_timestamps_enabled=None if by_hand else True,
        )
        self.table.add_resource_dependency(self.keyspace, "a table is created in its keyspace")
        self.table.apply_removal_policy(removal)

        self.table_arn = (
            f"arn:{Aws.PARTITION}:cassandra:{Aws.REGION}:{Aws.ACCOUNT_ID}:/keyspace/{config.keyspace}"
            f"/table/{config.table}"
        )
        # The stream label is only known once CDC is on (and changes if CDC is re-enabled), hence the wildcard.
        self.stream_arn_pattern = f"{self.table_arn}/stream/*"
        # The system keyspaces (system, system_schema, system_schema_mcs, ...) drivers and CDC listing read
        # (https://docs.aws.amazon.com/keyspaces/latest/devguide/security_iam_service-with-iam.html).
        self.system_keyspace_arn = f"arn:{Aws.PARTITION}:cassandra:{Aws.REGION}:{Aws.ACCOUNT_ID}:/keyspace/system*"
        self._enable_row_ttl(config)

    def _enable_row_ttl(self, config: PipelineConfig) -> None:
        """Turn on Keyspaces' TTL feature without a default expiry.

        AWS::Cassandra::Table only offers DefaultTimeToLive, which (when > 0) expires every row. Per-row TTL
        without a default needs the table's ``ttl`` status ENABLED, which only the Keyspaces API sets.

        The call runs on create and on update: renaming ``keyspace`` or ``table`` replaces the table, and the
        new one starts with TTL off, so the update switches it on there. The physical id names the table, so a
        rename is a new resource to CloudFormation, whose clean-up Delete of the old id changes nothing: TTL
        cannot be switched off again (and the old table is being deleted anyway).
        """
        call = cr.AwsSdkCall(
            service="Keyspaces",
            action="UpdateTable",
            parameters={"keyspaceName": config.keyspace, "tableName": config.table, "ttl": {"status": "ENABLED"}},
            physical_resource_id=cr.PhysicalResourceId.of(f"{config.keyspace}.{config.table}.ttl"),
        )
        # Own role and log group: no AWS managed policy, logs kept as long as the functions' logs.
        role = iam.Role(
            self,
            "EnableRowTtlRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="freshvec: switch on per-row TTL for the source table (again after a rename)",
        )
        log_group = logs.LogGroup(
            self, "EnableRowTtlLogs", retention=k.LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        log_group.grant_write(role)
        self.row_ttl = cr.AwsCustomResource(
            self,
            "EnableRowTtl",
            on_create=call,
            on_update=call,
            role=role,
            log_group=log_group,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=list(ROW_TTL_ACTIONS), resources=[self.table_arn])]
            ),
            install_latest_aws_sdk=False,
        )
        self.row_ttl.node.add_dependency(self.table)
