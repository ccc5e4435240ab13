from __future__ import annotations

from django.core.management.base import BaseCommand

from gallery.uploads.cleanup import uploads_cleanup


class Command(BaseCommand):
    help = ("Expire abandoned uploads (tus and direct): abort their S3 multipart uploads, delete staged "
            "parts, release their quota reservations; finish uploads whose bytes all arrived; sweep "
            "orphan upload blobs. Live uploads are never touched. The worker runs this periodically.")

    def handle(self, *args, **options):
        report = uploads_cleanup()
        self.stdout.write(f"expired {report.expired}, completed {report.completed}, orphan blobs removed "
                          f"{report.orphans}, old rows forgotten {report.rows_deleted}")
        for error in report.errors:
            self.stderr.write(error)
