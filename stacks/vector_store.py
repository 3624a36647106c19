"""The S3 Vectors bucket and one index per live generation the sink writes to, encrypted with the stack key (SSE-KMS).

The config's own generation keeps the logical id ``Index`` when it is named ``g1`` (the default, as stacks made
before generations had it), every other generation ``Index<Name>``: so promoting the next generation after a
migration (``freshvec migrate finish``) leaves its index in place and deletes only the retired one. An index is
only ever deleted when its generation leaves the config, never while it is live.
"""

from __future__ import annotations

from aws_cdk import Aws, Fn, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3vectors as s3vectors
from constructs import Construct

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.generations import live_generations

INDEX_DATA_TYPE = "float32"  # the only data type S3 Vectors supports
SSE_KMS = "aws:kms"
S3VECTORS_INDEXING_PRINCIPAL = "indexing.s3vectors.amazonaws.com"


class VectorStore(Construct):
    """Vector bucket + one index with the embedding model's dimension and the configured metric."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, key: kms.Key, removal: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        store = config.vector_store
        self.bucket = s3vectors.CfnVectorBucket(
            self,
            "Bucket",
            vector_bucket_name=store.bucket_name,
            encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(
                sse_type=SSE_KMS, kms_key_arn=key.key_arn
            ),
        )
        self.bucket.apply_removal_policy(removal)
        # Ref returns the ARN ("arn:...:bucket/<name>"); the name is its last path segment.
        self.bucket_name = store.bucket_name or Fn.select(1, Fn.split("/", self.bucket.attr_vector_bucket_arn))
        self.indexes: dict[str, s3vectors.CfnIndex] = {}
        for generation in live_generations(config):
            self.indexes[generation.name] = self._index(generation.config, generation.name, removal)
        self.index = self.indexes[config.generation]
        self.index_name = config.vector_index_name
        self.index_arn = self.index.attr_index_arn
        self.index_arns = [index.attr_index_arn for index in self.indexes.values()]
        self._allow_background_indexing(key)

    def _index(self, config: PipelineConfig, name: str, removal: RemovalPolicy) -> s3vectors.CfnIndex:
        logical_id = (
            "Index" if name == c.DEFAULT_GENERATION else "Index" + name.replace("-", " ").title().replace(" ", "")
        )
        index = s3vectors.CfnIndex(
            self,
            logical_id,
            vector_bucket_arn=self.bucket.attr_vector_bucket_arn,
            # Derived from the index's create-only settings: a change creates a new index instead of failing.
            index_name=config.vector_index_name,
            data_type=INDEX_DATA_TYPE,
            dimension=config.embedding.dimensions,
            distance_metric=config.vector_store.distance_metric,
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=list(config.non_filterable_keys)
            ),
        )
        # A vector bucket can only be deleted once its indexes are gone: delete the index first.
        index.add_resource_dependency(self.bucket, "delete the index before its vector bucket")
        index.apply_removal_policy(removal)
        return index

    def _allow_background_indexing(self, key: kms.Key) -> None:
        """S3 Vectors maintains indexes under its own service principal, which must be able to decrypt."""
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowS3VectorsIndexing",
                principals=[iam.ServicePrincipal(S3VECTORS_INDEXING_PRINCIPAL)],
                actions=["kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:s3vectors:{Aws.REGION}:{Aws.ACCOUNT_ID}:bucket/*"
                    },
                },
            )
        )
