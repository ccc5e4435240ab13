"""PATCH /api/v1/media/<id>/: name, description, taken_at (local time and offset, manual),
position (place looked up again); processing again never overwrites what was set by hand."""

from __future__ import annotations

import pytest

from gallery.models import Media
from gallery.processing.pipeline import media_process
from tests.conftest import api_client
from tests.media_api.conftest import counters_exact


def test_name_and_description(alice, alice_api, make_media):
    media = make_media(alice)[0]
    body = alice_api.patch(f"/api/v1/media/{media.pk}/", {"name": "a/b.txt", "description": " Hello\n"},
                           format="json").json()
    assert body["name"] == "a_b.txt" and body["description"] == " Hello\n"
    assert alice_api.get(f"/api/v1/media/{media.pk}/").json()["description"] == " Hello\n"
    assert Media.objects.get(pk=media.pk).updated_at > media.updated_at


def test_taken_at_is_kept_as_local_time_and_offset_and_moves_the_bucket(alice, alice_api, make_media):
    media = make_media(alice)[0]
    response = alice_api.patch(f"/api/v1/media/{media.pk}/", {"taken_at": "2019-07-01T00:30:00+02:00"},
                               format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["taken_at"] == "2019-07-01T00:30:00+02:00"
    assert body["taken_at_manual"] is True and body["taken_at_estimated"] is False
    row = Media.objects.get(pk=media.pk)
    assert row.taken_at.isoformat() == "2019-06-30T22:30:00+00:00" and row.taken_at_offset_minutes == 120
    # The local day of capture, not the UTC one.
    assert str(row.taken_day) == "2019-07-01" and str(row.taken_month) == "2019-07-01"
    buckets = alice_api.get("/api/v1/timeline/buckets/?size=day").json()["buckets"]
    assert {"bucket": "2019-07-01", "count": 1} in buckets
    assert [m["id"] for m in alice_api.get("/api/v1/media/?bucket=2019-07").json()["results"]] == [str(media.pk)]
    assert counters_exact(alice)


@pytest.mark.parametrize("value", ["2019-07-01T00:30:00", "2019-07-01", "yesterday", "2019-13-01T00:00:00+00:00", 5])
def test_taken_at_needs_an_offset(alice, alice_api, make_media, value):
    media = make_media(alice)[0]
    response = alice_api.patch(f"/api/v1/media/{media.pk}/", {"taken_at": value}, format="json")
    assert response.status_code == 400 and "taken_at" in response.json()["fields"]


def test_position_is_looked_up_and_can_be_forgotten(alice, alice_api, make_media):
    media = make_media(alice)[0]
    body = alice_api.patch(f"/api/v1/media/{media.pk}/", {"latitude": 51.5007, "longitude": -0.1246},
                           format="json").json()
    assert body["place"]["city"] == "London" and body["latitude"] == 51.5007 and body["location_manual"] is True
    cleared = alice_api.patch(f"/api/v1/media/{media.pk}/", {"latitude": None, "longitude": None},
                              format="json").json()
    assert cleared["place"] is None and cleared["latitude"] is None


@pytest.mark.parametrize("body", [
    {"latitude": 10}, {"latitude": 91, "longitude": 0}, {"latitude": 0, "longitude": 181},
    {"latitude": None, "longitude": 3}, {"latitude": "north", "longitude": 3}, {}, {"favourite": True},
    {"name": ""}, {"description": "x" * 10_001},
])
def test_bad_edits_are_400_json(alice, alice_api, make_media, body):
    media = make_media(alice)[0]
    response = alice_api.patch(f"/api/v1/media/{media.pk}/", body, format="json")
    assert response.status_code == 400 and response.json()["error"] == "invalid", body


def test_strangers_and_readers_cannot_edit(alice, charlie_api, make_media):
    media = make_media(alice)[0]
    assert charlie_api.patch(f"/api/v1/media/{media.pk}/", {"name": "x"}, format="json").status_code == 404
    reader = api_client(alice, scopes=("media.read",))
    assert reader.patch(f"/api/v1/media/{media.pk}/", {"name": "x"}, format="json").status_code == 403
    assert Media.objects.get(pk=media.pk).original_filename == "note.txt"


def test_processing_again_keeps_a_manual_date_and_position(alice, alice_api, upload, corpus):
    created = upload(alice_api, corpus / "jpg" / "gps" / "DSCN0010.jpg").json()
    photo = alice_api.get(f"/api/v1/media/{created['id']}/").json()  # processed after the response
    assert photo["place"]["city"] == "Arezzo" and photo["taken_at_estimated"] is False
    exif_date = photo["taken_at"]
    alice_api.patch(f"/api/v1/media/{photo['id']}/", {"taken_at": "2001-02-03T04:05:06-05:00",
                                                       "latitude": 51.5007, "longitude": -0.1246}, format="json")
    media_process(media_id=photo["id"])
    again = alice_api.get(f"/api/v1/media/{photo['id']}/").json()
    assert again["taken_at"] == "2001-02-03T04:05:06-05:00" != exif_date
    assert again["place"]["city"] == "London" and again["status"] == "ready"
    assert counters_exact(alice)


def test_processing_moves_the_day_counter_of_an_unedited_photo(alice, alice_api, upload, corpus):
    photo = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()
    media = Media.objects.get(pk=photo["id"])
    assert media.taken_at_estimated is False and media.taken_day.year == 2008
    assert counters_exact(alice)
    buckets = alice_api.get("/api/v1/timeline/buckets/").json()["buckets"]
    assert buckets == [{"bucket": media.taken_day.strftime("%Y-%m"), "count": 1}]


def test_the_direct_media_json_is_the_generic_serializers(alice, alice_api, upload, corpus, make_media):
    import orjson

    from media_api.serializers import MediaSerializer
    from media_api.views.media import as_rows, attach_relations

    photo = upload(alice_api, corpus / "jpg" / "gps" / "DSCN0010.jpg").json()
    doc = make_media(alice)[0]
    alice_api.post(f"/api/v1/media/{photo['id']}/favourite")
    alice_api.post("/api/v1/tags/bulk", {"media": [photo["id"]], "add": ["b", "A"]}, format="json")
    alice_api.patch(f"/api/v1/media/{doc.pk}/", {"description": "d"}, format="json")
    alice_api.delete(f"/api/v1/media/{doc.pk}/")
    rows = {row.pk: row for row in attach_relations(list(as_rows(Media.objects.filter(owner=alice))), owner=alice)}
    for media in attach_relations(list(Media.objects.select_related("owner").filter(owner=alice))):
        serializer = MediaSerializer()
        assert serializer.to_representation(media) == serializer.generic_representation(media)
        assert list(serializer.to_representation(media)) == list(serializer.generic_representation(media))
        assert media.variant_list or media.pk == doc.pk
        # A page's MediaRow (values, the caller as owner) gives the very same JSON.
        assert orjson.dumps(serializer.to_representation(rows[media.pk])) == orjson.dumps(
            serializer.to_representation(media))
    assert len(rows) == 2
