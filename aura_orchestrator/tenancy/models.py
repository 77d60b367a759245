import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def validate_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{name!r} is not an IANA time zone (e.g. Europe/Paris).") from exc


class Project(models.Model):
    """A tenant: one service or team. Sessions, cache entries and statistics belong to it."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="Where this project's days, weeks and months of spend budgets begin.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A service key. Only a SHA-256 of the key is stored; the prefix identifies it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The key a rotation replaced, still accepted until `previous_valid_until` (the grace
    # period in which its callers move to the new one). One generation: a second rotation
    # within the grace ends the older key at once.
    previous_prefix = models.CharField(
        max_length=16, unique=True, null=True, blank=True, editable=False
    )
    previous_hashed_key = models.CharField(max_length=64, blank=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["project__name", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    @property
    def in_grace(self) -> bool:
        """Whether the key a rotation replaced is still accepted."""
        until = self.previous_valid_until
        return until is not None and until > timezone.now()
