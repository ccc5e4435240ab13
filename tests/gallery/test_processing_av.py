"""Videos and music through the whole path: upload, processing job, media JSON, bytes."""

from __future__ import annotations

import pytest

from gallery.models import Media
from tests.gallery.test_audio import tagged_mp3
from tests.gallery.test_video import make_clip, top_level_order

pytestmark = pytest.mark.django_db


def test_video_gets_metadata_poster_and_faststart_copy(storage, alice_api, upload, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=2.0)
    assert top_level_order(clip).index(b"moov") > top_level_order(clip).index(b"mdat")  # moov at the end
    body = upload(alice_api, clip).json()
    body = alice_api.get(f"/api/v1/media/{body['id']}/").json()
    assert body["kind"] == "video" and body["status"] == "ready", body["error"]
    assert (body["width"], body["height"]) == (160, 96)
    assert body["duration"] == pytest.approx(2.0, abs=0.2)
    assert {"1", "2", "3", "1s", "2s", "3s"} <= set(body["variants"])  # poster levels (never upscaled)
    play = body["variants"]["play"]
    assert play["content_type"] == "video/mp4"
    response = alice_api.get(play["url"])
    data = b"".join(response.streaming_content) if response.streaming else response.content
    faststart = tmp_path / "play.mp4"
    faststart.write_bytes(data)
    order = top_level_order(faststart)
    assert order.index(b"moov") < order.index(b"mdat")
    media = Media.objects.get(pk=body["id"])
    assert media.details["video_codec"] == "h264"


def test_truncated_video_fails_with_reason(alice_api, upload, tmp_path):
    clip = make_clip(tmp_path / "whole.mp4", seconds=1.0, movflags="faststart")
    broken = clip.read_bytes()[:2000]
    media = Media.objects.get(pk=upload(alice_api, name="broken.mp4", data=broken).json()["id"])
    assert media.status == Media.Status.FAILED
    assert media.error


def test_webm_transcode_for_formats_browsers_cannot_play(alice_api, upload, tmp_path, settings):
    settings.VIDEO_TRANSCODE = True
    clip = make_clip(tmp_path / "old.avi", codec="mpeg4", fmt="avi", seconds=1.0, audio=False)
    body = upload(alice_api, clip).json()
    body = alice_api.get(f"/api/v1/media/{body['id']}/").json()
    assert body["status"] == "ready", body["error"]
    assert body["variants"]["webm"]["content_type"] == "video/webm"
    assert (body["variants"]["webm"]["width"], body["variants"]["webm"]["height"]) == (160, 96)


def test_music_gets_tags_duration_and_cover_levels(alice_api, upload, tmp_path):
    import io

    from PIL import Image

    art = io.BytesIO()
    Image.new("RGB", (400, 400), "red").save(art, "JPEG")
    song = tagged_mp3(tmp_path, art.getvalue())
    body = upload(alice_api, song).json()
    body = alice_api.get(f"/api/v1/media/{body['id']}/").json()
    assert body["kind"] == "audio" and body["status"] == "ready", body["error"]
    assert body["duration"] == pytest.approx(1.0, abs=0.2)
    media = Media.objects.get(pk=body["id"])
    assert (media.details["title"], media.details["artist"], media.details["album"]) == ("Song", "Artist", "Album")
    assert media.details["track"] == 3
    assert body["variants"]["4"]["width"] == 320 and body["variants"]["4s"]["width"] == 320


def test_plain_files_are_kept_as_documents_or_other(alice_api, upload):
    doc = upload(alice_api, name="report.pdf", data=b"%PDF-1.4 not much of a pdf").json()
    other = upload(alice_api, name="archive.zip", data=b"PK\x03\x04 nothing").json()
    assert (doc["kind"], other["kind"]) == ("document", "other")
    for body in (doc, other):
        assert Media.objects.get(pk=body["id"]).status == Media.Status.READY
