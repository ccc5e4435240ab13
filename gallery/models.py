"""The gallery's data: users with quotas, media and their variants, albums, tags, API keys, jobs.

Fields, constraints and cheap properties only; writes go through gallery.services.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models import Q
from django.utils import timezone


def _default_plan() -> str:
    return settings.DEFAULT_PLAN


def _default_quota() -> int:
    # Migration 0001 refers to it (the quota before plans).
    return settings.QUOTA_PLANS[settings.DEFAULT_PLAN]


def zone_named(name: str | None) -> ZoneInfo:
    """The time zone of that name; UTC for none or an unknown one."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def capture_day(taken_at: datetime, offset_minutes: int | None, zone_name: str | None) -> date:
    """The calendar day of capture in its local time: by the recorded offset, else by the
    owner's zone (`zone_name`) at the time this is computed (see docs/architecture.md)."""
    if offset_minutes is not None:
        return taken_at.astimezone(dt_timezone(timedelta(minutes=offset_minutes))).date()
    return taken_at.astimezone(zone_named(zone_name)).date()


def new_media_token() -> str:
    # 128 random bits, URL-safe: the unguessable part of every delivery URL.
    return secrets.token_urlsafe(16)


class ChipmunkUserManager(UserManager):
    """Django's user manager, nothing more: creating a user has no side effects here (the
    Favourites album is made by gallery.services.library.favourites_for). The name stays
    because migration 0001 refers to it."""


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.CharField(max_length=32, default=_default_plan,
                            help_text="a name from QUOTA_PLANS; the quota follows it")
    personal_quota_bytes = models.BigIntegerField(
        null=True, blank=True, verbose_name="personal quota (bytes)",
        help_text="set by an admin, it replaces the plan's quota; empty: the plan decides")
    used_bytes = models.BigIntegerField(default=0, editable=False)
    reserved_bytes = models.BigIntegerField(default=0, editable=False)
    time_zone = models.CharField(max_length=64, default="UTC")

    objects = ChipmunkUserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(used_bytes__gte=0), name="user_used_bytes_non_negative"),
            models.CheckConstraint(condition=Q(reserved_bytes__gte=0), name="user_reserved_bytes_non_negative"),
        ]

    @property
    def quota_bytes(self) -> int:
        """The personal quota if an admin set one, else the plan's (the default plan's for a
        plan QUOTA_PLANS no longer names)."""
        if self.personal_quota_bytes is not None:
            return self.personal_quota_bytes
        plans = settings.QUOTA_PLANS
        return plans.get(self.plan, plans[settings.DEFAULT_PLAN])

    @property
    def free_bytes(self) -> int:
        return max(0, self.quota_bytes - self.used_bytes - self.reserved_bytes)


# In the library: what an owner browses and a share may show (trash and vault are apart).
IN_LIBRARY = Q(trashed_at__isnull=True, in_vault=False)


class MediaQuerySet(models.QuerySet):
    def owned_by(self, user) -> MediaQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)

    def visible_to(self, user, *, vault=None) -> MediaQuerySet:
        """The one rule for who may see a media, used by every door (API, delivery, web pages,
        websocket, search): the user's own library, neither trashed nor in the vault; and
        their vault items too when `vault` is the unlock of the credential asking
        (gallery.vault.keys.Unlocked, only ever made from a key that opened the vault). Share
        links widen it in shared_by below; nowhere else."""
        if vault is not None and getattr(user, "pk", None) is not None and vault.user_id == user.pk:
            return self.owned_by(user).filter(trashed_at__isnull=True)
        return self.owned_by(user).filter(IN_LIBRARY)

    def shared_by(self, share) -> MediaQuerySet:
        """The other half of the rule: what a share link (gallery.models_sharing.Share) shows to
        anyone who holds it. A live share only (not revoked, not expired); its media or the
        album's current media, of the share's owner, never trashed or vault items. Whether the
        caller may use the link (its password) is asked before this, by gallery.sharing."""
        if share is None or not share.is_live():
            return self.none()
        qs = self.filter(IN_LIBRARY, owner_id=share.owner_id)
        if share.media_id is not None:
            return qs.filter(pk=share.media_id)
        return qs.filter(albums__id=share.album_id)

    def same_bytes(self, *, owner_id, sha256: str, vault: bool = False) -> MediaQuerySet:
        """The owner's media known to have these bytes, oldest first: what dedup resolves an
        upload to, in the library or (`vault`) in the vault, never across the two (vault rows
        hold a keyed digest, not the SHA-256). A direct upload's SHA-256 is only the client's
        claim until verify_direct_upload checks it, so an `uploading` media never counts as a copy."""
        return (self.filter(owner_id=owner_id, sha256=sha256, in_vault=vault).exclude(status=Media.Status.UPLOADING)
                .order_by("created_at"))

    def timeline(self) -> MediaQuerySet:
        return self.order_by("-taken_at", "-id")

    def hidden_from_library(self) -> MediaQuerySet:
        """Rows visible_to leaves out of every owner's library (trashed or in the vault): its
        complement among an owner's rows, so a count over a set of members is "all of them
        minus these" through a small partial index (media_hidden), not a read of each row.
        Keep it the exact complement of visible_to's filter."""
        return self.filter(Q(trashed_at__isnull=False) | Q(in_vault=True))

    def trashed_for(self, user) -> MediaQuerySet:
        """The owner's trash (what DELETE moved there; vault items are never listed here)."""
        return self.owned_by(user).filter(trashed_at__isnull=False, in_vault=False)

    def visible_count(self, user, *, kind: str | None = None) -> int:
        """How many media visible_to(user) has (of one kind), from the counters kept exact in
        the transactions that change them: no scan of the library, whatever its size."""
        if not getattr(user, "is_authenticated", False):
            return 0
        return sum(count for (count,) in self.visible_count_rows(user, kind=kind))

    def visible_count_rows(self, user, *, kind: str | None = None):
        """visible_count's counters (one row a kind, at most five), as (count,) rows: a query
        a door may compile once (media_api's list)."""
        rows = KindUsage.objects.filter(owner=user, place=KindUsage.Place.LIBRARY)
        if kind is not None:
            rows = rows.filter(kind=kind)
        return rows.values_list("count")


class Media(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image"
        VIDEO = "video"
        AUDIO = "audio"
        DOCUMENT = "document"
        OTHER = "other"

    class Status(models.TextChoices):
        UPLOADING = "uploading"
        PENDING = "pending"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER)
    original_filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127, default="application/octet-stream")
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, default="")

    # When the picture was taken. Stored in UTC; the offset at the place of capture is kept
    # apart so the API can show local time. Until processing knows better it is the upload time.
    taken_at = models.DateTimeField(default=timezone.now)
    taken_at_offset_minutes = models.SmallIntegerField(null=True, blank=True)
    taken_at_estimated = models.BooleanField(default=True)
    # Set by an edit (gallery.services.edits): processing again never overwrites these.
    taken_at_manual = models.BooleanField(default=False)
    location_manual = models.BooleanField(default=False)
    # The local day and month of capture (capture_day), kept by every write of taken_at:
    # the timeline's buckets and their pages read these through the indexes below.
    taken_day = models.DateField(null=True, blank=True)
    taken_month = models.DateField(null=True, blank=True, help_text="the first day of taken_day's month")
    description = models.TextField(blank=True, default="")

    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    altitude = models.FloatField(null=True, blank=True)
    place_city = models.CharField(max_length=200, blank=True, default="")
    place_region = models.CharField(max_length=200, blank=True, default="")
    place_country = models.CharField(max_length=200, blank=True, default="")
    camera_make = models.CharField(max_length=100, blank=True, default="")
    camera_model = models.CharField(max_length=100, blank=True, default="")
    exif = models.JSONField(default=dict, blank=True)
    # Kind-specific facts that do not deserve columns (codecs, fps, audio tags, ...).
    details = models.JSONField(default=dict, blank=True)

    trashed_at = models.DateTimeField(null=True, blank=True)
    in_vault = models.BooleanField(default=False)
    original_key = models.CharField(max_length=512, blank=True, default="")
    token = models.CharField(max_length=32, unique=True, default=new_media_token, editable=False)

    tags = models.ManyToManyField("Tag", blank=True, related_name="media")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MediaQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "media"
        indexes = [
            models.Index(fields=["owner", "-taken_at", "-id"], name="media_owner_timeline"),
            # The library's timeline (what visible_to lists), without trashed and vault rows.
            models.Index(fields=["owner", "-taken_at", "-id"], name="media_library_timeline",
                         condition=Q(trashed_at__isnull=True, in_vault=False)),
            # A timeline bucket's page: one range of these, already in (taken_at, id) order.
            models.Index(fields=["owner", "taken_month", "-taken_at", "-id"], name="media_library_month",
                         condition=Q(trashed_at__isnull=True, in_vault=False)),
            models.Index(fields=["owner", "taken_day", "-taken_at", "-id"], name="media_library_day",
                         condition=Q(trashed_at__isnull=True, in_vault=False)),
            # What the trash lists and the purge finds.
            models.Index(fields=["owner", "-taken_at", "-id"], name="media_trash",
                         condition=Q(trashed_at__isnull=False)),
            models.Index(fields=["trashed_at"], name="media_trashed_at", condition=Q(trashed_at__isnull=False)),
            models.Index(fields=["owner", "id"], name="media_hidden", condition=Q(trashed_at__isnull=False) | Q(in_vault=True)),
            models.Index(fields=["owner", "sha256"], name="media_owner_sha256"),
            models.Index(fields=["status"], name="media_status"),
            # Every owner's media by date: the admin's list, its date hierarchy (gallery.admin.paging).
            models.Index(fields=["taken_at", "id"], name="media_taken_at"),
        ]

    def __str__(self) -> str:
        return f"{self.original_filename} ({self.kind}, {self.status})"

    def set_capture_day(self, zone_name: str | None) -> None:
        """Set taken_day and taken_month from taken_at (and its offset, else `zone_name`)."""
        self.taken_day = capture_day(self.taken_at, self.taken_at_offset_minutes, zone_name)
        self.taken_month = self.taken_day.replace(day=1)

    def taken_at_local(self) -> datetime:
        """taken_at in the local time of capture: the recorded offset, else the owner's zone."""
        if self.taken_at_offset_minutes is not None:
            return self.taken_at.astimezone(dt_timezone(timedelta(minutes=self.taken_at_offset_minutes)))
        return self.taken_at.astimezone(zone_named(self.owner.time_zone))

    @property
    def grid_variant(self) -> Variant | None:
        """The square thumbnail the grid shows (reads prefetched variants when there are)."""
        by_level = {v.level: v for v in self.variants.all()}
        return by_level.get("3s") or by_level.get("3")

    @property
    def place(self) -> str:
        return ", ".join(p for p in (self.place_city, self.place_region, self.place_country) if p)

    @property
    def camera(self) -> str:
        make, model = self.camera_make.strip(), self.camera_model.strip()
        # Many cameras repeat the make in the model ("Canon" / "Canon EOS 40D").
        if make and model.lower().startswith(make.lower()):
            return model
        return " ".join(p for p in (make, model) if p)


class KindUsage(models.Model):
    """Per user, kind and place (library, trash, vault): how many media and how many bytes.

    Kept exact by gallery.services.media in the same transaction as the rows they count, so
    counts and usage never scan the media table (a million rows cost a COUNT of seconds)."""

    class Place(models.TextChoices):
        LIBRARY = "library"
        TRASH = "trash"
        VAULT = "vault"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kind_usage")
    kind = models.CharField(max_length=16, choices=Media.Kind.choices)
    place = models.CharField(max_length=8, choices=Place.choices, default=Place.LIBRARY)
    count = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "kind", "place"], name="kind_usage_unique")]

    def __str__(self) -> str:
        return f"{self.owner_id} {self.kind}/{self.place}: {self.count} ({self.bytes} bytes)"

    @classmethod
    def place_of(cls, media: Media) -> str:
        if media.in_vault:
            return cls.Place.VAULT
        return cls.Place.TRASH if media.trashed_at is not None else cls.Place.LIBRARY


class Variant(models.Model):
    """A derived file of a media (thumbnail level, square crop, poster, transcode)."""

    media = models.ForeignKey(Media, on_delete=models.CASCADE, related_name="variants")
    level = models.CharField(max_length=16)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=127)
    storage_key = models.CharField(max_length=512)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["media", "level"], name="variant_unique_media_level")]

    def __str__(self) -> str:
        return f"{self.media_id} level {self.level}"


class Album(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="albums")
    title = models.CharField(max_length=200)
    cover = models.ForeignKey(Media, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    is_favourites = models.BooleanField(default=False, editable=False)
    media = models.ManyToManyField(Media, blank=True, related_name="albums", through="AlbumItem")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner"], condition=Q(is_favourites=True), name="album_one_favourites_per_user"
            )
        ]

    def __str__(self) -> str:
        return self.title


class AlbumItem(models.Model):
    """A media in an album (Album.media's table), with a copy of the media's taken_at: an
    album's page, newest first, is one range of album_item_timeline, however large the album.
    Rows are added by gallery.services.library.album_items_add; every write of a media's
    taken_at also calls gallery.services.timeline.album_items_retime, in its transaction."""

    album = models.ForeignKey(Album, on_delete=models.CASCADE, related_name="items")
    media = models.ForeignKey(Media, on_delete=models.CASCADE, related_name="album_items")
    taken_at = models.DateTimeField()

    class Meta:
        db_table = "gallery_album_media"  # the table of the auto-created M2M it replaced (migration 0010)
        unique_together = [("album", "media")]
        indexes = [models.Index(fields=["album", "-taken_at", "-media"], name="album_item_timeline")]

    def __str__(self) -> str:
        return f"{self.media_id} in album {self.album_id}"


def tag_key(name: str) -> str:
    """What makes two tag names the same: spaces trimmed and collapsed, case folded."""
    return " ".join(name.split()).casefold()


class Tag(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)
    # tag_key(name): unique per owner, so names differing only in case are one tag (Python's
    # casefold, not the database's LOWER, which SQLite applies to ASCII only).
    key = models.CharField(max_length=100, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="tag_unique_owner_key")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # The key always follows the name, whoever makes the row (services, admin, tests).
        self.key = tag_key(self.name)
        super().save(*args, **kwargs)


class Identity(models.Model):
    """A user's account at an OpenID provider: (issuer, sub) names it, never the e-mail."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="identity_issuer_subject_unique")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class ApiKey(models.Model):
    """A bearer credential for the API. Only the SHA-256 of the secret is stored."""

    SCOPES = ("media.read", "media.read_write")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Job(models.Model):
    """A durable background job; see gallery.jobs for the lease/retry rules."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    name = models.CharField(max_length=100)
    queue = models.CharField(max_length=32, default="default")
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    run_after = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=100, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["queue", "state", "run_after"], name="job_claim")]

    def __str__(self) -> str:
        return f"{self.name} {self.payload} [{self.state}]"


class UploadQuerySet(models.QuerySet):
    def owned_by(self, user) -> UploadQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class Upload(models.Model):
    """An upload in flight: tus (the bytes pass through us) or direct (the client PUTs to S3).

    The row is the whole state, so any web process can continue any upload. `length` bytes
    are reserved against the owner's quota from creation until the upload leaves `active`
    (completed, terminated, expired, failed); that transition happens under this row's lock,
    so a reservation is released exactly once. A PATCH holds the lease (lease_token,
    lease_until) while it streams, which is what keeps two PATCHes from interleaving bytes.

    tus concatenation: a *partial* upload makes no media; once complete it stays active
    (holding its bytes and its reservation) until a *final* upload takes it or it expires.
    Creating the final moves the partials' reservations to it: they become completed
    without releasing anything, and the final (active, every byte "arrived") holds the sum.
    """

    class Kind(models.TextChoices):
        TUS = "tus"
        DIRECT = "direct"

    class State(models.TextChoices):
        ACTIVE = "active"
        COMPLETED = "completed"
        TERMINATED = "terminated"
        EXPIRED = "expired"
        FAILED = "failed"

    class Concat(models.TextChoices):
        NONE = "", "none"
        PARTIAL = "partial"
        FINAL = "final"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TUS)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    filename = models.CharField(max_length=255)
    filetype = models.CharField(max_length=127, blank=True, default="")
    album = models.ForeignKey(Album, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The id the media gets if this upload creates one, and the key its original will have.
    new_media_id = models.UUIDField(default=uuid.uuid4, editable=False)
    target_key = models.CharField(max_length=512)
    # Local disk: the part file bytes are appended to. S3: unused (parts go to target_key).
    part_key = models.CharField(max_length=512, blank=True, default="")
    s3_upload_id = models.CharField(max_length=1024, blank=True, default="")
    part_size = models.BigIntegerField(default=0)
    # Uploaded S3 parts: [{"number": 1, "etag": "...", "size": 8388608}, ...]
    parts = models.JSONField(default=list, blank=True)
    # S3: the bytes after the last full part, kept as an object until the next PATCH.
    tail_key = models.CharField(max_length=512, blank=True, default="")
    tail_size = models.BigIntegerField(default=0)
    # tus: the SHA-256 of the bytes once complete. Direct: what the client claimed.
    sha256 = models.CharField(max_length=64, blank=True, default="")
    concat = models.CharField(max_length=8, choices=Concat.choices, blank=True, default=Concat.NONE)
    # A final upload: its partials in order, [{"id": "...", "key": "...", "size": 123}, ...],
    # so it can be assembled (and its partials' bytes deleted) from this row alone.
    partials = models.JSONField(default=list, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, default="", editable=False)
    lease_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    media = models.ForeignKey(Media, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UploadQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["state", "expires_at"], name="upload_state_expiry")]
        constraints = [
            models.CheckConstraint(condition=Q(offset__gte=0) & Q(offset__lte=models.F("length")),
                                   name="upload_offset_within_length"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} upload {self.filename} {self.offset}/{self.length} [{self.state}]"

    @property
    def is_complete(self) -> bool:
        return self.offset == self.length

    @property
    def survives_expiry(self) -> bool:
        """Every byte of an upload that becomes media arrived: past its expiry it is finished,
        not thrown away. A partial only waits for a final upload, so it expires like any other, and
        so does a vault upload: only its owner's unlocked credential can finish it."""
        return self.is_complete and self.concat != self.Concat.PARTIAL and not (self.metadata or {}).get("vault")

    @property
    def awaits_completion(self) -> bool:
        """Active with every byte here but not finished (its completion was cut short). A
        partial is finished once its bytes are one blob: on S3, its multipart upload completed."""
        if self.state != self.State.ACTIVE or not self.is_complete:
            return False
        return self.concat != self.Concat.PARTIAL or bool(self.s3_upload_id)


from gallery.models_export import Export  # noqa: E402,F401
from gallery.models_sharing import Share  # noqa: E402,F401
from gallery.models_sync import MediaChange, SyncClock  # noqa: E402,F401
from gallery.models_timeline import TimelineDay  # noqa: E402,F401
from gallery.models_vault import VaultItem, VaultKeyring  # noqa: E402,F401
