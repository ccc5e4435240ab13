from __future__ import annotations

from django.apps import AppConfig


class GalleryConfig(AppConfig):
    name = "gallery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.utils.module_loading import autodiscover_modules
        from PIL import Image

        # Job handlers register themselves on import: every app's `tasks` module.
        autodiscover_modules("tasks")

        # Pillow refuses images above twice its own limit before our check can name the
        # limit; align it with ours so MAX_IMAGE_PIXELS is the one rule.
        Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS
