"""The admin's lists at 100,000 media: ours against Django's stock ModelAdmin, same rows, same run.

    .venv/bin/python bench/admin.py [--media 100000] [--rounds 5] [--database-url postgres://...] [--json out.json]

Seeds --media rows (bulk_create, two owners, ten years of dates, mixed kinds and states, the
KindUsage counters computed from the rows) in a throw-away CHIPMUNK_DATA_DIR under
bench/.work/ (SQLite; or the PostgreSQL database of --database-url, whose gallery tables are
emptied first), then times each changelist URL through Django's test client as a superuser
(the whole request: middleware, queries, template), --rounds times after one warm-up, for:
- ours: gallery.admin.media.MediaAdmin at /admin/gallery/media/;
- reference: a stock ModelAdmin with the same columns, filters, date hierarchy and search
  (Django's own paginator and full result count) on a second admin site, /plain/.
Prints median [min-max] wall and CPU ms (this process: Python, SQLite, the template) and
queries per page for both, and the CPU ratio ours/reference. Wall times on a shared machine
move with the neighbours' load; CPU much less: compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

URLS = [
    ("first page", ""),
    ("owner filter", "?owner__id__exact={alice}"),
    ("kind filter", "?kind__exact=video"),
    ("status filter", "?status__exact=failed"),
    ("year drill-down", "?taken_at__year=2021"),
    ("search by name", "?q=IMG_12345"),
    ("page 50", "?p=50"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--json")
    parser.add_argument("--queries", action="store_true", help="print each page's queries and their times")
    args = parser.parse_args()

    work = ROOT / "bench" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    # The SQLite file is kept between runs and reused while it holds the rows asked for.
    os.environ["CHIPMUNK_DATA_DIR"] = str(work / f"admin-{args.media}")
    os.environ.setdefault("LOG_LEVEL", "error")
    os.environ["JOBS_MODE"] = "queue"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    users = seed(args.media)
    results = measure(users, args.rounds, show_queries=args.queries)
    print(f"\n{args.media:,} media on {'PostgreSQL' if args.database_url else 'SQLite'}; "
          f"{args.rounds} rounds, median [min-max] ms per request (test client, whole request)")
    print(f"{'page':16} {'ours wall':>22} {'ours CPU':>22} {'q':>2}  {'stock wall':>22} {'stock CPU':>22} {'q':>2}"
          "  ratio (CPU)")
    for name, row in results.items():
        ours, ref = row["ours"], row["reference"]
        print(f"{name:16} {fmt(ours['ms']):>22} {fmt(ours['cpu_ms']):>22} {ours['queries']:>2}  {fmt(ref['ms']):>22} "
              f"{fmt(ref['cpu_ms']):>22} {ref['queries']:>2}  "
              f"{statistics.median(ours['cpu_ms']) / statistics.median(ref['cpu_ms']):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"media": args.media, "results": results}, indent=1))


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def seed(count: int) -> dict:
    from django.db import connection
    from django.db.models import Count, Sum

    from gallery.models import KindUsage, Media, User

    if Media.objects.count() == count and User.objects.filter(username="root").exists():
        return {u.username: u for u in User.objects.filter(username__in=["alice", "bob", "root"])}
    Media.objects.all().delete()
    User.objects.all().delete()
    alice = User.objects.create_user(username="alice", password="bench-password-1")
    bob = User.objects.create_user(username="bob", password="bench-password-1")
    root = User.objects.create_superuser(username="root", password="bench-password-1")
    rng = random.Random(7)
    start = datetime(2015, 1, 1, tzinfo=UTC)
    kinds = ["image"] * 8 + ["video"] + ["audio"]
    statuses = ["ready"] * 97 + ["failed", "pending", "processing"]
    began = time.monotonic()
    batch = []
    for i in range(count):
        owner = alice if i % 3 else bob
        batch.append(Media(
            id=uuid.uuid4(), owner=owner, kind=rng.choice(kinds), original_filename=f"IMG_{i:05d}.jpg",
            content_type="image/jpeg", size=rng.randint(10**5, 10**7), sha256=f"{rng.getrandbits(256):064x}",
            status=rng.choice(statuses), taken_at=start + timedelta(seconds=rng.randint(0, 10 * 365 * 86400)),
            taken_at_estimated=False, original_key=f"{owner.pk}/library/originals/{i}.jpg",
            place_city="Lyon" if i % 5 == 0 else "", place_country="France" if i % 5 == 0 else "",
            trashed_at=start if i % 50 == 0 else None))
        if len(batch) == 5000:
            Media.objects.bulk_create(batch)
            batch = []
    Media.objects.bulk_create(batch)
    for place, trashed in ((KindUsage.Place.LIBRARY, True), (KindUsage.Place.TRASH, False)):
        rows = Media.objects.filter(trashed_at__isnull=trashed).values("owner", "kind")
        for row in rows.annotate(n=Count("id"), b=Sum("size")):
            KindUsage.objects.create(owner_id=row["owner"], kind=row["kind"], place=place, count=row["n"],
                                     bytes=row["b"])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"seeded {count:,} media in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return {"alice": alice, "bob": bob, "root": root}


def plain_urlconf():
    """A second admin site with Django's stock ModelAdmin for the same table: the reference."""
    import types

    from django.contrib import admin
    from django.urls import path

    from config import urls as project_urls
    from gallery.models import Media

    site = admin.AdminSite(name="plain")

    class PlainMediaAdmin(admin.ModelAdmin):
        list_display = ("original_filename", "owner", "kind", "status", "size", "taken_at", "place_city")
        list_select_related = ("owner",)
        list_filter = ("owner", "kind", "status", "in_vault")
        date_hierarchy = "taken_at"
        search_fields = ("original_filename", "=sha256", "owner__username")
        ordering = ("-taken_at", "-id")

    site.register(Media, PlainMediaAdmin)
    module = types.ModuleType("bench_admin_urls")
    module.urlpatterns = [path("plain/", site.urls), *project_urls.urlpatterns]
    sys.modules["bench_admin_urls"] = module
    return "bench_admin_urls"


def measure(users: dict, rounds: int, *, show_queries: bool = False) -> dict:
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(users["root"])
    results: dict = {}
    with override_settings(ROOT_URLCONF=plain_urlconf()):
        for name, query in URLS:
            query = query.format(alice=users["alice"].pk)
            row = {}
            for label, base in (("ours", "/admin/gallery/media/"), ("reference", "/plain/gallery/media/")):
                url = base + query
                response = client.get(url)  # warm-up
                assert response.status_code == 200, (url, response.status_code)
                times, cpu = [], []
                for _ in range(rounds):
                    began, began_cpu = time.perf_counter(), time.process_time()
                    with CaptureQueriesContext(connection) as captured:
                        client.get(url)
                    times.append((time.perf_counter() - began) * 1000)
                    cpu.append((time.process_time() - began_cpu) * 1000)
                row[label] = {"ms": [round(t, 2) for t in times], "cpu_ms": [round(t, 2) for t in cpu],
                              "queries": len(captured)}
                if show_queries:
                    for q in captured.captured_queries:
                        print(f"  {label} {q['time']}s {q['sql'][:300]}", file=sys.stderr)
            results[name] = row
            print(f"{name}: ours {fmt(row['ours']['ms'])} ms, stock {fmt(row['reference']['ms'])} ms", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
