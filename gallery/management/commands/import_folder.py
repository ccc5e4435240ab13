from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from gallery.exceptions import ChipmunkError
from gallery.models import User
from gallery.services.media import media_ingest


class Command(BaseCommand):
    help = "Import every file of a folder into a user's library (duplicates are skipped)."

    def add_arguments(self, parser):
        parser.add_argument("folder")
        parser.add_argument("--user", required=True)
        parser.add_argument("--no-recursive", action="store_true", help="only the folder itself")

    def handle(self, *args, folder, user, no_recursive, **options):
        root = Path(folder)
        if not root.is_dir():
            raise CommandError(f"{folder} is not a folder")
        owner = User.objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        files = sorted(p for p in (root.glob("*") if no_recursive else root.rglob("*")) if p.is_file())
        counts = {"imported": 0, "duplicate": 0, "error": 0}
        for path in files:
            try:
                with open(path, "rb") as fh:
                    stat = os.fstat(fh.fileno())
                    result = media_ingest(owner=owner, stream=fh, size=stat.st_size, filename=path.name,
                                          file_modified_at=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc))
            except ChipmunkError as exc:
                counts["error"] += 1
                self.stderr.write(f"error\t{path}\t{exc.detail}")
                if exc.code == "quota_exceeded":
                    break
                continue
            except OSError as exc:
                counts["error"] += 1
                self.stderr.write(f"error\t{path}\t{exc}")
                continue
            status = "imported" if result.created else "duplicate"
            counts[status] += 1
            self.stdout.write(f"{status}\t{path}\t{result.media.pk}")
        self.stdout.write(", ".join(f"{n} {k}" for k, n in counts.items()))
