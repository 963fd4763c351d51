"""The parts of bench/monitoring_view.py (whose docstring says what is measured): a browser that
asks for what the monitoring page's scripts ask for, and the cached default summaries read without
queueing anything."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

from bench._stack import cpu_seconds

DEPENDENTS = ("feature", "prediction", "performance", "burden")  # asked once the summary has come
TARGET_SECONDS = 1.0


# --- a browser ------------------------------------------------------------------------------------


class Browser:
    """A cookie-keeping client that asks for what the page's scripts ask for, one at a time."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str, query: str = "") -> tuple[int, float, bytes]:
        """(status, seconds, body) of one GET."""
        url = self.base + path + (f"?{query}" if query else "")
        started = time.perf_counter()
        try:
            with self.opener.open(url, timeout=300) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        return status, time.perf_counter() - started, body

    def login(self, username: str, password: str) -> None:
        page = self.get("/login/")[2].decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        request = urllib.request.Request(
            self.base + "/login/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Referer": self.base + "/login/"},
        )
        self.opener.open(request, timeout=60).read()
        if self.get("/monitoring/")[0] != 200:
            raise SystemExit(f"{username} could not open the monitoring page after signing in")


def page_queries(html: str) -> tuple[dict, dict]:
    """The summary and subgroup queries the page's scripts build from the form's defaults
    (dashboard.js and subgroups.js params(): the form's UTC times plus ':00Z')."""
    version = re.search(r'<option value="(\d+)" selected>', html).group(1)
    start = re.search(r'name="from" value="([^"]+)"', html).group(1) + ":00Z"
    end = re.search(r'name="to" value="([^"]+)"', html).group(1) + ":00Z"
    summary = {"version": version, "from": start, "to": end, "reference": "reference", "slice": "overall"}
    subgroups = {"version": version, "from": start, "to": end, "slice": "overall"}
    return summary, subgroups


def view_open(browser: Browser, *, web_pid: int, poll: float | None, timeout: float) -> dict:
    """Open the page as its scripts do; the first round's answers, and when each figure's data came.
    A 202 is asked again every `poll` seconds (default: the page's own, monitoring.views)."""
    from monitoring.views import POLL_SECONDS

    poll = POLL_SECONDS if poll is None else poll
    opened = time.perf_counter()
    cpu_before = cpu_seconds(web_pid)
    status, seconds, body = browser.get("/monitoring/")
    html = body.decode()
    hits = [("page", status, seconds)]
    summary_query, subgroups_query = page_queries(html)
    queries = {"summary": summary_query, "subgroups": subgroups_query}
    pending, ready, refused, first_round = ["summary", "subgroups"], {}, {}, None
    while pending and time.perf_counter() - opened < timeout:
        asked, pending = list(pending), []
        while asked:
            name = asked.pop(0)
            status, seconds, body = browser.get(
                f"/monitoring/data/{name}/", urllib.parse.urlencode(queries[name])
            )
            hits.append((name, status, seconds))
            if status == 202:
                pending.append(name)
            elif status != 200:
                refused[name] = status
            else:
                ready[name] = time.perf_counter() - opened
                if name == "summary":
                    features = json.loads(body)["features"]
                    for dependent in DEPENDENTS:
                        queries[dependent] = dict(summary_query)
                        if dependent == "feature" and features:  # the most severe feature is shown first
                            queries[dependent]["feature"] = features[0]["feature"]
                        asked.append(dependent)
        if first_round is None:
            first_round = list(hits)
            cpu_first = cpu_seconds(web_pid) - cpu_before
        if pending:
            time.sleep(poll)
    statics = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    static_seconds = sum(browser.get(path)[1] for path in statics)
    return {
        "first_round": first_round,
        "first_round_cpu": cpu_first,
        "ready": ready,
        "still_computing": pending,
        "refused": refused,
        "asked_202": sum(1 for _, status, _ in hits if status == 202),
        "statics": (len(statics), static_seconds),
        "query": summary_query,
        "poll": poll,
    }


def view_report(title: str, view: dict) -> None:
    first = view["first_round"]
    total = sum(s for _, _, s in first)
    slowest = max(first, key=lambda hit: hit[2])
    statuses = ", ".join(f"{name} {status} {s * 1000:.0f} ms" for name, status, s in first)
    print(f"   {title}: {statuses}")
    computing = [name for name, status, _ in first if status == 202]
    if total >= TARGET_SECONDS:
        verdict = f"OVER the {TARGET_SECONDS:.0f} s target"
    elif computing:
        verdict = f"answered within {TARGET_SECONDS:.0f} s, but WITHOUT the data of {', '.join(computing)}"
    else:
        verdict = f"within the {TARGET_SECONDS:.0f} s target, every figure's data included"
    print(
        f"   first view, page + {len(first) - 1} JSON requests one after the other: {total * 1000:.0f} ms "
        f"(slowest: {slowest[0]} {slowest[2] * 1000:.0f} ms); "
        f"web CPU {view['first_round_cpu'] * 1000:.0f} ms; {verdict}"
    )
    if computing:
        came = ", ".join(
            f"{name} {view['ready'][name]:.1f} s after the page opened"
            for name in computing
            if name in view["ready"]
        )
        late = view["still_computing"]
        print(
            f"   answered 202 (computing): {', '.join(computing)}; asked again every {view['poll']:.0f} s "
            f"as the page does ({view['asked_202']} answers 202 in all); data came: {came or 'never'}"
            + (f"; still computing at the timeout: {', '.join(late)}" if late else "")
        )
    else:
        print("   no request answered 202")
    if view["refused"]:
        print(f"   refused: {view['refused']}")
    n, seconds = view["statics"]
    print(
        f"   (static files the page links, {n}, browser-cached after the first visit: "
        f"{seconds * 1000:.0f} ms)"
    )


# --- the default summaries in the cache ------------------------------------------------------------


def django_setup(env: dict) -> None:
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "MODEL_STORE", "CELERY_QUEUE")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")
    import django

    django.setup()


def _started(summary: dict | None) -> datetime | None:
    """When a cached summary's computation began (computed_at minus its seconds)."""
    if summary is None:
        return None
    return datetime.fromisoformat(summary["computed_at"]) - timedelta(seconds=summary["seconds"])


class Freshness:
    """Reads, never queues: is every default comparison of the version cached, computed after the
    version's newest score? Remembers when that first held (and held since)."""

    def __init__(self) -> None:
        self.max_pk = None
        self.last_score = None
        self.comparisons = []
        self.fresh_since = None
        self.overall_at_first_poll = "not polled"
        self.overall_computed = set()
        self.summaries = {}

    def poll(self) -> bool:
        from django.core.cache import cache
        from django.db.models import Max

        from models_registry.selectors import production_versions
        from monitoring import services
        from patients.models import Prediction

        version = production_versions().first()
        if version is None:
            return False
        scores = Prediction.objects.filter(model_version=version)
        max_pk = scores.aggregate(Max("pk"))["pk__max"]
        if max_pk is None:
            return False
        if max_pk != self.max_pk:
            self.max_pk = max_pk
            self.last_score = scores.aggregate(Max("received_at"))["received_at__max"]
            self.comparisons = services.default_comparisons(version_ids=[version.pk])
        summaries = cache.get_many([c.cache_key for c in self.comparisons])
        now = time.time()
        overall = next(c for c in self.comparisons if c.where == "overall")
        if overall.cache_key in summaries:
            self.overall_computed.add(summaries[overall.cache_key]["computed_at"])
        if self.overall_at_first_poll == "not polled":
            self.overall_at_first_poll = _started(summaries.get(overall.cache_key))
        started = [_started(summaries.get(c.cache_key)) for c in self.comparisons]
        fresh = all(s is not None and s >= self.last_score for s in started)
        self.fresh_since = (self.fresh_since or now) if fresh else None
        self.summaries = summaries
        return fresh

    def wait(self, *, done, timeout: float, interval: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll() and done():
                return True
            time.sleep(interval)
        return False

    def report(self, ended: float | None = None, ended_what: str = "") -> None:
        last = self.last_score.timestamp()
        print(
            f"   last score stored {datetime.fromtimestamp(last, UTC):%H:%M:%S} UTC; "
            f"{len(self.comparisons)} default comparisons (overall, per unit, per shift)"
        )
        if self.fresh_since is None:
            print("   the default summaries were NOT all refreshed after the last score before the timeout")
            return
        seconds = [s["seconds"] for s in self.summaries.values()]
        print(
            "   every default summary cached, computed after the last score: "
            f"{self.fresh_since - last:.1f} s "
            f"after it (debounce {self._debounce()} s); their computations took {sum(seconds):.1f} s "
            f"(slowest {max(seconds):.1f} s); the page's (overall) summary was computed "
            f"{len(self.overall_computed)} time(s) while watched"
        )
        if ended is not None:
            lead = ended - self.fresh_since
            print(
                f"   {ended_what} {abs(lead):.1f} s {'after' if lead >= 0 else 'before'} "
                "the summaries were fresh"
            )

    def first_poll_report(self) -> None:
        """What the page's summary was at the first read (right after the ingest ended)."""
        started = self.overall_at_first_poll
        if started is None or started == "not polled":
            print(
                "   when the last bulk was answered the page's summary was not cached: a view then gets 202"
            )
            return
        age = (self.last_score - started).total_seconds()
        print(
            "   when the last bulk was answered the page's summary was cached, computed from the scores "
            f"stored up to {age:.1f} s before the last one: a view then gets 200 with figures that old"
        )

    @staticmethod
    def _debounce() -> int:
        from django.conf import settings

        return settings.MONITORING_REFRESH_DEBOUNCE_SECONDS


def _attribution_counts(freshness: Freshness) -> tuple[int | None, int | None, int]:
    """(current scores, explanations its attribution drift counts) of the cached page summary, and
    the window's explanations ready now."""
    from explanations.models import Explanation

    overall = next(c for c in freshness.comparisons if c.where == "overall")
    summary = freshness.summaries.get(overall.cache_key) or {}
    ready = Explanation.objects.filter(
        prediction__model_version_id=overall.version_id,
        prediction__scored_at__gte=overall.start,
        prediction__scored_at__lt=overall.end,
        status=Explanation.Status.READY,
    ).count()
    return summary.get("n_current"), summary.get("attribution", {}).get("n_current"), ready


def attribution_report(freshness: Freshness, *, wait: float = 0.0, interval: float = 1.0) -> None:
    """The page's summary's attribution drift counts the explanations ready when it was computed;
    the batch that empties the backlog schedules one more (debounced) refresh. Waits up to `wait`
    seconds for the summary to count every ready explanation."""
    started = time.monotonic()
    freshness.poll()
    scores, counted, ready = _attribution_counts(freshness)
    print(
        f"   the cached page summary: {scores} current scores; its attribution drift "
        f"counts {counted} explanations, {ready} of the window's are ready now"
    )
    if not wait or counted == ready:
        return
    while time.monotonic() - started < wait and counted != ready:
        time.sleep(interval)
        freshness.poll()
        scores, counted, ready = _attribution_counts(freshness)
    outcome = "counts every one" if counted == ready else f"still counts {counted} of {ready}"
    print(f"   {time.monotonic() - started:.0f} s later the summary's attribution drift {outcome}")


def page_key_check(freshness: Freshness, view: dict) -> None:
    """The page's summary query must name the comparison the refresh keeps warm (same cache key)."""
    from django.http import QueryDict

    from monitoring.views import comparison_from

    asked = comparison_from(QueryDict(urllib.parse.urlencode(view["query"]))).cache_key
    warm = next(c for c in freshness.comparisons if c.where == "overall").cache_key
    print(f"   the page asks for the comparison the refresh keeps warm: {'yes' if asked == warm else 'NO'}")


def backlog() -> int:
    from explanations.models import Explanation

    return Explanation.objects.filter(status__in=["pending", "running"]).count()
