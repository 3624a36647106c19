"""IAM statements for invoking the configured generations' Bedrock models, foundation models or inference profiles.

A foundation model is one ARN in this Region. A cross-Region inference profile (``us.``/``eu.``/``global.``)
needs the profile's ARN and the foundation model in every Region the profile may route to; the latter is granted
only through that profile (condition ``bedrock:InferenceProfileArn``), and a global profile's destination is
also named without a Region
(https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html,
https://docs.aws.amazon.com/bedrock/latest/userguide/global-cross-region-inference.html).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from freshvec import constants as c
from freshvec.config import EmbeddingConfig, PipelineConfig

INVOKE_ACTIONS = ("bedrock:InvokeModel",)


def generation_embeddings(config: PipelineConfig) -> list[EmbeddingConfig]:
    """The embedding of every generation the config holds: the active one and, during a migration, the next."""
    embeddings = [config.embedding]
    following = getattr(config, "next_generation", None)  # present once the config holds index generations
    if following is not None and following.embedding not in embeddings:
        embeddings.append(following.embedding)
    return [e for e in embeddings if e.provider not in c.LOCAL_ONLY_PROVIDERS]


def model_arn(model_id: str, region: str = Aws.REGION) -> str:
    return f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{model_id}"


def profile_arn(profile_id: str) -> str:
    return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/{profile_id}"


def invoke_statements(sid: str, embeddings: list[EmbeddingConfig]) -> list[iam.PolicyStatement]:
    """bedrock:InvokeModel on exactly the models the embeddings name (deduplicated, stable order)."""
    foundation: list[str] = []
    statements = []
    for number, model_id in enumerate(dict.fromkeys(e.model_id for e in embeddings)):
        base = c.foundation_model_id(model_id)
        if base == model_id:
            foundation.append(model_arn(model_id))
            continue
        profile = profile_arn(model_id)
        destinations = [model_arn(base, "*")]
        if model_id.startswith("global."):
            destinations.append(model_arn(base, ""))
        statements.append(
            iam.PolicyStatement(sid=f"{sid}Profile{number}", actions=list(INVOKE_ACTIONS), resources=[profile])
        )
        statements.append(
            iam.PolicyStatement(
                sid=f"{sid}ThroughProfile{number}",
                actions=list(INVOKE_ACTIONS),
                resources=destinations,
                conditions={"StringEquals": {"bedrock:InferenceProfileArn": profile}},
            )
        )
    if foundation:
        statements.insert(0, iam.PolicyStatement(sid=sid, actions=list(INVOKE_ACTIONS), resources=foundation))
    return statements


def grant_invoke(role: iam.IRole, sid: str, config: PipelineConfig) -> None:
    """Let ``role`` invoke exactly the models of the config's generations, and nothing else."""
    for statement in invoke_statements(sid, generation_embeddings(config)):
        role.add_to_principal_policy(statement)
