"""The ``PointerStore`` port over an SSM parameter (Parameter Store, standard tier, a String).

One parameter holds the index pointer document (``freshvec.generations.IndexPointer``). ``PutParameter`` with
``Overwrite`` replaces the whole value in one call, so a reader sees either the old or the new document, never
a mix (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html). Standard
parameters hold up to 4 KB, far more than a pointer needs (a few hundred bytes per generation).
"""

from __future__ import annotations

from typing import Any

from freshvec.errors import MisconfigurationError, classify, error_code
from freshvec.retry import RetryPolicy

SSM_STANDARD_MAX_BYTES = 4096  # standard-tier parameter value limit (Parameter Store quotas)


class SsmPointerStore:
    def __init__(self, client: Any, parameter_name: str, retry: RetryPolicy | None = None) -> None:
        self._client = client
        self.name = parameter_name
        self._retry = retry or RetryPolicy()

    def read(self) -> str | None:
        try:
            answer = self._retry.call(lambda: self._client.get_parameter(Name=self.name), "SSM GetParameter")
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise self._explained("GetParameter", exc) from exc
        return str(answer["Parameter"]["Value"])

    def write(self, document: str) -> None:
        if len(document.encode("utf-8")) > SSM_STANDARD_MAX_BYTES:
            raise MisconfigurationError(f"the index pointer is over {SSM_STANDARD_MAX_BYTES} bytes")
        try:
            self._retry.call(
                lambda: self._client.put_parameter(Name=self.name, Value=document, Type="String", Overwrite=True),
                "SSM PutParameter",
            )
        except Exception as exc:
            raise self._explained("PutParameter", exc) from exc

    def _explained(self, operation: str, exc: Exception) -> Exception:
        if classify(exc) is MisconfigurationError:
            return MisconfigurationError(f"SSM {operation} on parameter {self.name} failed: {exc}")
        return exc
