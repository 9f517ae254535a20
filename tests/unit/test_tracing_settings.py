"""Tracing's settings from the standard OTEL_* variables, as the OpenTelemetry
specification defines them: off without an endpoint; the traces endpoint as given, or the
base endpoint with `/v1/traces` for http/protobuf; the signal's protocol over the general
one; OTEL_SERVICE_NAME over a service.name resource attribute over our default."""

from __future__ import annotations

import pytest

from modelzoo_server.settings import parse_settings
from modelzoo_server.tracing import GRPC, HTTP_PROTOBUF, TracingSettings, settings_from_env

pytestmark = pytest.mark.unit
BASE = "http://collector:4318"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_off_without_an_endpoint_or_when_disabled(env: dict[str, str]) -> None:
    assert settings_from_env(env) is None
    assert parse_settings(["--zoo", "mtcnn"], env=env).tracing is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE + "/"},
            TracingSettings(BASE + "/v1/traces", HTTP_PROTOBUF, "modelzoo-server"),
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": BASE,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": BASE + "/t",
            },
            TracingSettings(BASE + "/t", HTTP_PROTOBUF, "modelzoo-server"),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            TracingSettings("http://c:4317", GRPC, "modelzoo-server"),
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_RESOURCE_ATTRIBUTES": "team=ml, service.name=zoo%20faces",
            },
            TracingSettings("http://c:4317", GRPC, "zoo faces"),
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": BASE,
                "OTEL_SERVICE_NAME": "faces",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=other",
            },
            TracingSettings(BASE + "/v1/traces", HTTP_PROTOBUF, "faces"),
        ),
    ],
)
def test_endpoint_protocol_and_service_name(env: dict[str, str], expected) -> None:
    assert settings_from_env(env) == expected
    assert parse_settings(["--zoo", "mtcnn"], env=env).tracing == expected


def test_a_protocol_the_sdk_cannot_send_is_refused(capsys) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with pytest.raises(SystemExit):
        parse_settings(["--zoo", "mtcnn"], env=env)
    assert "OTLP protocol 'http/json' is not supported" in capsys.readouterr().err
