"""Load test: N concurrent clients post predictions and read pages against the real stack.

    python bench/load.py [--clients 32] [--seconds 60] [--batch 50]

Starts gunicorn, a Celery worker and a worker of its own for lone predictions (as
docker/compose.yaml's worker-now; --lone-worker 0 leaves it out) on loopback against a database of its own
(`sightline_bench_load`, recreated) and Redis db 9 (flushed), registers the demo bundle, then for
--seconds runs --clients threads, each looping: post a bulk of --batch predictions (most
requests), post a single prediction, or read the worklist as a signed-in clinician. The
predictions are the demo's RHC scoring run resampled with new ids (synthetic load, real values).
A probe posts one single prediction a second beside them and reports how long after its POST's
answer each was explained (ready after POST during the load). Bounded in time and count; loopback
only. Prints throughput, latency percentiles and errors, then waits for the worker and checks that
every accepted prediction is stored and explained.
"""

import argparse
import http.cookiejar
import json
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (  # noqa: E402
    ROOT,
    bench_env,
    cpu_seconds,
    demo_bundle,
    manage,
    peak_rss_mb,
    postgres_pid,
    stack,
)

PASSWORD = "bench-load-password-1"  # noqa: S105 - a throwaway user in a throwaway database


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Client(threading.Thread):
    def __init__(self, number: int, base: str, token: str, payloads: list[dict], args, deadline: float):
        super().__init__(daemon=True)
        self.number, self.base, self.token, self.payloads = number, base, token, payloads
        self.args, self.deadline = args, deadline
        self.latency: dict[str, list[float]] = {"bulk": [], "single": [], "page": []}
        self.statuses: Counter = Counter()
        self.accepted: set[str] = set()
        self.sequence = 0
        jar = http.cookiejar.CookieJar()
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.jar = jar

    def _payload(self) -> dict:
        payload = dict(random.choice(self.payloads))
        self.sequence += 1
        payload["external_id"] = f"load/{self.number}/{self.sequence}"
        return payload

    def _post(self, path: str, body: object) -> tuple[int, object]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def login(self) -> None:
        page = self.browser.open(self.base + "/login/").read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": "bench-clinician", "password": PASSWORD, "csrfmiddlewaretoken": csrf}
        )
        self.browser.open(
            urllib.request.Request(
                self.base + "/login/", data=form.encode(), headers={"Referer": self.base + "/login/"}
            )
        )

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            roll = random.random()
            started = time.perf_counter()
            if roll < 0.1:
                try:
                    status = self.browser.open(self.base + "/", timeout=60).status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                self.latency["page"].append(time.perf_counter() - started)
                self.statuses[f"page {status}"] += 1
            elif roll < 0.3:
                payload = self._payload()
                status, _ = self._post("/api/v1/predictions/", payload)
                self.latency["single"].append(time.perf_counter() - started)
                self.statuses[f"single {status}"] += 1
                if status in (200, 201):
                    self.accepted.add(payload["external_id"])
            else:
                batch = [self._payload() for _ in range(self.args.batch)]
                status, body = self._post("/api/v1/predictions/bulk/", batch)
                self.latency["bulk"].append(time.perf_counter() - started)
                self.statuses[f"bulk {status}"] += 1
                if status == 200:
                    for item, payload in zip(body["results"], batch, strict=True):
                        self.statuses[f"bulk item {item['status']}"] += 1
                        if item["status"] in (200, 201):
                            self.accepted.add(payload["external_id"])


class Probe(Client):
    """Posts one single prediction every --probe-interval seconds while the load runs, noting when
    the answer came; the explanations' finish times, read afterwards, give ready-after-POST during
    the load (no polling adds to the load)."""

    def __init__(self, base: str, token: str, payloads: list[dict], args, deadline: float):
        super().__init__(-1, base, token, payloads, args, deadline)
        self.answered: dict[int, float] = {}  # prediction id -> wall time the POST was answered

    def _payload(self) -> dict:
        payload = super()._payload()
        payload["external_id"] = f"load/probe/{self.sequence}"
        return payload

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            payload = self._payload()
            status, body = self._post("/api/v1/predictions/", payload)
            self.statuses[f"probe {status}"] += 1
            if status in (200, 201):
                self.answered[body["id"]] = time.time()
                self.accepted.add(payload["external_id"])
            time.sleep(self.args.probe_interval)


def report_probes(probe: Probe) -> None:
    """Ready after POST during the load: the explanation's finish time minus the POST's answer."""
    from explanations.models import Explanation

    finished = dict(
        Explanation.objects.filter(prediction_id__in=list(probe.answered)).values_list(
            "prediction_id", "finished_at"
        )
    )
    waits = [
        (finished[pk].timestamp() - answered) * 1000
        for pk, answered in probe.answered.items()
        if finished.get(pk) is not None
    ]
    print(
        f"ready after POST during the load ({len(waits)} probe posts, "
        f"one every {probe.args.probe_interval} s): "
        f"p50 {percentile(waits, 50):.0f} ms, p95 {percentile(waits, 95):.0f} ms, "
        f"max {max(waits, default=float('nan')):.0f} ms"
    )


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def cpu_snapshot(web, worker, lone) -> dict[str, float]:
    busy, total = machine_busy_seconds()
    postmaster = postgres_pid()
    return {
        "web": cpu_seconds(web.pid),
        "worker": cpu_seconds(worker.pid),
        "lone worker": cpu_seconds(lone.pid) if lone else 0.0,
        "postgres": cpu_seconds(postmaster) if postmaster else float("nan"),
        "clients": time.process_time(),
        "machine": busy,
        "wall": total,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=50, help="predictions per bulk request")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="CPU niceness of the explanation worker (0 = same as web)"
    )
    parser.add_argument(
        "--lone-worker",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: a one-process worker reading only the lone-prediction queue, at the web's priority",
    )
    parser.add_argument("--explain-timeout", type=int, default=1800, help="seconds to wait for explanations")
    parser.add_argument(
        "--probe-interval", type=float, default=1.0, help="seconds between the ready-after-POST probe's posts"
    )
    return parser.parse_args()


def set_up_database(env: dict) -> str:
    """Migrate, register and promote the demo bundle, create the clinician; return the service token."""
    print("setting up: migrate, register the demo bundle, token, clinician ...", flush=True)
    manage(env, "migrate", "--noinput")
    bundle = demo_bundle(env)
    manage(env, "register_model", str(bundle), "--promote")
    token = manage(env, "create_service_token", "bench-load").strip().split()[-1]
    env_user = {**env, "BENCH_PASSWORD": PASSWORD}
    manage(
        env_user,
        "create_user",
        "bench-clinician",
        "--role",
        "clinician",
        "--units",
        "MICU,CCU,RESP-ICU,ONC-ICU,NEURO-ICU",
        "--password-from-env",
        "BENCH_PASSWORD",
    )
    return token


def load_payloads(env: dict) -> list[dict]:
    """Point this process's Django at the bench database; the demo's RHC scoring payloads."""
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "MODEL_STORE", "CELERY_QUEUE")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")
    import django

    django.setup()
    from demo import rhc as demo_rhc

    return list(demo_rhc.scoring_payloads(model_name="icu-mortality-30d"))


def signed_in_clients(args, base: str, token: str, payloads: list[dict]) -> list[Client]:
    # Each client signs in before the clock starts: 32 password checks (PBKDF2, about 0.5 s of
    # CPU each by design) in the first second are not what a minute of ingest looks like.
    clients = [Client(i, base, token, payloads, args, deadline=0.0) for i in range(args.clients)]
    for client in clients:
        client.login()
    return [*clients, Probe(base, token, payloads, args, deadline=0.0)]


def run_clients(clients: list[Client], args, base: str, web, worker, lone) -> tuple[float, float, dict, dict]:
    """Run the clients for --seconds; (start, elapsed, CPU snapshot before, CPU snapshot after)."""
    print(f"running {args.clients} clients for {args.seconds} s against {base} ...", flush=True)
    started = time.monotonic()
    cpu_before = cpu_snapshot(web, worker, lone)
    for client in clients:
        client.deadline = started + args.seconds
        client.start()
    for client in clients:
        client.join()
    elapsed = time.monotonic() - started
    cpu_after = cpu_snapshot(web, worker, lone)
    return started, elapsed, cpu_before, cpu_after


def report_requests(clients: list[Client], args, elapsed: float) -> tuple[set[str], dict[str, int]]:
    """Print throughput, latency percentiles and errors; (accepted ids, error counts)."""
    accepted = set().union(*(c.accepted for c in clients))
    statuses = sum((c.statuses for c in clients), Counter())
    print(f"\n== load: {args.clients} clients, {elapsed:.1f} s")
    print(f"predictions accepted: {len(accepted):,} ({len(accepted) / elapsed:,.0f}/s)")
    for kind in ("bulk", "single", "page"):
        values = [v * 1000 for c in clients for v in c.latency[kind]]
        if values:
            print(
                f"{kind:<7} requests {len(values):>6,}  p50 {percentile(values, 50):7.1f} ms  "
                f"p95 {percentile(values, 95):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  "
                f"mean {statistics.fmean(values):7.1f} ms"
            )
    errors = {k: v for k, v in statuses.items() if not re.search(r" (200|201)$", k)}
    print(f"errors: {sum(errors.values())} {dict(errors) if errors else ''}")
    return accepted, errors


def report_cpu(cpu_before: dict, cpu_after: dict, *, elapsed: float, accepted: int, worker_nice: int) -> None:
    used = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
    cores = used["wall"] / elapsed
    per = 1000 / max(1, accepted)
    others = used["machine"] - sum(used[k] for k in ("web", "worker", "lone worker", "postgres", "clients"))
    print(
        f"CPU during the load ({cores:.1f} cores, {used['machine'] / used['wall']:.0%} busy): "
        f"web {used['web']:.0f} s, PostgreSQL {used['postgres']:.0f} s (the whole server), "
        f"explanation worker {used['worker']:.0f} s (nice {worker_nice}), "
        f"lone-prediction worker {used['lone worker']:.0f} s, "
        f"load clients {used['clients']:.0f} s, anything else {others:.0f} s"
    )
    print(
        f"CPU per accepted prediction: web {used['web'] * per:.2f} ms, "
        f"PostgreSQL {used['postgres'] * per:.2f} ms"
    )


def report_explained(
    accepted: set[str], errors: dict, *, started: float, explain_timeout: int, web, worker, lone
) -> bool:
    """Wait for the worker, then print what was stored and explained; True when nothing was lost."""
    from explanations.models import Explanation
    from patients.models import Prediction

    print("waiting for the worker to explain every accepted prediction ...", flush=True)
    deadline = time.monotonic() + explain_timeout
    explanations = Explanation.objects.filter(prediction__external_id__startswith="load/")
    while time.monotonic() < deadline:
        left = explanations.filter(status__in=["pending", "running"]).count()
        if left == 0:
            break
        time.sleep(2)
    drained = time.monotonic() - started
    stored = set(
        Prediction.objects.filter(external_id__startswith="load/").values_list("external_id", flat=True)
    )
    by_status = Counter(explanations.values_list("status", flat=True))
    lost = accepted - stored
    print(f"stored: {len(stored):,}; lost (accepted, not stored): {len(lost)}")
    print(f"explanations: {dict(by_status)}; all explained {drained:.0f} s after the start")
    print(
        f"peak RSS: web {peak_rss_mb(web):.0f} MB (largest process), worker {peak_rss_mb(worker):.0f} MB"
        + (f", lone-prediction worker {peak_rss_mb(lone):.0f} MB" if lone else "")
    )
    ok = not lost and not errors and set(by_status) <= {"ready"}
    print("RESULT:", "zero errors, zero lost, all explained" if ok else "FAILED")
    return ok


def main() -> None:
    args = parse_args()
    store = ROOT / "var" / "bench_load_store"
    env = bench_env(database="sightline_bench_load", redis_db=9, store=store, queue="sightline-bench-load")
    token = set_up_database(env)
    payloads = load_payloads(env)
    base = f"http://127.0.0.1:{args.port}"
    with stack(
        env,
        port=args.port,
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
        worker_nice=args.worker_nice,
        log_dir=ROOT / "var" / "bench_load_logs",
        lone_worker=bool(args.lone_worker),
    ) as (web, worker, lone):
        clients = signed_in_clients(args, base, token, payloads)
        started, elapsed, cpu_before, cpu_after = run_clients(clients, args, base, web, worker, lone)
        accepted, errors = report_requests(clients, args, elapsed)
        report_cpu(
            cpu_before, cpu_after, elapsed=elapsed, accepted=len(accepted), worker_nice=args.worker_nice
        )
        ok = report_explained(
            accepted,
            errors,
            started=started,
            explain_timeout=args.explain_timeout,
            web=web,
            worker=worker,
            lone=lone,
        )
        report_probes(clients[-1])
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
