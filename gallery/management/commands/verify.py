from __future__ import annotations

import json

from django.core.management.base import CommandError

from gallery.management.progress import OperationsCommand
from gallery.models import Media, User, Variant
from gallery.operations.verify import fix_hints, orphans_delete, storage_verify
from gallery.storage import STORAGE_ERRORS, media_storage

LABELS = {
    "missing": "rows whose object is missing",
    "orphan": "objects no row knows",
    "size": "size mismatches",
    "checksum": "SHA-256 mismatches of originals",
    "variants": "ready media missing variants",
}


class Command(OperationsCommand):
    help = ("Check that every row has its object and every object its row: missing objects, orphans (older than "
            "UPLOAD_EXPIRY_HOURS), size mismatches, SHA-256 of originals (--checksums), ready media missing "
            "variants. Exit status 1 when anything is found. verify [--user U] [--checksums] [--json] "
            "[--delete-orphans]")

    def add_arguments(self, parser):
        parser.add_argument("--user", help="only this user's rows and objects")
        parser.add_argument("--checksums", action="store_true", help="read every original and check its SHA-256")
        parser.add_argument("--json", action="store_true", help="the report as one JSON document on stdout")
        parser.add_argument("--delete-orphans", action="store_true",
                            help="delete the orphans this run reports (each looked up again first), nothing else")

    def handle(self, *args, user, checksums, delete_orphans, **options):
        owner = None
        if user:
            owner = User.objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"no user named {user!r}")
        storage = media_storage()
        rows = Media.objects.exclude(original_key="")
        variants = Variant.objects.all()
        if owner is not None:
            rows, variants = rows.filter(owner=owner), variants.filter(media__owner=owner)
        with self.progress(total=rows.count() + variants.count(), label="checking") as bar:
            try:
                report = storage_verify(storage=storage, user=owner, checksums=checksums,
                                        on_object=lambda blob: bar.advance(nbytes=blob.size))
                deleted = orphans_delete(storage=storage, findings=report.findings) if delete_orphans else 0
            except STORAGE_ERRORS as exc:
                self.fail(f"the storage failed: {exc}")
        problems = [f for f in report.findings if not (delete_orphans and f.kind == "orphan")]
        if options["json"]:
            self.stdout.write(_json({**report.as_dict(), "orphans_deleted": deleted}))
        else:
            self._print(report, deleted)
        if problems:
            self.fail(f"{len(problems)} problem(s) found")

    def _print(self, report, deleted: int) -> None:
        for finding in report.findings:
            where = " ".join(p for p in (finding.owner, f"media {finding.media}" if finding.media else "") if p)
            self.stderr.write(f"{finding.kind}\t{finding.key}\t{finding.detail}" + (f"\t{where}" if where else ""))
        self.say(f"checked {report.rows} rows and {report.objects} objects"
                 + (f", {report.hashed} originals hashed" if report.hashed else ""))
        for kind, label in LABELS.items():
            self.say(f"  {label}: {len(report.of_kind(kind))}")
        if deleted:
            self.say(f"deleted {deleted} orphan object(s)")
        for hint in fix_hints(report):
            if not (deleted and "--delete-orphans" in hint):
                self.say(f"fix: {hint}")


def _json(data: dict) -> str:
    return json.dumps(data, indent=1, default=str)
