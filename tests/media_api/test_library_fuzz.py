"""The library's JSON endpoints under fuzzed bodies and parameters: zero 5xx, every error a
JSON {"error", "detail"} (the same harness as tests/test_fuzz.py: fixed seed, bounded)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz import assert_not_5xx, fuzzing, json_values, raw_json

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_library_json_bodies(alice, alice_api, make_media):
    media = [str(m.pk) for m in make_media(alice, 2)]
    album = alice_api.post("/api/v1/albums/", {"title": "fuzz"}, format="json").json()["id"]
    trashed = str(make_media(alice)[0].pk)
    alice_api.delete(f"/api/v1/media/{trashed}/")
    ids = st.lists(st.sampled_from(media + [trashed, str(uuid.uuid4()), "x", ""]) | json_values, max_size=4)
    names = st.lists(st.text(max_size=120) | json_values, max_size=4) | json_values
    numbers = st.floats() | st.integers(-2**70, 2**70) | json_values
    targets = {
        "album-create": ("POST", "/api/v1/albums/", st.fixed_dictionaries({}, optional={"title": names})),
        "album-patch": ("PATCH", f"/api/v1/albums/{album}/", st.fixed_dictionaries({}, optional={
            "title": st.text(max_size=250) | json_values, "cover": st.sampled_from(media) | json_values})),
        "album-media": ("POST", f"/api/v1/albums/{album}/media/",
                        st.fixed_dictionaries({}, optional={"add": ids | json_values, "remove": ids})),
        "tags": ("POST", "/api/v1/tags/bulk", st.fixed_dictionaries({}, optional={
            "media": ids | json_values, "add": names, "remove": names})),
        "restore": ("POST", "/api/v1/trash/restore", st.fixed_dictionaries({}, optional={"media": ids})),
        "edit": ("PATCH", f"/api/v1/media/{media[0]}/", st.fixed_dictionaries({}, optional={
            "name": st.text(max_size=300) | json_values, "description": st.text(max_size=50) | json_values,
            "taken_at": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=40)
            | json_values, "latitude": numbers, "longitude": numbers})),
    }

    @fuzzing(300)
    @given(target=st.sampled_from(sorted(targets)), data=st.data(),
           content_type=st.sampled_from(["application/json"] * 6 + ["text/plain", "multipart/form-data; boundary=x"]))
    def fuzz(target, data, content_type):
        method, url, bodies = targets[target]
        body = data.draw(raw_json(bodies))
        assert_not_5xx(alice_api.generic(method, url, data=body, content_type=content_type))

    fuzz()


@pytest.mark.slow
def test_timeline_parameters(alice, alice_api, make_media):
    make_media(alice, 2)
    text = st.text(max_size=14) | st.dates().map(str) | st.dates().map(lambda d: str(d)[:7])

    @fuzzing(150)
    @given(bucket=text, size=text | st.sampled_from(["month", "day"]), page_size=st.integers(-3, 10**6).map(str))
    def fuzz(bucket, size, page_size):
        assert_not_5xx(alice_api.get("/api/v1/media/", {"bucket": bucket, "page_size": page_size}))
        assert_not_5xx(alice_api.get("/api/v1/timeline/buckets/", {"size": size}))
        if bucket.strip() and not set(bucket) & set("/.?#%"):  # what the router's [^/.]+ takes
            assert_not_5xx(alice_api.get(f"/api/v1/albums/{bucket}/media/"))

    fuzz()
