"""The job queue and the uploads in flight."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.timesince import timesince

from gallery import jobs
from gallery.admin.paging import CheapCountPaginator
from gallery.models import Job, Upload
from gallery.uploads.cleanup import uploads_expire


def _age(when) -> str:
    return timesince(when, timezone.now()) if when else "—"


class JobNameFilter(admin.SimpleListFilter):
    # From the registered handlers, not a DISTINCT over the table.
    title = "name"
    parameter_name = "name"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(jobs._REGISTRY)]

    def queryset(self, request, queryset):
        return queryset.filter(name=self.value()) if self.value() else queryset


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "queue", "state", "attempts_display", "age", "run_after", "worker", "error_line")
    list_filter = ("state", "queue", JobNameFilter)
    readonly_fields = [f.name for f in Job._meta.fields]
    ordering = ("-id",)
    actions = ["retry", "cancel"]
    show_full_result_count = False
    paginator = CheapCountPaginator

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="attempts")
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="age", ordering="created_at")
    def age(self, job: Job) -> str:
        return _age(job.created_at)

    @admin.display(description="last error")
    def error_line(self, job: Job) -> str:
        return job.last_error.splitlines()[0][:120] if job.last_error else ""

    @admin.action(description="Retry failed jobs")
    def retry(self, request, queryset):
        count = jobs.jobs_retry(job_ids=queryset.values_list("pk", flat=True))
        messages.info(request, f"queued {count} failed job(s) again")

    @admin.action(description="Cancel queued jobs")
    def cancel(self, request, queryset):
        count = jobs.jobs_cancel(job_ids=queryset.values_list("pk", flat=True),
                                 reason=f"cancelled by {request.user.get_username()} in the admin")
        messages.info(request, f"cancelled {count} queued job(s)")


class UploadStateFilter(admin.SimpleListFilter):
    """Active uploads unless asked otherwise: those are what an operator looks for."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [*Upload.State.choices, ("all", "all")]

    def choices(self, changelist):
        for value, label in self.lookup_choices:
            selected = self.value() == value or (self.value() is None and value == Upload.State.ACTIVE)
            yield {"selected": selected, "query_string": changelist.get_query_string({self.parameter_name: value}),
                   "display": label}

    def queryset(self, request, queryset):
        value = self.value() or Upload.State.ACTIVE
        return queryset if value == "all" else queryset.filter(state=value)


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "kind", "state", "filename", "received", "age", "idle", "expires_at", "receiving")
    list_select_related = ("owner",)
    list_filter = (UploadStateFilter, "kind", "concat")
    search_fields = ("filename", "owner__username", "sha256")
    readonly_fields = [f.name for f in Upload._meta.fields]
    ordering = ("-created_at",)
    actions = ["expire"]
    show_full_result_count = False
    paginator = CheapCountPaginator

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a row would leak its reservation and its bytes; expire it instead.
        return False


    @admin.display(description="received", ordering="offset")
    def received(self, upload: Upload) -> str:
        share = round(100 * upload.offset / upload.length) if upload.length else 100
        return f"{filesizeformat(upload.offset)} of {filesizeformat(upload.length)} ({share}%)"

    @admin.display(description="age", ordering="created_at")
    def age(self, upload: Upload) -> str:
        return _age(upload.created_at)

    @admin.display(description="idle for", ordering="updated_at")
    def idle(self, upload: Upload) -> str:
        return _age(upload.updated_at)

    @admin.display(description="receiving now", boolean=True)
    def receiving(self, upload: Upload) -> bool:
        return bool(upload.lease_until and upload.lease_until > timezone.now())

    @admin.action(description="Expire (release the reservation, delete the bytes)")
    def expire(self, request, queryset):
        expired, busy = uploads_expire(upload_ids=queryset.values_list("pk", flat=True))
        messages.info(request, f"expired {expired} upload(s)" + (
            f"; {busy} receiving bytes right now were left alone" if busy else ""))
