from __future__ import annotations

import secrets
import subprocess
import sys

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.server import uvicorn_options
from gallery.models import User
from gallery.services.accounts import user_create


class Command(BaseCommand):
    help = "Serve Chipmunk (uvicorn, ASGI) on BIND_ADDRESS:PORT, with the job worker beside it."

    def add_arguments(self, parser):
        parser.add_argument("--no-worker", action="store_true", help="do not start the worker (compose runs it)")

    def handle(self, *args, no_worker, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self._first_admin()
        worker = None
        if settings.RUN_WORKER and not no_worker:
            # A process of its own: a crash or a long video never stalls the web server.
            worker = subprocess.Popen([sys.executable, "manage.py", "worker"], cwd=settings.BASE_DIR)
        self.stdout.write(f"Chipmunk on http://{settings.BIND_ADDRESS}:{settings.PORT}/ "
                          f"(data in {settings.DATA_DIR})", ending="\n")
        self.stdout.flush()
        try:
            uvicorn.run("config.asgi:application",
                        **uvicorn_options(host=settings.BIND_ADDRESS, port=settings.PORT, workers=settings.WEB_WORKERS))
        finally:
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()

    def _first_admin(self) -> None:
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        user_create(username="admin", password=password, is_staff=True, is_superuser=True)
        self.stdout.write(self.style.WARNING(
            f"Created the first admin account. Log in as  admin  with password  {password}\n"
            "This password is shown only once; change it in the admin."))
