"""Processing end to end: upload through the API, jobs run inline, check the media JSON."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gallery.models import Media, Variant
from gallery.storage import media_storage

pytestmark = pytest.mark.django_db

IMAGE_LEVELS = {"1": 10, "2": 40, "3": 160, "4": 320, "5": 640, "6": 1080}
SQUARES = {"1s": 10, "2s": 40, "3s": 160, "4s": 320}


def fetch(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_gps_photo_gets_variants_place_and_local_time(storage, alice_api, upload, corpus):
    body = upload(alice_api, corpus / "jpg" / "gps" / "DSCN0010.jpg").json()
    body = alice_api.get(f"/api/v1/media/{body['id']}/").json()
    assert body["status"] == "ready", body["error"]
    # exiftool -n: DateTimeOriginal 2008:10:22 16:28:39, GPS 43.4674483333333 11.8851266666639
    assert body["taken_at"] == "2008-10-22T16:28:39+02:00"  # Europe/Rome (from the GPS position), CEST
    assert body["latitude"] == pytest.approx(43.4674483, abs=1e-6)
    assert body["longitude"] == pytest.approx(11.8851267, abs=1e-6)
    assert body["place"]["country"] == "Italy"
    assert body["camera"] == "NIKON COOLPIX P6000"
    assert (body["width"], body["height"]) == (640, 480)
    assert set(body["variants"]) == set(IMAGE_LEVELS) | set(SQUARES)
    for level, side in IMAGE_LEVELS.items():
        variant = body["variants"][level]
        assert max(variant["width"], variant["height"]) == min(side, 640)
        assert variant["content_type"] == "image/webp"
        img = Image.open(io.BytesIO(fetch(alice_api, variant["url"])))
        assert img.format == "WEBP" and img.size == (variant["width"], variant["height"])
        assert not img.getexif() and "exif" not in img.info  # no GPS may leak into a thumbnail
    for level, side in SQUARES.items():
        variant = body["variants"][level]
        assert variant["width"] == variant["height"] == min(side, 480)


def test_original_without_offset_or_gps_uses_owner_zone(alice_api, upload, corpus):
    body = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()
    body = alice_api.get(f"/api/v1/media/{body['id']}/").json()
    # exiftool: DateTimeOriginal 2008:05:30 15:56:01, no offset, no GPS; alice lives in Europe/Paris
    assert body["taken_at"] == "2008-05-30T15:56:01+02:00"
    assert body["taken_at_estimated"] is False
    assert body["camera"] == "Canon EOS 40D"


@pytest.mark.parametrize("name", ["landscape_6.jpg", "portrait_8.jpg"])
def test_orientation_is_applied_to_dimensions(alice_api, upload, corpus, name):
    body = upload(alice_api, corpus / "jpg" / "orientation" / name).json()
    body = alice_api.get(f"/api/v1/media/{body['id']}/").json()
    assert body["status"] == "ready"
    if name.startswith("landscape"):
        assert body["width"] > body["height"]
    else:
        assert body["width"] < body["height"]


def test_files_with_broken_exif_degrade_gracefully_to_ready(alice_api, upload, corpus):
    # The corpus' broken files have damaged EXIF, not damaged pixels: each is shown.
    broken = sorted((corpus / "jpg" / "invalid").glob("*.jpg")) + [corpus / "jpg" / "corrupted.jpg"]
    assert len(broken) == 8
    for path in broken:
        response = upload(alice_api, path)
        assert response.status_code in (200, 201), path.name
        media = Media.objects.get(pk=response.json()["id"])
        assert media.status == Media.Status.READY, (path.name, media.status, media.error)
        assert media.variants.count() == 10, path.name
    corrupted = Media.objects.get(original_filename="corrupted.jpg")
    assert corrupted.width == 3648 and corrupted.details["iso"] == 80  # what EXIF survives is kept


def test_truncated_image_data_fails_with_a_reason(alice_api, upload, corpus):
    whole = (corpus / "jpg" / "gps" / "DSCN0010.jpg").read_bytes()
    response = upload(alice_api, name="half.jpg", data=whole[:len(whole) // 2])
    assert response.status_code in (200, 201)
    media = Media.objects.get(pk=response.json()["id"])
    assert media.status == Media.Status.FAILED
    assert "damaged or truncated" in media.error
    assert not media.variants.exists()


def test_heic_gets_variants(alice_api, upload, corpus):
    for path in sorted((corpus / "heic").iterdir()):
        body = upload(alice_api, path).json()
        media = Media.objects.get(pk=body["id"])
        assert media.status == Media.Status.READY, (path.name, media.error)
        assert media.variants.count() == 10


def test_pixel_bomb_is_refused_with_a_clear_reason(alice_api, upload, settings):
    settings.MAX_IMAGE_PIXELS = 1000
    png = io.BytesIO()
    Image.new("RGB", (100, 100), "red").save(png, "PNG")
    media = Media.objects.get(pk=upload(alice_api, name="bomb.png", data=png.getvalue()).json()["id"])
    assert media.status == Media.Status.FAILED
    assert "megapixel" in media.error or "pixels" in media.error


def test_processing_twice_makes_only_what_is_missing(storage, alice_api, upload, corpus,
                                                     django_capture_on_commit_callbacks):
    from gallery.processing.pipeline import media_process

    body = upload(alice_api, corpus / "jpg" / "Nikon_D70.jpg").json()
    media = Media.objects.get(pk=body["id"])
    before = dict(media.variants.values_list("level", "storage_key"))
    Variant.objects.filter(media=media, level="4").delete()
    media_process(media_id=media.pk)
    after = dict(media.variants.values_list("level", "storage_key"))
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != "4"} == {k: v for k, v in before.items() if k != "4"}
    assert after["4"] != before["4"]  # a new output is a new key
    assert media_storage().exists(after["4"])
    assert Media.objects.get(pk=media.pk).status == Media.Status.READY


def test_a_level_stored_first_by_another_run_is_kept_and_ours_deleted(storage, alice_api, upload, corpus,
                                                                      monkeypatch):
    from gallery.processing.pipeline import media_process

    media = Media.objects.get(pk=upload(alice_api, corpus / "jpg" / "Nikon_D70.jpg").json()["id"])
    Variant.objects.filter(media=media, level__in=["4", "5"]).delete()
    saved: list[str] = []
    real_save, real_bulk_create = type(media_storage()).save, Variant.objects.bulk_create

    def save(self, name, content, *args, **kwargs):
        saved.append(real_save(self, name, content, *args, **kwargs))
        return saved[-1]

    def racing_bulk_create(objs, **kwargs):
        # Another run stores level 4 between our look at what exists and our insert.
        Variant.objects.create(media=media, level="4", width=1, height=1, size=1, content_type="image/webp",
                               storage_key="elsewhere/4.webp")
        return real_bulk_create(objs, **kwargs)

    monkeypatch.setattr(type(media_storage()), "save", save)
    monkeypatch.setattr(Variant.objects, "bulk_create", racing_bulk_create)
    media_process(media_id=media.pk)

    rows = dict(media.variants.values_list("level", "storage_key"))
    assert rows["4"] == "elsewhere/4.webp"  # the first one stored wins
    assert rows["5"] in saved and media_storage().exists(rows["5"])
    assert len(saved) == 2
    ours_for_4 = next(key for key in saved if key != rows["5"])
    assert not media_storage().exists(ours_for_4)  # our surplus file is gone
    assert Media.objects.get(pk=media.pk).status == Media.Status.READY


def test_regenerate_command_requeues(alice, alice_api, upload, corpus, settings):
    import io as _io

    from django.core.management import call_command

    from gallery.models import Job

    upload(alice_api, corpus / "jpg" / "Pentax_K10D.jpg")
    upload(alice_api, name="x.txt", data=b"text")
    settings.JOBS_MODE = "queue"
    out = _io.StringIO()
    call_command("regenerate", "--user", "alice", "--kind", "image", stdout=out)
    assert "queued 1 media" in out.getvalue()
    assert Job.objects.filter(state=Job.State.QUEUED, name="process_media").count() == 1
    call_command("regenerate", "--failed", stdout=out)
    assert "queued 0 media" in out.getvalue()
