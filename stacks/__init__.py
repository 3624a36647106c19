"""The freshvec CDK app: one construct per concern, composed by ``pipeline_stack.PipelineStack``."""
