"""The monitoring page's first view on the real stack (issue 16: under 1 s after `make demo` and after
a 100k-prediction ingest, the default summaries refreshed when scores arrive, debounced).

    nice -n 5 .venv/bin/python bench/monitoring_view.py [--scenario demo|demo-early|ingest|all]

Each scenario starts gunicorn and a Celery worker (bench/_stack.py, no beat) on a database and a
Redis db of its own, recreated: sightline_bench_mon_demo, sightline_bench_mon_demo_early (both Redis
db 13) and sightline_bench_mon_ingest (Redis db 14). Each runs in a process of its own (Django reads
one database per process); `all` (the default) runs them one after the other.

demo    `manage.py migrate` then `manage.py demo` (the data step of `make demo`): it ingests the demo
        census in its own process and waits for the worker to explain it. The page is opened once
        the default summaries are fresh.
demo-early  The same, the page opened as soon as `manage.py demo` ends (when `make demo` starts
        serving), inside the debounce window if the command ended within it.
ingest  The demo bundle registered and promoted, then --predictions predictions posted through the
        bulk API by --clients threads (the demo's RHC scoring payloads resampled with new
        external_ids, as bench/load.py does). Then, once the worker has explained them, the worst
        case: one bulk of scores of a new hour (which moves the page's default window), and the page
        opened at once, inside the debounce window.

Measured in each: the time from the last score (the newest `received_at`) until every default
comparison (monitoring.services.default_comparisons) has a cached summary computed after it. That
is read from the cache in this process, not by asking the chart endpoints: an endpoint's 202 queues
a computation, which would measure the page's own request instead of the debounced refresh. Then the
first view as a signed-in admin's browser makes it: the page, then the JSON the page's scripts
(static/monitoring/dashboard.js and subgroups.js) request on load with the form's defaults, one
after the other; each time is the client's wall time on loopback. A 202 is asked again every
POLL_SECONDS, as the scripts do, until the data comes. The static files (a browser caches them) are
timed apart.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._monitoring import (  # noqa: E402
    Browser,
    Freshness,
    attribution_report,
    backlog,
    django_setup,
    page_key_check,
    view_open,
    view_report,
)
from bench._stack import ROOT, bench_env, demo_bundle, manage, stack  # noqa: E402

PASSWORD = "bench-monitoring-password-1"  # noqa: S105 - a throwaway admin in a throwaway database
SCENARIOS = {
    "demo": ("sightline_bench_mon_demo", 13),
    "demo-early": ("sightline_bench_mon_demo_early", 13),
    "ingest": ("sightline_bench_mon_ingest", 14),
}


# --- scenario 1: after `make demo` ----------------------------------------------------------------


def scenario_demo(args, *, early: bool = False) -> None:
    """`manage.py demo` against the stack; the page opened once the default summaries are fresh, or
    (early) as soon as the command ends, when `make demo` starts serving."""
    database, redis_db = SCENARIOS["demo-early" if early else "demo"]
    env = bench_env(
        database=database,
        redis_db=redis_db,
        store=ROOT / "var" / "bench_mon_demo_store",
        queue="sightline-bench-mon-demo",
    )
    env["DEMO_PASSWORD"] = PASSWORD
    when = "the page opened as soon as it ends" if early else "the page opened once the summaries are fresh"
    print(f"\n== after `make demo`, {when} ({database}, Redis db {redis_db}) ==", flush=True)
    manage(env, "migrate", "--noinput")
    demo_bundle(env)  # var/demo_bundle, which `manage.py demo` trains when missing
    django_setup(env)
    base = f"http://127.0.0.1:{args.port}"
    with stack(
        env,
        port=args.port,
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
        log_dir=ROOT / "var" / "bench_mon_demo_logs",
    ) as (web, _worker, _lone):
        outcome = {}

        def run_demo() -> None:
            started = time.monotonic()
            outcome["stdout"] = manage(env, "demo", "--url", base)
            outcome["seconds"], outcome["ended"] = time.monotonic() - started, time.time()

        print("running manage.py demo against the stack (its worker explains the census) ...", flush=True)
        demo = threading.Thread(target=run_demo, daemon=True)
        demo.start()
        freshness = Freshness()
        if early:
            while demo.is_alive():
                freshness.poll()
                time.sleep(args.interval)
            browser = Browser(base)
            browser.login("admin", PASSWORD)
            opened = time.time() - outcome["ended"]
            view = view_open(browser, web_pid=web.pid, poll=args.poll, timeout=args.timeout)
        ok = freshness.wait(done=lambda: not demo.is_alive(), timeout=args.timeout, interval=args.interval)
        demo.join()
        stored = next((line for line in outcome.get("stdout", "").splitlines() if "stored" in line), "?")
        seconds = outcome.get("seconds", float("nan"))
        print(
            f"   manage.py demo: {stored.strip().rstrip('.')}; it took {seconds:.0f} s "
            "(ingest, then waiting for the explanations)"
        )
        freshness.report(outcome.get("ended"), "manage.py demo ended (the moment `make demo` serves)")
        if early:
            print(
                f"   the page opened {opened:.1f} s after manage.py demo ended (the admin signed in first):"
            )
            view_report("as admin, as soon as manage.py demo ended", view)
        else:
            if not ok:
                print("   (timed out waiting; the first view below is what an admin would see then)")
            browser = Browser(base)
            browser.login("admin", PASSWORD)
            view = view_open(browser, web_pid=web.pid, poll=args.poll, timeout=args.timeout)
            view_report("as admin, after manage.py demo", view)
        page_key_check(freshness, view)
        freshness.poll()
        attribution_report(freshness)


# --- scenario 2: after a 100k-prediction ingest -----------------------------------------------------


def ingest(base: str, token: str, payloads: list[dict], *, total: int, clients: int, batch: int, tag: str):
    """Post `total` resampled payloads in bulks of `batch` from `clients` threads;
    (accepted, seconds, errors)."""
    counter, lock, errors, accepted = [0], threading.Lock(), [], [0]

    def client(number: int) -> None:
        rng = random.Random(number)
        while True:
            with lock:
                first = counter[0]
                if first >= total:
                    return
                counter[0] = min(total, first + batch)
            body = []
            for sequence in range(first, min(total, first + batch)):
                payload = dict(rng.choice(payloads))
                payload["external_id"] = f"{tag}/{sequence}"
                body.append(payload)
            request = urllib.request.Request(
                base + "/api/v1/predictions/bulk/",
                data=json.dumps(body).encode(),
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    results = json.loads(response.read())["results"]
            except (urllib.error.URLError, OSError) as exc:
                with lock:
                    errors.append(str(exc))
                continue
            good = sum(1 for item in results if item["status"] in (200, 201))
            with lock:
                accepted[0] += good
                errors.extend(str(item) for item in results if item["status"] not in (200, 201))

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted[0], time.monotonic() - started, errors


def set_up_ingest_database(env: dict) -> str:
    manage(env, "migrate", "--noinput")
    manage(env, "register_model", str(demo_bundle(env)), "--promote")
    token = manage(env, "create_service_token", "bench-monitoring").strip().split()[-1]
    manage(
        {**env, "BENCH_PASSWORD": PASSWORD},
        "create_user",
        "bench-admin",
        "--role",
        "admin",
        "--password-from-env",
        "BENCH_PASSWORD",
    )
    return token


def new_hour_payloads() -> list[dict]:
    """Scores of the hour after the page's default window (which ends on the hour after the newest
    score): posting them moves the window, so its summary is not in the cache yet."""
    from demo import rhc as demo_rhc
    from models_registry.selectors import production_versions
    from monitoring.services import default_window

    _, end = default_window(production_versions().first().pk)
    for hours in range(1, 25):
        run_at = end + timedelta(hours=hours)
        payloads = demo_rhc.scoring_payloads(model_name="icu-mortality-30d", run_at=run_at)
        fresh = [p for p in payloads if datetime.fromisoformat(p["scored_at"].replace("Z", "+00:00")) >= end]
        if fresh:
            return fresh
    raise SystemExit("no demo payload falls in the hours after the default window")


def worst_case(args, base: str, token: str, browser: Browser, web_pid: int) -> None:
    """An admin opens the page right after the first scores of a new hour, inside the debounce window."""
    payloads = new_hour_payloads()
    accepted, seconds, errors = ingest(
        base, token, payloads, total=len(payloads), clients=1, batch=len(payloads), tag="bench-mon/new-hour"
    )
    posted = time.monotonic()
    print(
        f"\n   worst case: {accepted} scores of a new hour posted in one bulk ({seconds * 1000:.0f} ms, "
        f"{len(errors)} errors), the page opened at once (inside the debounce window)"
    )
    view = view_open(browser, web_pid=web_pid, poll=args.poll, timeout=args.timeout)
    view_report("opened during the debounce window", view)
    if view["ready"]:
        last = max(view["ready"].values())
        print(
            f"   every figure's data was on the page {last:.1f} s after it opened "
            f"({time.monotonic() - posted:.1f} s after the bulk was answered, counting the static files)"
        )


def scenario_ingest(args) -> None:
    database, redis_db = SCENARIOS["ingest"]
    env = bench_env(
        database=database,
        redis_db=redis_db,
        store=ROOT / "var" / "bench_mon_ingest_store",
        queue="sightline-bench-mon-ingest",
    )
    print(
        f"\n== after a {args.predictions:,}-prediction ingest ({database}, Redis db {redis_db}) ==",
        flush=True,
    )
    token = set_up_ingest_database(env)
    django_setup(env)
    from demo import rhc as demo_rhc

    payloads = list(demo_rhc.scoring_payloads(model_name="icu-mortality-30d"))
    base = f"http://127.0.0.1:{args.port}"
    with stack(
        env,
        port=args.port,
        web_workers=args.web_workers,
        worker_concurrency=args.worker_concurrency,
        log_dir=ROOT / "var" / "bench_mon_ingest_logs",
    ) as (web, _worker, _lone):
        browser = Browser(base)
        browser.login("bench-admin", PASSWORD)
        print(
            f"posting {args.predictions:,} predictions, {args.clients} threads, {args.batch} a bulk ...",
            flush=True,
        )
        accepted, seconds, errors = ingest(
            base,
            token,
            payloads,
            total=args.predictions,
            clients=args.clients,
            batch=args.batch,
            tag="bench-mon",
        )
        print(
            f"   {accepted:,} accepted in {seconds:.0f} s ({accepted / seconds:,.0f}/s), {len(errors)} errors"
            + (f", e.g. {errors[0][:200]}" if errors else "")
        )
        freshness = Freshness()
        ok = freshness.wait(done=lambda: True, timeout=args.timeout, interval=args.interval)
        freshness.first_poll_report()
        freshness.report()
        if not ok:
            print("   (timed out waiting; the first view below is what an admin would see then)")
        print(f"   explanations pending or running at the first view: {backlog():,} (the worker is busy)")
        view = view_open(browser, web_pid=web.pid, poll=args.poll, timeout=args.timeout)
        view_report("as admin, after the ingest", view)
        page_key_check(freshness, view)
        deadline = time.monotonic() + args.timeout
        while backlog() and time.monotonic() < deadline:
            time.sleep(5)
        print(f"   explanations left after waiting for the worker: {backlog():,}")
        attribution_report(freshness, wait=args.timeout, interval=args.interval)
        worst_case(args, base, token, browser, web.pid)


# --- main -------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=250, help="predictions per bulk request")
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between reads of the cache")
    parser.add_argument("--poll", type=float, default=None, help="the page's 202 poll (default: the view's)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait at each step")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.scenario == "all":
        for name in SCENARIOS:
            command = [sys.executable, __file__, *sys.argv[1:], "--scenario", name]
            if subprocess.run(command, cwd=ROOT, check=False).returncode:
                sys.exit(1)
        return
    print("Wall-clock figures on loopback; the machine (2 cores) is shared with other work.", flush=True)
    if args.scenario == "ingest":
        scenario_ingest(args)
    else:
        scenario_demo(args, early=args.scenario == "demo-early")


if __name__ == "__main__":
    main()
