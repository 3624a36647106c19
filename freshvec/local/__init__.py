"""Local mode: the whole pipeline on one machine with no AWS account."""
