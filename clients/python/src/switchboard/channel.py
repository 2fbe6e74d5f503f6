"""The channel to a server: TLS (a CA to trust, a client certificate for mutual TLS), the bearer
token and caller id sent as metadata on every call, and the retries of `retry.py`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import grpc

from switchboard.retry import RetryInterceptor, RetryPolicy, replace_call_details

AUTHORIZATION_METADATA = "authorization"
CALLER_ID_METADATA = "x-caller-id"

PathLike = str | os.PathLike


def open_channel(
    address: str,
    *,
    token: str = "",
    caller_id: str = "",
    tls: bool = False,
    tls_ca: PathLike | None = None,
    tls_cert: PathLike | None = None,
    tls_key: PathLike | None = None,
    tls_server_name: str = "",
    retry: RetryPolicy | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> grpc.Channel:
    """A channel to `address` (see `switchboard.connect` for the arguments)."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together (the client certificate and its private key)")
    all_options = list(options)
    if tls or tls_ca or tls_cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca, "tls_ca") if tls_ca else None,
            private_key=_read(tls_key, "tls_key") if tls_key else None,
            certificate_chain=_read(tls_cert, "tls_cert") if tls_cert else None,
        )
        if tls_server_name:
            all_options.append(("grpc.ssl_target_name_override", tls_server_name))
        channel = grpc.secure_channel(address, credentials, options=all_options)
    else:
        channel = grpc.insecure_channel(address, options=all_options)
    metadata = []
    token = token.strip()
    if token:
        metadata.append((AUTHORIZATION_METADATA, f"Bearer {token}"))
    if caller_id:
        metadata.append((CALLER_ID_METADATA, caller_id))
    interceptors: list[object] = []
    if metadata:
        interceptors.append(MetadataInterceptor(metadata))
    policy = RetryPolicy() if retry is None else retry
    if policy.max_retries > 0:
        interceptors.append(RetryInterceptor(policy))  # inside: each retry carries the metadata too
    return grpc.intercept_channel(channel, *interceptors) if interceptors else channel


def _read(path: PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise OSError(f"{what}: cannot read {os.fspath(path)}: {error.strerror}") from error


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata (the bearer token, the caller id) to every call."""

    def __init__(self, metadata: Sequence[tuple[str, str]]):
        self.metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return replace_call_details(details, metadata=(*(details.metadata or ()), *self.metadata))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)
