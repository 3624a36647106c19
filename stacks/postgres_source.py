"""What a PostgreSQL source needs from AWS: the forwarder in the database's VPC, its password, VPC endpoints.

The stack does not create the database (docs/deploy.md says what to set on RDS/Aurora). It places the forwarder
Lambda in the configured subnets and security groups, lets its role read exactly the configured secret (and
decrypt it with the configured key), and, with ``network.create_endpoints`` (the default), creates the VPC
endpoints a private subnet needs to reach Kinesis, Secrets Manager, CloudWatch Logs, CloudWatch (metrics) and
DynamoDB; without them the subnets need a route to a NAT gateway.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from freshvec.config import PipelineConfig

# The forwarder reads its password once per container (lambdas/forwarder/handler.py)
# (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html); a secret under a
# customer managed key also needs kms:Decrypt on that key
# (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html#security-encryption-authz).
SECRET_ACTIONS = ("secretsmanager:GetSecretValue",)
SECRET_KEY_ACTIONS = ("kms:Decrypt",)
# A function in a VPC: Lambda manages its network interfaces with the execution role
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions).
# The Describe actions support no resource-level permissions and take "*".
ENI_DESCRIBE_ACTIONS = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")
ENI_CREATE_ACTIONS = ("ec2:CreateNetworkInterface",)
ENI_MANAGE_ACTIONS = ("ec2:AssignPrivateIpAddresses", "ec2:DeleteNetworkInterface", "ec2:UnassignPrivateIpAddresses")
# Interface endpoints by service name suffix (com.amazonaws.<region>.<name>), and the DynamoDB gateway.
INTERFACE_ENDPOINTS = {
    "Kinesis": "kinesis-streams",
    "SecretsManager": "secretsmanager",
    "Logs": "logs",
    "Monitoring": "monitoring",
}
GATEWAY_ENDPOINTS = {"DynamoDb": "dynamodb"}
HTTPS_PORT = 443


class PostgresSource(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, function: lambda_.Function):
        super().__init__(scope, construct_id)
        pg = config.postgres
        role = function.role
        assert role is not None  # python_function always creates one
        connection = pg.connection
        assert connection.password_secret_arn is not None  # check_deployable requires it
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadTheDatabasePassword", actions=list(SECRET_ACTIONS), resources=[connection.password_secret_arn]
            )
        )
        if connection.password_secret_kms_key_arn is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DecryptTheDatabasePassword",
                    actions=list(SECRET_KEY_ACTIONS),
                    resources=[connection.password_secret_kms_key_arn],
                )
            )
        self.endpoints: dict[str, ec2.CfnVPCEndpoint] = {}
        self.endpoint_security_group: ec2.CfnSecurityGroup | None = None
        net = pg.network
        if net.vpc_id is None:
            return  # a database reachable from outside a VPC (e.g. publicly accessible): the function stays out
        self._place_in_vpc(function, role, list(net.subnet_ids), list(net.security_group_ids))
        if net.create_endpoints:
            self._endpoints(net.vpc_id, list(net.subnet_ids), list(net.security_group_ids), list(net.route_table_ids))

    def _place_in_vpc(
        self, function: lambda_.Function, role: iam.IRole, subnets: list[str], security_groups: list[str]
    ) -> None:
        # Set on the resource itself: the L2 ``vpc`` property attaches the AWS managed policy
        # AWSLambdaVPCAccessExecutionRole, and this stack's roles hold only statements it names.
        cfn = function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.vpc_config = lambda_.CfnFunction.VpcConfigProperty(subnet_ids=subnets, security_group_ids=security_groups)
        ec2_arn = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        interfaces = f"{ec2_arn}:network-interface/*"  # Lambda names its interfaces itself
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="DescribeNetwork", actions=list(ENI_DESCRIBE_ACTIONS), resources=["*"])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CreateInterfacesInTheConfiguredSubnets",
                actions=list(ENI_CREATE_ACTIONS),
                resources=[
                    interfaces,
                    *(f"{ec2_arn}:subnet/{s}" for s in subnets),
                    *(f"{ec2_arn}:security-group/{g}" for g in security_groups),
                ],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="ManageTheInterfaces", actions=list(ENI_MANAGE_ACTIONS), resources=[interfaces])
        )

    def _endpoints(self, vpc_id: str, subnets: list[str], security_groups: list[str], route_tables: list[str]) -> None:
        # HTTPS from the forwarder's security groups only.
        self.endpoint_security_group = ec2.CfnSecurityGroup(
            self,
            "EndpointSecurityGroup",
            group_description="freshvec: HTTPS from the forwarder to the VPC endpoints",
            vpc_id=vpc_id,
            security_group_ingress=[
                ec2.CfnSecurityGroup.IngressProperty(
                    ip_protocol="tcp",
                    from_port=HTTPS_PORT,
                    to_port=HTTPS_PORT,
                    source_security_group_id=group,
                    description="HTTPS from the freshvec forwarder",
                )
                for group in security_groups
            ],
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            self.endpoints[name] = ec2.CfnVPCEndpoint(
                self,
                f"{name}Endpoint",
                vpc_id=vpc_id,
                service_name=f"com.amazonaws.{Aws.REGION}.{service}",
                vpc_endpoint_type="Interface",
                subnet_ids=subnets,
                security_group_ids=[self.endpoint_security_group.attr_group_id],
                private_dns_enabled=True,
            )
        for name, service in GATEWAY_ENDPOINTS.items():
            self.endpoints[name] = ec2.CfnVPCEndpoint(
                self,
                f"{name}Endpoint",
                vpc_id=vpc_id,
                service_name=f"com.amazonaws.{Aws.REGION}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=route_tables,
            )
