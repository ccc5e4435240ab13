from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import CommandError
from django.template.defaultfilters import filesizeformat

from gallery.management.progress import OperationsCommand
from gallery.models import Media, User
from gallery.operations.export import export_write
from gallery.storage import STORAGE_ERRORS, media_storage


class Command(OperationsCommand):
    help = ("Write a user's library to a zip: originals under YYYY/MM/, a JSON beside each, albums.json. "
            "export USER --out FILE.zip (the vault is not exported)")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--out", required=True, help="the zip to write (replaced when it exists)")

    def handle(self, *args, username, out, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        target = Path(out).resolve()
        if not target.parent.is_dir():
            raise CommandError(f"no folder {target.parent} to write {target.name} in")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as fh, self.progress(total=Media.objects.visible_count(user),
                                                         label="exporting") as bar:
                stats = export_write(user=user, storage=media_storage(), out=fh,
                                     on_media=lambda media: bar.advance(nbytes=media.size))
            os.replace(tmp, target)
        except STORAGE_ERRORS as exc:
            Path(tmp).unlink(missing_ok=True)
            self.fail(f"export of {username} stopped: {exc} (nothing was written to {target})")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.say(f"exported {stats.media} media ({filesizeformat(stats.bytes)}) of {username} to {target}")
        if stats.missing:
            self.fail(f"{len(stats.missing)} original(s) missing from the storage, listed in missing.json "
                      "(see manage.py verify)")
