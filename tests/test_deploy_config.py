"""The compose file puts a buffering reverse proxy in front of gunicorn (issue 15, finding 7):
gunicorn publishes no port, nginx does, with header and body timeouts and request buffering, and
Sightline believes X-Forwarded-For only from the compose network the proxy is on."""

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def _nginx() -> dict[str, str]:
    text = (DOCKER / "nginx.conf").read_text()
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return dict(re.findall(r"^\s*([a-z_]+)\s+([^;{]+);", text, flags=re.MULTILINE))


def _seconds(value: str) -> int:
    return int(value.rstrip("s"))


def test_gunicorn_is_reached_only_through_the_proxy():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert "ports" not in services["web"]
    assert services["proxy"]["ports"] == ["8000:8080"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert services["web"]["environment"]["TRUSTED_PROXIES"] == subnet
    assert f'"--forwarded-allow-ips", "{subnet}"' in (DOCKER / "Dockerfile").read_text()


def test_the_proxy_times_out_slow_clients_and_buffers_whole_requests():
    conf = _nginx()
    assert _seconds(conf["client_header_timeout"]) <= 10
    assert _seconds(conf["client_body_timeout"]) <= 30
    assert _seconds(conf["send_timeout"]) <= 30
    assert conf["proxy_request_buffering"] == "on" and conf["proxy_buffering"] == "on"
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in (DOCKER / "nginx.conf").read_text()


def test_a_worker_of_its_own_reads_only_the_lone_prediction_queue():
    """worker-now takes lone predictions only, so one never waits behind a batch; the main worker
    reads the settings' queues, the lone one first (issue 16)."""
    from django.conf import settings

    from sightline.queues import now_queue

    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    lone = services["worker-now"]["command"]
    assert lone[lone.index("--queues") + 1] == now_queue("sightline")
    assert lone[lone.index("--concurrency") + 1] == "1"
    assert "CELERY_QUEUE" not in services["worker-now"]["environment"]  # the default queue, "sightline"
    assert "--queues" not in services["worker"]["command"] and "-Q" not in services["worker"]["command"]
    assert [q.name for q in settings.CELERY_TASK_QUEUES] == [
        now_queue(settings.CELERY_TASK_DEFAULT_QUEUE),
        settings.CELERY_TASK_DEFAULT_QUEUE,
    ]
