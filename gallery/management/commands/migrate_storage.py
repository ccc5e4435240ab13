from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.template.defaultfilters import filesizeformat

from config.settings import local_storage_config, s3_storage_config
from gallery.management.progress import OperationsCommand
from gallery.models import Media, Variant
from gallery.operations.migrate import describe, journal_path, storage_migrate, target_storage
from gallery.storage import STORAGE_ERRORS, media_storage, s3_client


class Command(OperationsCommand):
    help = ("Copy every blob of the configured storage to another one under the same keys, check each copy "
            "(size; SHA-256 for originals) and print the settings to switch to. Resumable; safe while the "
            "server runs. migrate_storage --to s3 [--s3-bucket B ...] | --to local [--data-dir PATH]")

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, choices=["s3", "local"])
        parser.add_argument("--s3-endpoint-url", default=None, help="default: S3_ENDPOINT_URL")
        parser.add_argument("--s3-bucket", default=None, help="default: S3_BUCKET")
        parser.add_argument("--s3-region", default=None, help="default: S3_REGION")
        parser.add_argument("--s3-access-key-id", default=None, help="default: S3_ACCESS_KEY_ID")
        parser.add_argument("--s3-secret-access-key", default=None, help="default: S3_SECRET_ACCESS_KEY")
        parser.add_argument("--data-dir", default=None,
                            help="local target: a data dir, blobs go to its media/ folder (default: CHIPMUNK_DATA_DIR)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be copied; write nothing")

    def handle(self, *args, to, dry_run, **options):
        target, switch = self._target(to, options)
        source = media_storage()
        try:
            if describe(source) == describe(target):
                self.fail(f"the target is the configured storage itself ({describe(source)}): nothing to do")
        except STORAGE_ERRORS as exc:
            self.fail(f"cannot reach the storage: {exc}")
        self.say(f"from {describe(source)}\nto   {describe(target)}")
        total = Media.objects.exclude(original_key="").count() + Variant.objects.count()
        with self.progress(total=total, label="copying") as bar:
            try:
                report = storage_migrate(source=source, target=target, dry_run=dry_run,
                                         journal=journal_path(target), on_blob=lambda blob: bar.advance(nbytes=blob.size))
            except STORAGE_ERRORS as exc:
                self.fail(f"the storage failed: {exc}")
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        if dry_run:
            for key in report.would_copy:
                self.say(f"would copy\t{key}")
            self.say(f"{len(report.would_copy)} blobs would be copied (dry run: nothing written)")
            return
        for problem in report.problems:
            self.stderr.write(problem)
        self.say(f"copied {report.copied} blobs ({filesizeformat(report.copied_bytes)}), {report.skipped} already "
                 f"there and checked, in {report.passes} pass(es)")
        if report.problems:
            self.fail(f"{len(report.problems)} blob(s) not copied or not matching; fix them and run again "
                      "(what was checked is skipped)")
        self.say("Every blob is on the target and checked. To switch, set these and restart the web and worker "
                 "processes (for no gap at all: stop them, run this command once more, then switch):")
        for line in switch:
            self.say(f"  {line}")

    def _target(self, to: str, options: dict):
        if to == "local":
            data_dir = Path(options["data_dir"] or settings.DATA_DIR).resolve()
            switch = ["STORAGE_BACKEND=local", f"CHIPMUNK_DATA_DIR={data_dir}"]
            if data_dir != Path(settings.DATA_DIR).resolve():
                switch.append(f"(the data dir also holds secret_key{' and the SQLite database' if _sqlite() else ''}"
                              f": copy them from {settings.DATA_DIR} to {data_dir})")
            return target_storage(local_storage_config(data_dir / "media")), switch
        opt = {name: options[f"s3_{name}"] for name in ("endpoint_url", "bucket", "region", "access_key_id",
                                                        "secret_access_key")}
        endpoint = opt["endpoint_url"] if opt["endpoint_url"] is not None else settings.S3_ENDPOINT_URL
        bucket = opt["bucket"] or settings.S3_BUCKET
        region = opt["region"] or settings.S3_REGION
        access_key = opt["access_key_id"] or settings.S3_ACCESS_KEY_ID
        secret_key = opt["secret_access_key"] or settings.S3_SECRET_ACCESS_KEY
        if not (access_key and secret_key and bucket):
            self.fail("an S3 target needs a bucket and keys: --s3-bucket, --s3-access-key-id and "
                      "--s3-secret-access-key (or S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY)")
        target = target_storage(s3_storage_config(bucket=bucket, endpoint_url=endpoint, region=region,
                                                  access_key=access_key, secret_key=secret_key))
        try:
            s3_client(target).head_bucket(Bucket=bucket)
        except STORAGE_ERRORS as exc:
            self.fail(f"cannot use the bucket {bucket!r} at {endpoint or 'AWS'}: {exc} (create it first)")
        switch = ["STORAGE_BACKEND=s3", f"S3_ENDPOINT_URL={endpoint}", f"S3_BUCKET={bucket}", f"S3_REGION={region}",
                  f"S3_ACCESS_KEY_ID={access_key}", "S3_SECRET_ACCESS_KEY=<the secret key you gave>"]
        return target, switch


def _sqlite() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
