"""The tus 1.0.0 endpoint /api/v1/uploads/: headers in, headers out. The protocol is gallery.uploads.tus.

DRF views, so credentials (API key or session with CSRF), scopes and JSON errors are those
of the rest of the API; every response carries Tus-Resumable. Bodies are read as a stream
from the Django request (config.asgi hands them over without spooling them to disk first).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import Resolver404, get_script_prefix, resolve, reverse
from django.utils.http import http_date
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from gallery.exceptions import (
    FinalUploadReadOnly,
    InvalidInput,
    MetadataTooLarge,
    PartialNotFound,
    UnsupportedMediaType,
    UnsupportedVersion,
    UploadBusy,
)
from gallery.models import Upload
from gallery.processing.filetypes import clean_media_type
from gallery.uploads import tus
from gallery.uploads.lifecycle import album_for, is_leased, upload_get_for, upload_terminate
from gallery.uploads.vault import is_vault
from gallery.vault import keys
from media_api.auth import HasScope
from media_api.schema import TUS_RESUMABLE
from media_api.streaming import body_of
from media_api.views.vault import require_unlocked

log = logging.getLogger(__name__)

OFFSET_OCTET_STREAM = "application/offset+octet-stream"
OVERRIDABLE = {"PATCH", "DELETE", "HEAD"}
# ASCII digits only (str.isdigit() also takes "²" and "١", which int() refuses), and few
# enough of them that int() never meets its 4300-digit limit: 20 digits pass any real size.
NON_NEGATIVE_INT = re.compile(r"[0-9]{1,20}")


def header_int(request, name: str, *, required: bool = False) -> int | None:
    raw = request.META.get("HTTP_" + name.upper().replace("-", "_"))
    if raw is None or raw.strip() == "":
        if required:
            raise InvalidInput(f"the {name} header is required")
        return None
    raw = raw.strip()
    if not NON_NEGATIVE_INT.fullmatch(raw):
        raise InvalidInput(f"{name} must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def content_length(request) -> int | None:
    raw = (request.META.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not NON_NEGATIVE_INT.fullmatch(raw):
        raise InvalidInput("Content-Length must be a non-negative integer")
    return int(raw)


def parse_metadata(raw: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs; a key may stand alone.

    At most UPLOAD_METADATA_MAX_BYTES: it is stored with the upload, outside the quota."""
    if len(raw) > settings.UPLOAD_METADATA_MAX_BYTES:
        raise MetadataTooLarge(f"Upload-Metadata is {len(raw)} bytes; this server takes at most "
                               f"{settings.UPLOAD_METADATA_MAX_BYTES}", max_bytes=settings.UPLOAD_METADATA_MAX_BYTES)
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        value = value.strip()
        if not key.isascii() or key in pairs or " " in value:
            raise InvalidInput(f"Upload-Metadata is malformed near {item[:60]!r}")
        try:
            pairs[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidInput(f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from None
        if "\x00" in pairs[key]:
            raise InvalidInput(f"Upload-Metadata value of {key!r} contains a NUL character")
    return pairs


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items())


def parse_checksum(request) -> tus.Checksum | None:
    raw = request.META.get("HTTP_UPLOAD_CHECKSUM")
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in tus.CHECKSUM_ALGORITHMS:
        raise InvalidInput(f"checksum algorithm {algorithm[:20]!r} is not supported; use one of "
                           f"{', '.join(tus.CHECKSUM_ALGORITHMS)}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("Upload-Checksum must be `<algorithm> <base64 digest>`") from None
    if len(digest) != tus.CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise InvalidInput(f"the {algorithm} digest in Upload-Checksum has the wrong length")
    return tus.Checksum(algorithm=algorithm, digest=digest)


def has_body(request) -> bool:
    return bool(content_length(request)) or "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


def parse_concat(request) -> tuple[str, list[str]]:
    """Upload-Concat: `partial`, or `final;<url> <url> ...` -> ("final", the upload ids)."""
    raw = request.META.get("HTTP_UPLOAD_CONCAT")
    if raw is None:
        return Upload.Concat.NONE, []
    raw = raw.strip()
    if raw == "partial":
        return Upload.Concat.PARTIAL, []
    kind, separator, urls = raw.partition(";")
    if kind.strip() != "final" or not separator:
        raise InvalidInput("Upload-Concat must be `partial` or `final;<url> <url> ...`")
    return Upload.Concat.FINAL, [upload_id_from_url(request, url) for url in urls.split()]


def upload_id_from_url(request, url: str) -> str:
    """The upload id in an absolute or path URL of this server's upload resource."""
    parts = urlsplit(url)
    not_ours = PartialNotFound(f"{url[:200]!r} is not an upload URL of this server")
    if parts.netloc and (parts.scheme not in ("http", "https") or parts.netloc.lower() != request.get_host().lower()):
        raise not_ours
    path, prefix = parts.path, get_script_prefix()
    if prefix != "/" and path.startswith(prefix):
        path = path[len(prefix) - 1:]
    try:
        match = resolve(path)
    except Resolver404:
        raise not_ours from None
    if getattr(match.func, "view_class", None) is not UploadResource:
        raise not_ours
    return match.kwargs["upload_id"]


def concat_headers(request, upload: Upload) -> dict[str, str]:
    if upload.concat == Upload.Concat.PARTIAL:
        return {"Upload-Concat": "partial"}
    if upload.concat == Upload.Concat.FINAL:
        urls = (request.build_absolute_uri(reverse("tus-upload", args=[p["id"]])) for p in upload.partials)
        return {"Upload-Concat": "final;" + " ".join(urls)}
    return {}


def upload_headers(upload: Upload, media_id=None) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset)}
    if upload.state == Upload.State.ACTIVE:
        headers["Upload-Expires"] = http_date(upload.expires_at.timestamp())
    media_id = media_id or upload.media_id
    if media_id:
        headers["Media-Id"] = str(media_id)
    return headers


class TusPermission(HasScope):
    """OPTIONS (server discovery) is open; the rest needs the usual credential and scope."""

    def has_permission(self, request, view) -> bool:
        return request.method == "OPTIONS" or super().has_permission(request, view)


class TusView(APIView):
    permission_classes = [TusPermission]

    def dispatch(self, request, *args, **kwargs):
        # Clients behind proxies that only pass GET/POST send the real method in this header.
        override = request.META.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").strip().upper()
        if request.method == "POST" and override in OVERRIDABLE:
            request.method = override
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        if request.method != "OPTIONS" and request.META.get("HTTP_TUS_RESUMABLE") != tus.VERSION:
            raise UnsupportedVersion(f"this server speaks tus {tus.VERSION}; send Tus-Resumable: {tus.VERSION}")
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        try:
            return super().handle_exception(exc)
        except Exception:
            log.exception("tus request failed")
            return Response({"error": "server_error", "detail": "the upload could not be processed; retry"},
                            status=status.HTTP_500_INTERNAL_SERVER_ERROR)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = tus.VERSION
        if response.status_code == status.HTTP_412_PRECONDITION_FAILED:
            response["Tus-Version"] = tus.VERSION
        return response

    @extend_schema(summary="tus discovery: version, extensions, maximum size, checksum algorithms", auth=[],
                   responses={204: OpenApiResponse(description="Tus-Version, Tus-Extension, Tus-Max-Size, "
                                                               "Tus-Checksum-Algorithm headers")})
    def options(self, request, *args, **kwargs):
        return Response(status=status.HTTP_204_NO_CONTENT, headers={
            "Tus-Version": tus.VERSION, "Tus-Extension": ",".join(tus.EXTENSIONS),
            "Tus-Max-Size": str(settings.TUS_MAX_SIZE),
            "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
        })


class UploadCollection(TusView):
    """POST creates an upload (creation, creation-with-upload, concatenation)."""

    @extend_schema(
        summary="tus creation (creation-with-upload, concatenation)", request={OFFSET_OCTET_STREAM: OpenApiTypes.BINARY},
        parameters=[TUS_RESUMABLE,
                    OpenApiParameter("Upload-Length", OpenApiTypes.INT, OpenApiParameter.HEADER,
                                     description="the file's size (not for a final concatenation)"),
                    OpenApiParameter("Upload-Metadata", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="comma-separated `key base64(value)`: filename, filetype, album"),
                    OpenApiParameter("Upload-Concat", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="`partial`, or `final;<upload URL> <upload URL> …`"),
                    OpenApiParameter("Upload-Checksum", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="`sha1|md5|sha256 base64(digest)` of the body sent with creation")],
        responses={201: OpenApiResponse(description="created; Location is the upload's URL"), 413: OpenApiResponse(description="over the quota or the size cap")})
    def post(self, request):
        if "HTTP_UPLOAD_DEFER_LENGTH" in request.META:
            raise InvalidInput("Upload-Defer-Length is not supported; send Upload-Length")
        concat, partial_ids = parse_concat(request)
        metadata = parse_metadata(request.META.get("HTTP_UPLOAD_METADATA", ""))
        # Into the vault (Upload-Metadata `vault` = "true"): this credential must hold it open.
        vault = require_unlocked(request) if metadata.get("vault", "").lower() == "true" else None
        if vault is not None and concat != Upload.Concat.NONE:
            raise InvalidInput("vault uploads do not take Upload-Concat")
        album = album_for(owner=request.user, album_id=metadata.get("album") or metadata.get("album_id"))
        filename = metadata.get("filename") or metadata.get("name") or ""
        # Only a hint for the media's type (the bytes decide), and it goes into S3 headers:
        # a bare type/subtype or nothing.
        filetype = clean_media_type(metadata.get("filetype") or metadata.get("type"))
        if concat == Upload.Concat.FINAL:
            if "HTTP_UPLOAD_LENGTH" in request.META:
                raise InvalidInput("a final upload takes no Upload-Length: it is the sum of its partial uploads")
            if has_body(request):
                raise InvalidInput("a final upload takes no body: its bytes are those of its partial uploads")
            result = tus.upload_concat(owner=request.user, partial_ids=partial_ids, filename=filename,
                                       filetype=filetype, album=album, metadata=metadata)
            location = request.build_absolute_uri(reverse("tus-upload", args=[result.upload.pk]))
            return Response(status=status.HTTP_201_CREATED, headers={
                "Location": location, "Upload-Length": str(result.upload.length),
                **upload_headers(result.upload, result.media and result.media.pk)})
        length = header_int(request, "Upload-Length", required=True)
        stream = checksum = declared = None
        if has_body(request):
            if request._request.content_type != OFFSET_OCTET_STREAM:
                raise UnsupportedMediaType(f"a creation body must be {OFFSET_OCTET_STREAM}")
            stream, checksum, declared = body_of(request._request), parse_checksum(request), content_length(request)
        result = tus.upload_create(
            owner=request.user, length=length, filename=filename, filetype=filetype, album=album, metadata=metadata,
            stream=stream, checksum=checksum, declared_length=declared, concat=concat, vault=vault,
        )
        location = request.build_absolute_uri(reverse("tus-upload", args=[result.upload.pk]))
        return Response(status=status.HTTP_201_CREATED,
                        headers={"Location": location, **upload_headers(result.upload, result.media and result.media.pk)})


class UploadResource(TusView):
    """HEAD tells the offset, PATCH appends, DELETE terminates."""

    @extend_schema(summary="tus: the upload's offset", parameters=[TUS_RESUMABLE],
                   responses={200: OpenApiResponse(description="Upload-Offset and Upload-Length headers")})
    def head(self, request, upload_id):
        upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.TUS)
        vault = keys.unlocked_for(request) if is_vault(upload) else None
        if upload.awaits_completion and not is_leased(upload) and (vault is not None or not is_vault(upload)):
            # Every byte is here but completion was cut short (a crash): finish it now.
            try:
                upload = tus.upload_finish(upload=upload, vault=vault).upload
            except UploadBusy:
                pass
        headers = {**upload_headers(upload), "Upload-Length": str(upload.length), "Cache-Control": "no-store",
                   **concat_headers(request, upload)}
        if upload.metadata and not is_vault(upload):  # a vault upload's is sealed
            headers["Upload-Metadata"] = encode_metadata(upload.metadata)
        return Response(status=status.HTTP_200_OK, headers=headers)

    @extend_schema(
        summary="tus: append bytes at Upload-Offset", request={OFFSET_OCTET_STREAM: OpenApiTypes.BINARY},
        parameters=[TUS_RESUMABLE,
                    OpenApiParameter("Upload-Offset", OpenApiTypes.INT, OpenApiParameter.HEADER, required=True),
                    OpenApiParameter("Upload-Checksum", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="`sha1|md5|sha256 base64(digest)`; a mismatch is 460")],
        responses={204: OpenApiResponse(description="Upload-Offset is the new offset; Media-Id once complete"),
                   409: OpenApiResponse(description="the offset is not the upload's, or another PATCH holds it"),
                   460: OpenApiResponse(description="checksum mismatch: the chunk was discarded")})
    def patch(self, request, upload_id):
        upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.TUS)
        if upload.concat == Upload.Concat.FINAL:  # 403 whatever the body, as the protocol says
            raise FinalUploadReadOnly("a final upload is made of its partial uploads; it takes no PATCH")
        if request._request.content_type != OFFSET_OCTET_STREAM:
            raise UnsupportedMediaType(f"PATCH bodies must be {OFFSET_OCTET_STREAM}")
        offset = header_int(request, "Upload-Offset", required=True)
        vault = require_unlocked(request) if is_vault(upload) else None
        result = tus.upload_append(upload=upload, offset=offset, stream=body_of(request._request),
                                   checksum=parse_checksum(request), declared_length=content_length(request),
                                   vault=vault)
        return Response(status=status.HTTP_204_NO_CONTENT,
                        headers=upload_headers(result.upload, result.media and result.media.pk))

    @extend_schema(summary="tus termination", parameters=[TUS_RESUMABLE], responses={204: None})
    def delete(self, request, upload_id):
        upload = upload_get_for(user=request.user, upload_id=upload_id, kind=Upload.Kind.TUS)
        upload_terminate(upload=upload)
        return Response(status=status.HTTP_204_NO_CONTENT)
