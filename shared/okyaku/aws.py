"""boto3 clients, created on first use: importing boto3 costs ≈ 0.3 s of cold start, and only the
paths that talk to AWS need it."""

from __future__ import annotations

from typing import Any


def boto3_client(service: str, *, endpoint_url: str = "", region: str = "us-east-1", config: Any = None) -> Any:
    """A client for ``service``; ``endpoint_url`` (LocalStack, moto) overrides AWS's when set;
    ``config``: a ``botocore.config.Config``."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url or None, region_name=region, config=config)  # type: ignore[call-overload]
