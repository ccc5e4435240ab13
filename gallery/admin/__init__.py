"""The Django admin, where an operator looks first: one module per area.

media (the library, thumbnails through a staff-only view), users (plans, quotas, usage),
queue (jobs and uploads), library (albums, tags, API keys, exports). Every changelist makes
a constant number of queries (tests/gallery/test_admin.py) and counts rows cheaply
(gallery.admin.paging), so it stays fast on a large library.
"""

from gallery.admin import library, media, queue, users  # noqa: F401
