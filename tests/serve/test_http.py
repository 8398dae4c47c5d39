"""What every request gets: one error shape, request ids, access log, metrics, loopback guards."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from atrous.serve import ServeConfig
from atrous.serve.app import ReceptiveFieldRequest, _field_answer
from atrous.serve.service import ReceptiveFieldView
from tests.serve.conftest import huge_png, png, random_image
from tests.serve.test_admission import metric

# -- one error shape ------------------------------------------------------------------------

ERRORS = {
    "validation (query)": ("get", "/v1/receptive-field?x=-1&y=0&width=4&height=4", 422),
    "validation (body)": ("post", "/v1/receptive-field", 422),
    "unknown format": ("post", "/v1/segment?format=gif", 422),
    "unknown path": ("get", "/nowhere", 404),
    "wrong method": ("delete", "/v1/segment", 405),
    "bad upload": ("post", "/v1/segment", 415),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_every_error_has_one_shape(client: TestClient, name: str) -> None:
    method, path, status = ERRORS[name]
    kwargs = {"content": b"not an image"} if method == "post" else {}
    if path == "/v1/receptive-field":
        kwargs = {"json": {"x": "left"}}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}, body
    assert isinstance(body["detail"], str) and len(body["detail"]) > 5
    assert body["request_id"] == response.headers["x-request-id"]


def test_validation_errors_name_the_field(client: TestClient) -> None:
    body = client.get("/v1/receptive-field?x=-1&y=0&width=4&height=4").json()
    assert body["error"] == "invalid_request"
    assert body["detail"].startswith("query.x:")


def test_giant_image_is_described_by_its_size_not_by_pillow(client: TestClient) -> None:
    # The header is all the server reads of it: a few rows of data are enough.
    response = client.post("/v1/segment", content=huge_png(60000, rows=4))
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "60000x60000" in detail and "1,000,000 pixels" in detail
    assert "decompression bomb" not in detail.lower() and "DOS" not in detail


def test_max_paths_is_a_string_and_says_when_it_is_approximate() -> None:
    query = ReceptiveFieldRequest(x=0, y=0, width=2, height=2)
    model = type("Model", (), {"name": "m", "erf_samples": 2})()
    for peak, exact in ((12345.0, True), (float(2**60 + 2**40), False)):
        coverage = np.array([[peak, 1.0], [0.0, 1.0]])
        view = ReceptiveFieldView(
            (2, 2), (0, 0), 1.0, coverage, (0, 2, 0, 2), 0.25, coverage / peak, 1.0
        )
        response = _field_answer(model, view, query, "json", ServeConfig(model="m"))
        body = json.loads(response.body)
        assert body["coverage"]["max_paths"] == str(int(peak))
        assert body["coverage"]["max_paths_exact"] is exact
        assert f'"max_paths":"{int(peak)}"' in response.body.decode()


# -- /docs offline ------------------------------------------------------------------------


def test_docs_need_no_internet(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/v1/segment" in docs.text and "/v1/receptive-field" in docs.text
    for page in (docs.text, client.get("/").text):
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "remote asset"
    assert client.get("/redoc").status_code == 404


# -- request ids, access log, metrics -----------------------------------------------------


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/healthz").headers["x-request-id"] != made
    # A header that could forge log lines is replaced, not echoed.
    forged = client.get("/healthz", headers={"X-Request-ID": 'x" ,"status": 200'})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])


def test_access_log_lines_are_json_with_latency_and_reason(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="atrous.serve.access"):
        client.post("/v1/segment", content=b"plain text", headers={"X-Request-ID": "r1"})
        client.get("/healthz", headers={"X-Request-ID": "r2"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "atrous.serve.access"]
    failed, ok = (next(line for line in lines if line["request_id"] == i) for i in ("r1", "r2"))
    assert failed["method"] == "POST" and failed["path"] == "/v1/segment"
    assert failed["status"] == 415 and failed["error"] == "not_an_image"
    assert "not an image" in failed["reason"]
    assert failed["latency_ms"] >= 0
    assert ok["status"] == 200 and "error" not in ok


def test_metrics_in_prometheus_text_format(client: TestClient) -> None:
    client.post("/v1/segment?format=json", content=png(random_image(16, 16)))
    client.post("/v1/segment", content=b"")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for line in text.splitlines():  # every line is a comment or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(
            r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [-+0-9.eInf]+', line
        ), line
    ok = metric(
        text, "atrous_http_requests_total", method="POST", route="/v1/segment", status="200"
    )
    assert ok >= 1
    assert (
        metric(text, "atrous_http_requests_total", method="POST", route="/v1/segment", status="400")
        >= 1
    )
    count = metric(text, "atrous_http_request_duration_seconds_count", route="/v1/segment")
    inf = metric(
        text, "atrous_http_request_duration_seconds_bucket", route="/v1/segment", le="+Inf"
    )
    assert count == inf >= 2
    buckets = [
        float(v)
        for v in re.findall(
            r'atrous_http_request_duration_seconds_bucket\{le="[^"]+",route="/v1/segment"\} (\S+)',
            text,
        )
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert "atrous_queue_depth 0" in text and "atrous_inferences_running 0" in text
    assert "# TYPE atrous_rejections_total counter" in text


# -- loopback guards ------------------------------------------------------------------------


def test_foreign_host_names_are_refused(client: TestClient) -> None:
    refused = client.get("/v1/models", headers={"Host": "attacker.example:8000"})
    assert refused.status_code == 421
    assert refused.json()["error"] == "host_not_allowed"
    assert "attacker.example" in refused.json()["detail"]
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host


def test_host_check_follows_the_configuration() -> None:
    assert ServeConfig(model="m").host_names() == {"127.0.0.1", "localhost", "::1"}
    assert ServeConfig(model="m", host="0.0.0.0").host_names() is None
    assert (
        "seg.lan" in ServeConfig(model="m", host="0.0.0.0", allowed_hosts=("seg.lan",)).host_names()
    )
    assert "10.0.0.5" in ServeConfig(model="m", host="10.0.0.5").host_names()


def test_cross_origin_posts_are_refused(client: TestClient) -> None:
    body = png(random_image(8, 8))
    evil = client.post("/v1/segment", content=body, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"] == "cross_origin"
    null = client.post("/v1/segment", content=body, headers={"Origin": "null"})
    assert null.status_code == 403
    same = client.post("/v1/segment", content=body, headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 200  # the page served by this server (TestClient's Host)
    assert client.post("/v1/segment", content=body).status_code == 200  # no Origin: curl
    # Reading is not guarded by Origin (the browser keeps the answer from the other page).
    assert client.get("/v1/models", headers={"Origin": "http://evil.example"}).status_code == 200
    text = client.get("/metrics").text
    assert metric(text, "atrous_rejections_total", reason="cross_origin") >= 2


def test_allowed_origins_must_be_origins(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        ServeConfig(model="m", allowed_origins=("localhost:3000",))
