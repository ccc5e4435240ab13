"""Search on the database backend, PostgreSQL at a million media.

    .venv/bin/python bench/search.py [--media 1000000] [--runs 3] [--queries 100] [--reindex 20000]
                                     [--database-url postgresql://postgres@127.0.0.1:5432/bench_search] [--json out.json]

Seeds, once (reused while the fingerprint stored in a table comment matches): user `bench`
with --media media (85 % images, 10 % videos; ten years of dates; 40 cities in 12 countries;
12 cameras; names as phones write them; 55 % of media with one to three tags of 60, skewed
(the most common on about one media in seven); 40 albums and
Favourites) written with COPY, and their search entries (search_searchentry and its tag and
album tables) built by the real document code (search.documents) and written with COPY, and
the owners' words (search_word, for prefix queries) taken from them;
user `bench2` with --reindex media for the reindex figure. Indexes are built after the COPY.

Then, in this process (Django's ORM and search.db.DatabaseBackend.search, as the API calls it,
without HTTP and JSON), --runs runs of --queries queries each, values drawn at random:
- faceted: q (one word: a city, a tag, a month or a camera make) + kind + year, facets
  kind, year, month, city, tag, with the exact count and a page of 50 (goal p95 < 100 ms);
- filter-only list: kind + year + tag, the exact count and a page of 50 (goal p95 < 50 ms);
- reference: the library's first timeline page (visible_to, 50 rows, counters), the
  cheapest list the app has, measured in the same run;
- reindex: `search.indexing.reindex(user_id=bench2)` into an index emptied of that user
  first: documents/s (rows read through the ORM, documents built, upserted in batches).
Each figure: the median of the runs' values [their range]. The machine this was written on is
shared (2 cores, other work running): wall times move with the neighbours' load.
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
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench_search"
CHUNK = 20_000

COUNTRIES = {
    "France": [("Paris", "Île-de-France"), ("Lyon", "Auvergne-Rhône-Alpes"), ("Marseille", "Provence"),
               ("Nice", "Provence"), ("Bordeaux", "Nouvelle-Aquitaine")],
    "Italy": [("Rome", "Lazio"), ("Milan", "Lombardy"), ("Venice", "Veneto"), ("Florence", "Tuscany")],
    "Spain": [("Madrid", "Madrid"), ("Barcelona", "Catalonia"), ("Seville", "Andalusia")],
    "Germany": [("Berlin", "Berlin"), ("Munich", "Bavaria"), ("Hamburg", "Hamburg")],
    "United States": [("New York", "New York"), ("San Francisco", "California"), ("Chicago", "Illinois"),
                      ("Seattle", "Washington")],
    "Japan": [("Tokyo", "Tokyo"), ("Kyoto", "Kyoto"), ("Osaka", "Osaka")],
    "United Kingdom": [("London", "England"), ("Edinburgh", "Scotland")],
    "Portugal": [("Lisbon", "Lisbon"), ("Porto", "Porto")],
    "Netherlands": [("Amsterdam", "North Holland"), ("Utrecht", "Utrecht")],
    "Greece": [("Athens", "Attica"), ("Thessaloniki", "Macedonia")],
    "Canada": [("Toronto", "Ontario"), ("Vancouver", "British Columbia"), ("Montreal", "Quebec")],
    "Australia": [("Sydney", "New South Wales"), ("Melbourne", "Victoria"), ("Perth", "Western Australia")],
}
PLACES = [(city, region, country) for country, cities in COUNTRIES.items() for city, region in cities]
CAMERAS = [("Apple", "iPhone 8"), ("Apple", "iPhone 13 Pro"), ("Google", "Pixel 7"), ("Samsung", "SM-G991B"),
           ("Canon", "Canon EOS 40D"), ("Canon", "Canon EOS R6"), ("NIKON CORPORATION", "NIKON D750"),
           ("SONY", "ILCE-7M3"), ("FUJIFILM", "X100V"), ("OLYMPUS", "E-M10"), ("Panasonic", "DMC-GX80"), ("", "")]
TAGS = ["beach", "family", "sunset", "holiday", "birthday", "food", "cat", "dog", "mountains", "snow", "city",
        "friends", "wedding", "party", "garden", "flowers", "car", "train", "concert", "museum", "kids", "school",
        "sport", "football", "hiking", "lake", "river", "forest", "night", "sky", "architecture", "street",
        "portrait", "selfie", "baby", "christmas", "easter", "summer", "winter", "autumn", "spring", "rain",
        "bridge", "castle", "church", "market", "boat", "sea", "island", "desert", "camping", "bike", "work",
        "office", "receipt", "document", "screenshot", "meme", "art", "zoo"]
MONTH_WORDS = ["january", "march", "july", "october", "dec", "aug"]


def pick_tags(rng: random.Random) -> list[str]:
    # Most media carry no tag; the others one to three, the first tags of the list far more
    # often than the last (the most common is on about one media in seven).
    if rng.random() < 0.45:
        return []
    return sorted({TAGS[int(len(TAGS) * rng.random() ** 2)] for _ in range(rng.choice((1, 1, 2, 3)))})


def setup_django(database_url: str) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.update({"DATABASE_URL": database_url, "CHIPMUNK_DATA_DIR": str(WORK / "search"),
                       "SEARCH_BACKEND": "db", "JOBS_MODE": "queue", "LOG_LEVEL": "warning"})
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def recreate_database(dsn: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(dsn)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        name = sql.Identifier(parts.path.lstrip("/"))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def seeded(dsn: str, mark: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            row = conn.execute("SELECT obj_description('search_searchentry'::regclass, 'pg_class')").fetchone()
            return row[0] == mark
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return False


MEDIA_COLUMNS = ("id", "owner_id", "kind", "original_filename", "content_type", "size", "sha256", "status", "error",
                 "taken_at", "taken_at_offset_minutes", "taken_at_estimated", "latitude", "longitude",
                 "place_city", "place_region", "place_country", "camera_make", "camera_model", "exif", "details",
                 "in_vault", "original_key", "token", "created_at", "updated_at", "description", "taken_at_manual",
                 "location_manual", "taken_day", "taken_month")
ENTRY_COLUMNS = ("id", "media_id", "owner_id", "kind", "content_type", "name", "words", "taken_at", "taken_at_us",
                 "date", "year", "month", "day", "weekday", "country", "region", "city", "camera", "favourite",
                 "tag_names", "album_ids", "latitude", "longitude", "indexed_at")


def _tsv(value) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def seed(opts, mark: str) -> None:
    import psycopg
    from django.core.management import call_command
    from django.db import connection
    from psycopg import sql

    from gallery.models import Album, Media
    from gallery.services.accounts import user_create
    from gallery.services.library import favourites_for
    from search.documents import build_document, fold, searchable_words

    started = time.monotonic()
    connection.close()
    recreate_database(opts.database_url)
    call_command("migrate", "--noinput", verbosity=0)
    rng = random.Random(12)
    now = datetime.now(UTC)
    start = datetime(2015, 1, 1, tzinfo=UTC)
    users = [(user_create(username=name, password="bench-search-password", quota_bytes=10**18,
                          time_zone="Europe/Paris"), count)
             for name, count in (("bench", opts.media), ("bench2", opts.reindex))]
    conn = psycopg.connect(opts.database_url)
    conn.execute("SET session_replication_role = replica")  # rows are consistent by construction
    tables = ("gallery_media", "gallery_media_tags", "gallery_album_media", "search_searchentry",
              "search_searchtag", "search_searchalbum")
    plain = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
        "WHERE i.indrelid = ANY(%s::regclass[]) AND c.oid IS NULL", (list(tables),)).fetchall()
    for name, _ in plain:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    entry_id = tag_row = album_row = 0
    for user, count in users:
        tags = {name: conn.execute("INSERT INTO gallery_tag (owner_id, name, key) VALUES (%s, %s, %s) RETURNING id",
                                   (user.pk, name, name.casefold())).fetchone()[0] for name in TAGS}
        albums = [Album(pk=conn.execute("INSERT INTO gallery_album (owner_id, title, is_favourites, created_at) "
                                        "VALUES (%s, %s, false, now()) RETURNING id", (user.pk, title)).fetchone()[0],
                        title=title, is_favourites=False)
                  for title in [f"{city} {year}" for city, _, _ in PLACES[:20] for year in (2018, 2022)]]
        conn.commit()
        favourites = favourites_for(user=user)
        ids = sorted(uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count))
        done = 0
        while done < count:
            media_lines, tag_lines, album_lines, entry_lines, stag_lines, salbum_lines = [], [], [], [], [], []
            for media_id in ids[done:done + CHUNK]:
                roll = rng.random()
                kind = "image" if roll < 0.85 else "video" if roll < 0.95 else rng.choice(("audio", "document"))
                taken = start + timedelta(seconds=rng.randrange(0, 10 * 365 * 86400), microseconds=rng.randrange(10**6))
                local = taken + timedelta(hours=1)
                prefix, ext = {"image": ("IMG", "jpg"), "video": ("VID", "mp4"), "audio": ("REC", "m4a"),
                               "document": ("Scan", "pdf")}[kind]
                name = f"{prefix}_{local:%Y%m%d_%H%M%S}.{ext}"
                city, region, country = rng.choice(PLACES) if rng.random() < 0.7 else ("", "", "")
                make, model = rng.choice(CAMERAS) if kind == "image" else ("", "")
                lat, lon = (48.85 + rng.uniform(-5, 5), 2.35 + rng.uniform(-5, 5)) if city else (None, None)
                media = Media(pk=media_id, owner=user, kind=kind, original_filename=name, taken_at=taken,
                              taken_at_offset_minutes=60, place_city=city, place_region=region, place_country=country,
                              camera_make=make, camera_model=model, latitude=lat, longitude=lon,
                              content_type=f"{kind}/{ext}", details={})
                media_tags = pick_tags(rng)
                media_albums = [a for a in rng.sample(albums, rng.choice((0, 0, 0, 1, 2)))]
                if rng.random() < 0.03:
                    media_albums.append(favourites)
                token = f"{rng.getrandbits(128):032x}"[:22]
                media_lines.append("\t".join(_tsv(v) for v in (
                    media_id, user.pk, kind, name, media.content_type, rng.randrange(10**5, 10**7),
                    f"{rng.getrandbits(256):064x}", "ready", "", taken.isoformat(), 60, False, lat, lon, city, region,
                    country, make, model, "{}", "{}", False, f"{user.pk}/library/originals/{media_id}", token,
                    now.isoformat(), now.isoformat(), "", False, False, local.date().isoformat(),
                    local.date().replace(day=1).isoformat())) + "\n")
                tag_lines += [f"{media_id}\t{tags[t]}\n" for t in media_tags]
                album_lines += [f"{a.pk}\t{media_id}\n" for a in media_albums]
                if user.username != "bench":
                    continue  # bench2's entries are what the reindex figure writes
                doc = build_document(media, tags=media_tags, albums=[(a.pk, a.title) for a in media_albums],
                                     favourites_album_id=favourites.pk)
                entry_id += 1
                entry_lines.append("\t".join(_tsv(v) for v in (
                    entry_id, media_id, user.pk, kind, doc["content_type"], fold(name), " ".join(searchable_words(doc)),
                    taken.isoformat(), doc["taken_at_us"], doc["date"], doc["year"], doc["month"], doc["day"],
                    doc["weekday"], country, region, city, doc["camera"], doc["favourite"], json.dumps(doc["tags"]),
                    json.dumps(doc["albums"]), lat, lon,
                    now.isoformat())) + "\n")
                for t in media_tags:
                    tag_row += 1
                    stag_lines.append(f"{tag_row}\t{entry_id}\t{user.pk}\t{t}\t{kind}\t{doc['year']}\n")
                for a in media_albums:
                    album_row += 1
                    salbum_lines.append(f"{album_row}\t{entry_id}\t{user.pk}\t{a.pk}\n")
            with conn.cursor() as cur:
                for statement, lines in (
                        (f"COPY gallery_media ({', '.join(MEDIA_COLUMNS)}) FROM STDIN", media_lines),
                        ("COPY gallery_media_tags (media_id, tag_id) FROM STDIN", tag_lines),
                        ("COPY gallery_album_media (album_id, media_id) FROM STDIN", album_lines),
                        (f"COPY search_searchentry ({', '.join(ENTRY_COLUMNS)}) FROM STDIN", entry_lines),
                        ("COPY search_searchtag (id, entry_id, owner_id, name, kind, year) FROM STDIN", stag_lines),
                        ("COPY search_searchalbum (id, entry_id, owner_id, album_id) FROM STDIN", salbum_lines)):
                    if lines:
                        with cur.copy(statement) as copy:
                            copy.write("".join(lines))
            conn.commit()
            done += len(media_lines)
            if done % 200_000 == 0 or done == count:
                print(f"  {user.username}: seeded {done} media in {time.monotonic() - started:.0f} s", flush=True)
    for table, column in (("search_searchentry", "id"), ("search_searchtag", "id"), ("search_searchalbum", "id")):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                     f"(SELECT COALESCE(MAX({column}), 1) FROM {table}))")
    print(f"  building {len(plain)} indexes", flush=True)
    for _, definition in plain:
        conn.execute(definition)
    # The owners' words (search_word, for prefix queries), as search.db writes them.
    conn.execute("INSERT INTO search_word (owner_id, word) SELECT DISTINCT owner_id, unnest(tsvector_to_array(document)) "
                 "FROM search_searchentry ON CONFLICT DO NOTHING")
    conn.commit()
    conn.close()
    # Counters from the rows, as migration 0004 does.
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM gallery_kindusage")
        conn.execute("INSERT INTO gallery_kindusage (owner_id, kind, place, count, bytes) SELECT owner_id, kind, "
                     "'library', COUNT(*), SUM(size) FROM gallery_media GROUP BY 1, 2")
        for table in (*tables, "gallery_kindusage", "search_word"):
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute(f"COMMENT ON TABLE search_searchentry IS {sql.quote(mark)}")
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)


# --- Measuring ------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return times


def one_run(opts, user, bench2, rng: random.Random) -> dict:
    from django.http import QueryDict

    from gallery.models import Media
    from search.db import DatabaseBackend
    from search.indexing import reindex
    from search.models import SearchEntry
    from search.query import parse

    backend = DatabaseBackend()
    words = [c.lower() for c, _, _ in PLACES] + TAGS[:30] + MONTH_WORDS + ["canon", "apple", "sony", "img", "vid"]

    def faceted():
        query = parse(QueryDict(f"q={rng.choice(words)}&kind={rng.choice(('image', 'image', 'video'))}"
                                f"&year={rng.randrange(2015, 2025)}&facets=kind,year,month,city,tag&page_size=50"
                                "&sort=-taken_at"))
        backend.search(query, owner_id=str(user.pk))

    def listing():
        query = parse(QueryDict(f"kind=image&year={rng.randrange(2015, 2025)}&tag={rng.choice(TAGS[:20])}"
                                "&page_size=50"))
        backend.search(query, owner_id=str(user.pk))

    def timeline():
        list(Media.objects.visible_to(user).timeline().values_list("id", "taken_at")[:50])
        Media.objects.visible_count(user)

    figures = {}
    for name, fn in (("reference", timeline), ("faceted", faceted), ("list", listing)):
        fn()  # warm
        times = timed(fn, opts.queries)
        figures[name] = {"p50": percentile(times, 50), "p95": percentile(times, 95)}
    SearchEntry.objects.filter(owner=bench2).delete()
    began = time.perf_counter()
    done = reindex(user_id=bench2.pk, backend=backend)
    figures["reindex"] = {"docs_per_s": done / (time.perf_counter() - began), "docs": done}
    return figures


def summary(runs: list[dict], name: str, key: str) -> tuple[float, float, float]:
    values = [r[name][key] for r in runs]
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=int, default=1_000_000, help="media of the searched user")
    parser.add_argument("--reindex", type=int, default=20_000, help="media of the user the reindex figure rebuilds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind per run")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    setup_django(opts.database_url)
    mark = json.dumps({"seed": 3, "media": opts.media, "reindex": opts.reindex})
    if seeded(opts.database_url, mark):
        print(f"PostgreSQL: reusing {opts.media} seeded media", flush=True)
    else:
        print(f"PostgreSQL: seeding {opts.media} media and their search entries (once)", flush=True)
        seed(opts, mark)
    from django.core.management import call_command

    from gallery.models import User

    call_command("migrate", "--noinput", verbosity=0)
    user, bench2 = User.objects.get(username="bench"), User.objects.get(username="bench2")
    runs = []
    for run in range(opts.runs):
        figures = one_run(opts, user, bench2, random.Random(run))
        runs.append(figures)
        print(f"run {run + 1}: " + ", ".join(
            f"{k} p50 {v['p50']:.1f} / p95 {v['p95']:.1f} ms" for k, v in figures.items() if "p50" in v)
            + f", reindex {figures['reindex']['docs_per_s']:.0f} documents/s", flush=True)
    print(f"\nPostgreSQL, database backend, {opts.media} media; {opts.runs} runs x {opts.queries} queries; "
          "median [range]")
    ref50, ref95 = summary(runs, "reference", "p50"), summary(runs, "reference", "p95")
    print(f"  {'reference: library timeline page':44} p50 {ref50[0]:6.1f} [{ref50[1]:.1f}-{ref50[2]:.1f}] ms"
          f"   p95 {ref95[0]:6.1f} [{ref95[1]:.1f}-{ref95[2]:.1f}] ms")
    for name, label, goal in (("faceted", "faceted: q + kind + year, 5 facets", 100),
                              ("list", "filter-only list: kind + year + tag", 50)):
        p50, p95 = summary(runs, name, "p50"), summary(runs, name, "p95")
        verdict = "met" if p95[0] < goal else "NOT met"
        print(f"  {label:44} p50 {p50[0]:6.1f} [{p50[1]:.1f}-{p50[2]:.1f}] ms   p95 {p95[0]:6.1f} "
              f"[{p95[1]:.1f}-{p95[2]:.1f}] ms  (goal p95 < {goal} ms: {verdict}; p95 {p95[0] / ref95[0]:.1f}x the "
              "reference's)")
    rate = summary(runs, "reindex", "docs_per_s")
    print(f"  {'reindex into the database backend':44} {rate[0]:.0f} [{rate[1]:.0f}-{rate[2]:.0f}] documents/s "
          f"({opts.reindex} media)")
    if opts.json:
        opts.json.write_text(json.dumps({"media": opts.media, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
