"""Organizations (the tenants), their Linear and Confluence OAuth tokens, and the admin operators."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.fernet import InvalidToken
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models.functions import Now
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.fields import SERIALIZED_PREFIX, EncryptedTokenField, EncryptedValue, TokenDecryptionError
from accounts.validation import clean_aware_datetime, clean_identifier, clean_text
from config.db import CompiledQuery, upsert_one

logger = logging.getLogger(__name__)

__all__ = [
    "ConfluenceToken",
    "LinearToken",
    "Organization",
    "OrganizationMembership",
    "TokenDecryptionError",
    "TokenRefreshError",
    "TokenStatus",
    "User",
]


class User(AbstractUser):
    """An operator of the admin console.

    A project-owned user model from the start, as Django recommends, so that fields can be added later
    without a painful swap. It adds nothing yet.
    """

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class OrganizationManager(models.Manager["Organization"]):
    """``Organization.objects``: the lookup every write makes, compiled once per connection."""

    # config.db.CompiledQuery: building and compiling this lookup took longer than its round trip on
    # every token store and every write that names an organization (benchmarks/hot_paths.py).
    _by_linear_id_query: CompiledQuery[Organization] = CompiledQuery(
        lambda linear_id: Organization._base_manager.filter(linear_id=linear_id).order_by()[:1],
        arguments=1,
    )

    def by_linear_id(self, linear_id: Any) -> Organization | None:
        """The organization with this Linear organization id, or ``None``."""
        linear_id = clean_identifier(linear_id, "organization_id")
        rows = self._by_linear_id_query(linear_id, using=self.db)  # linear_id is unique: 0 or 1 row
        return rows[0] if rows else None

    def ensure(self, linear_id: Any, *, name: str = "") -> Organization:
        """Return the organization with this Linear organization id, creating it on first use.

        Race-safe: ``get_or_create`` (for a new id) is backed by the unique constraint on ``linear_id``.
        """
        linear_id = clean_identifier(linear_id, "organization_id")
        manager = self.db_manager(self._db or router.db_for_write(self.model, **self._hints))
        found = manager.by_linear_id(linear_id)
        return found or manager.get_or_create(linear_id=linear_id, defaults={"name": name})[0]


class Organization(models.Model):
    """The tenant: a Linear workspace, addressed everywhere by its Linear organization id."""

    linear_id = models.CharField(
        "Linear organization id",
        max_length=255,
        help_text="The Linear organization id agent code uses to address this tenant.",
    )
    name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationManager()

    class Meta:
        ordering = ["linear_id"]
        constraints = [
            models.UniqueConstraint(fields=["linear_id"], name="accounts_organization_linear_id_uniq"),
            models.CheckConstraint(
                condition=~models.Q(linear_id=""), name="accounts_organization_linear_id_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.linear_id


class OrganizationMembership(models.Model):
    """Limits a staff user to an organization (see :mod:`accounts.tenancy`).

    A staff user with no membership sees every organization (today's behaviour); one with memberships
    sees only those organizations' rows in the admin and on the dashboard. Superusers are never limited.
    """

    user = models.ForeignKey(
        "accounts.User", on_delete=models.CASCADE, related_name="organization_memberships"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"], name="accounts_membership_user_org_uniq"
            ),
        ]
        indexes = [models.Index(fields=["organization"], name="accounts_membership_org_idx")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization}"


# --- OAuth tokens ------------------------------------------------------------------------------

#: Default leeway of :meth:`OAuthToken.is_expired`: a token this close to expiry is treated as expired,
#: so that a request started now does not reach the provider with a token that died on the way.
DEFAULT_EXPIRY_LEEWAY = dt.timedelta(seconds=60)
#: Window of :meth:`OAuthToken.expires_soon` and of the admin's "expiring" state.
EXPIRING_SOON_WINDOW = dt.timedelta(hours=24)

Refresher = Callable[[str], tuple[str, "str | None", dt.datetime]]


class TokenRefreshError(Exception):
    """A token could not be refreshed (no refresh token, or the refresher failed). Never holds a token."""


class TokenStatus(models.TextChoices):
    """Expiry state shown by the admin."""

    NONE = "none", "none"
    EXPIRED = "expired", "expired"
    EXPIRING = "expiring", "expiring within 24h"
    VALID = "valid", "valid"


def clean_token(value: Any, name: str, *, required: bool = True) -> str | None:
    """Return a token string, or ``None`` for an absent optional token; messages never include the value."""
    if value is None and not required:
        return None
    value = clean_text(value, name)
    if value.startswith(SERIALIZED_PREFIX):
        # That prefix marks ciphertext in dumps; a real token never starts with it.
        raise ValidationError(f"{name} must be the token itself, not serialized ciphertext.", code="invalid")
    return value


class Sealed:
    """Holds token values so that a frame's locals (a DEBUG crash page, a debugger) show no token.

    ``SafeExceptionReporterFilter`` honours ``sensitive_variables`` only with DEBUG off; functions
    that handle tokens keep them in one of these instead of in plain local variables.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<sealed>"

    __str__ = __repr__


@sensitive_variables("access_token", "refresh_token")
def seal_tokens(access_token: Any, refresh_token: Any) -> Sealed:
    """Check an access token and an optional refresh token; return them sealed as a pair."""
    return Sealed(
        (
            clean_token(access_token, "access_token"),
            clean_token(refresh_token, "refresh_token", required=False),
        )
    )


def encrypt_tokens(model: type[models.Model], tokens: Sealed) -> Sealed:
    """The sealed (access, refresh) pair as ciphertext (``EncryptedValue``), as a loaded row holds it."""
    access_field = model._meta.get_field("access_token")
    refresh_field = model._meta.get_field("refresh_token")
    return Sealed(
        (
            EncryptedValue(access_field.encrypt(tokens.value[0])),
            None if tokens.value[1] is None else EncryptedValue(refresh_field.encrypt(tokens.value[1])),
        )
    )


def _store_token(
    manager: models.Manager[Any], linear_id: str, tokens: Sealed, *, key: Sequence[str], **fields: Any
) -> OAuthToken:
    """Both token ``store``s: upsert ``tokens`` and ``fields`` on the row keyed by organization and ``key``.

    The usual store replaces the token of a known organization: the lookup, then the upsert alone, a
    single statement that needs no ``BEGIN``/``COMMIT`` round trips around it. An organization seen
    for the first time is created in the same transaction as its token, so that a failed store leaves
    neither behind.
    """
    ciphertexts = encrypt_tokens(manager.model, tokens)
    organizations = Organization.objects.db_manager(manager.db)
    organization = organizations.by_linear_id(linear_id)
    with transaction.atomic(using=manager.db) if organization is None else contextlib.nullcontext():
        token = upsert_one(
            manager,
            manager.model(
                organization=organization or organizations.ensure(linear_id),
                access_token=ciphertexts.value[0],
                refresh_token=ciphertexts.value[1],
                **fields,
            ),
            unique_fields=["organization", *key],
            update_fields=[
                "access_token",
                "refresh_token",
                *(name for name in fields if name not in key),
                "updated_at",
            ],
        )
    logger.info("Stored %r", token)
    return token


def status_for_expiry(expires_at: dt.datetime | None, *, at: dt.datetime | None = None) -> TokenStatus:
    """The admin's expiry state of a token expiring at ``expires_at`` (``None``: no token).

    The same rule as :func:`expiry_condition`, which says it in SQL for filters and counts.
    """
    if expires_at is None:
        return TokenStatus.NONE
    now = at or timezone.now()
    if expires_at <= now:
        return TokenStatus.EXPIRED
    if expires_at <= now + EXPIRING_SOON_WINDOW:
        return TokenStatus.EXPIRING
    return TokenStatus.VALID


def expiry_condition(status: TokenStatus | str, *, at: dt.datetime) -> models.Q:
    """The tokens :func:`status_for_expiry` puts in ``status`` at ``at``, as a condition on ``expires_at``."""
    soon = at + EXPIRING_SOON_WINDOW
    conditions = {
        TokenStatus.EXPIRED: models.Q(expires_at__lte=at),
        TokenStatus.EXPIRING: models.Q(expires_at__gt=at, expires_at__lte=soon),
        TokenStatus.VALID: models.Q(expires_at__gt=soon),
    }
    try:
        return conditions[TokenStatus(status)]
    except (ValueError, KeyError):
        raise ValueError(
            f"status must be one of {', '.join(map(str, conditions))}, not {status!r}."
        ) from None


def shifted(at: Any, delta: Any, name: str) -> dt.datetime:
    """``at`` (an aware datetime; now when ``None``) plus the timedelta ``delta``, or a clear error.

    The expiry helpers take a leeway or window from callers: a wrong type is a ``ValueError``, a naive
    ``at`` or a sum beyond the calendar a ``ValidationError`` (not a ``TypeError``/``OverflowError``).
    """
    if not isinstance(delta, dt.timedelta):
        raise ValueError(f"{name} must be a timedelta, not {type(delta).__name__}.")
    start = clean_aware_datetime(at, "at", required=False) or timezone.now()
    try:
        return clean_aware_datetime(start + delta, name)
    except OverflowError:
        raise ValidationError(f"{name} reaches beyond the years 1-9999.", code="out_of_range") from None


def mask_token(value: str | None) -> str:
    """A hint safe to show an operator: the last four characters behind bullets (``••••abcd``)."""
    if not value:
        return "—"
    if len(value) < 12:
        # Four characters of a very short value would be a large part of it.
        return "••••"
    return "••••" + value[-4:]


class OAuthTokenQuerySet(models.QuerySet):
    """Queries shared by both token models."""

    def expired(self, *, at: dt.datetime | None = None) -> OAuthTokenQuerySet:
        """Tokens whose ``expires_at`` is at or before ``at`` (now by default)."""
        return self.filter(expires_at__lte=clean_aware_datetime(at, "at", required=False) or timezone.now())

    def expiring_within(
        self, window: dt.timedelta = EXPIRING_SOON_WINDOW, *, at: dt.datetime | None = None
    ) -> OAuthTokenQuerySet:
        """Tokens that are still valid at ``at`` (now by default) but expire within ``window`` of it."""
        now = clean_aware_datetime(at, "at", required=False) or timezone.now()
        return self.filter(expires_at__gt=now, expires_at__lte=shifted(now, window, "window"))

    def with_status(self, status: TokenStatus | str, *, at: dt.datetime | None = None) -> OAuthTokenQuerySet:
        """Tokens expired, expiring within 24 hours or valid at ``at`` (now), as ``status()`` says."""
        now = clean_aware_datetime(at, "at", required=False) or timezone.now()
        return self.filter(expiry_condition(status, at=now))


class OAuthToken(models.Model):
    """Fields and behaviour shared by the Linear and the Confluence token (abstract)."""

    access_token = EncryptedTokenField()
    refresh_token = EncryptedTokenField(null=True, blank=True)
    expires_at = models.DateTimeField(help_text="When the access token expires (aware).")
    scope = models.CharField(max_length=1000, blank=True, default="")
    # db_default: a row inserted without Django (an SQL session, a script) still gets a creation time.
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} of {self.organization_id_display()}"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={self.pk} organization_id={self.organization_id} "
            f"expires_at={self.expires_at.isoformat() if self.expires_at else None}>"
        )

    def organization_id_display(self) -> str:
        """The owner's Linear id if the organization is loaded, else its primary key."""
        cache = self._state.fields_cache
        if "organization" in cache and cache["organization"] is not None:
            return cache["organization"].linear_id
        return f"organization #{self.organization_id}"

    def is_expired(
        self, leeway: dt.timedelta = DEFAULT_EXPIRY_LEEWAY, *, at: dt.datetime | None = None
    ) -> bool:
        """Whether the access token is expired, or expires within ``leeway`` of ``at`` (now)."""
        return self.expires_at <= shifted(at, leeway, "leeway")

    def expires_soon(self, within: dt.timedelta = EXPIRING_SOON_WINDOW) -> bool:
        """Whether the access token is expired or expires within ``within`` (24 hours by default)."""
        return self.is_expired(leeway=within)

    def status(self) -> TokenStatus:
        """Expired, expiring within 24 hours, or valid (for the admin)."""
        return status_for_expiry(self.expires_at)

    def token_hint(self, field_name: str) -> str:
        """Masked hint of a token field for operators, or "cannot be decrypted"."""
        try:
            return mask_token(getattr(self, field_name))
        except TokenDecryptionError:
            return "cannot be decrypted"

    @sensitive_variables("result")
    def refresh(self, refresher: Refresher) -> OAuthToken:
        """Refresh the access token with ``refresher(refresh_token) -> (access, refresh | None, expires_at)``.

        The row is locked (``select_for_update``) for the whole call, so that concurrent workers never
        spend the same refresh token twice: that network call inside the transaction is the point. After
        the lock the row is re-read; when another worker changed it since this instance was loaded (a
        different ``updated_at`` or refresh token), the refresher is not called and this instance is
        updated to the stored values. A ``None`` refresh token from the provider keeps the old one.
        Returns ``self``. Raises :class:`TokenRefreshError` (without any token in it) when there is no
        refresh token or the refresher fails or returns bad values.
        """
        if self.pk is None:
            raise ValueError(f"{type(self).__name__} must be saved before it can be refreshed.")
        manager = type(self)._default_manager.db_manager(self._state.db)
        with transaction.atomic(using=manager.db):
            locked = manager.select_for_update().get(pk=self.pk)
            if self._changed_in(locked):
                logger.info("%r was refreshed by another worker; not refreshing again", locked)
                self._copy_from(locked)
                return self
            if not locked.refresh_token:
                raise TokenRefreshError(
                    f"{locked!r} has no refresh token; the organization must authorize again."
                )
            # Sealed, not unpacked: no token sits in a local variable of this frame.
            result = _call_refresher(refresher, locked)
            locked.access_token = result.value[0]
            if result.value[1] is not None:
                locked.refresh_token = result.value[1]
            locked.expires_at = result.value[2]
            locked.save(update_fields=["access_token", "refresh_token", "expires_at", "updated_at"])
        logger.info("Refreshed %r", locked)
        self._copy_from(locked)
        return self

    def _changed_in(self, stored: OAuthToken) -> bool:
        """Whether ``stored`` (the locked row) differs from what this instance loaded: someone refreshed."""
        return stored.updated_at != self.updated_at or not _same_stored_value(
            stored.__dict__.get("refresh_token"), self.__dict__.get("refresh_token")
        )

    def _copy_from(self, other: OAuthToken) -> None:
        for field in self._meta.concrete_fields:
            self.__dict__[field.attname] = other.__dict__.get(field.attname)


@sensitive_variables("stored", "seen", "plain_stored", "plain_seen")
def _same_stored_value(stored: Any, seen: Any) -> bool:
    """Whether the stored refresh token (as loaded) is the one this instance saw; decrypts only if needed."""
    if stored is None or seen is None:
        return stored is seen
    if isinstance(stored, EncryptedValue) and stored == seen:
        return True
    # Different ciphertext may still be the same token (key rotation re-encrypts it; a value read or
    # set in this process is plaintext): compare plaintexts.
    field = LinearToken._meta.get_field("refresh_token")
    plain_stored = _plain_or_none(field, stored)
    plain_seen = _plain_or_none(field, seen)
    return plain_stored is not None and plain_stored == plain_seen


@sensitive_variables("value")
def _plain_or_none(field: EncryptedTokenField, value: Any) -> str | None:
    """Plaintext of a raw field value, or ``None`` when it cannot be decrypted."""
    if not isinstance(value, EncryptedValue):
        return value
    try:
        return field.fernet.decrypt(value.ciphertext).decode()
    except InvalidToken:
        return None


@sensitive_variables("returned")
def _call_refresher(refresher: Refresher, token: OAuthToken) -> Sealed:
    """Call the refresher with the token's refresh token; return (access, refresh, expires_at) sealed.

    Errors name the row, never a token; the refresher's own exception is not chained (it may quote the
    token in a URL or a response body), only its type is reported.
    """
    failure: str | None = None
    try:
        returned = Sealed(refresher(token.refresh_token))
    except Exception as exc:
        failure = type(exc).__name__
    if failure is not None:
        logger.warning("Refreshing %r failed: the refresher raised %s", token, failure)
        raise TokenRefreshError(f"Refreshing {token!r} failed: the refresher raised {failure}.")
    if not isinstance(returned.value, tuple | list) or len(returned.value) != 3:
        raise TokenRefreshError(
            f"Refreshing {token!r} failed: the refresher must return (access_token, refresh_token | None, "
            "expires_at)."
        )
    try:
        tokens = seal_tokens(returned.value[0], returned.value[1])
        expires_at = clean_aware_datetime(returned.value[2], "expires_at")
    except (ValueError, ValidationError) as exc:
        raise TokenRefreshError(
            f"Refreshing {token!r} failed: the refresher returned a bad value ({exc})."
        ) from None
    return Sealed((*tokens.value, expires_at))


class LinearTokenManager(models.Manager.from_queryset(OAuthTokenQuerySet)):
    """``LinearToken.objects``: the expiry queries, ``for_organization`` and ``store``, the agent's write."""

    # The agent's most frequent read, compiled once per connection (config.db.CompiledQuery): building
    # and compiling it took longer than its round trip on every call (benchmarks/hot_paths.py).
    _for_organization_query: CompiledQuery[LinearToken] = CompiledQuery(
        lambda linear_id: (
            LinearToken._base_manager.select_related("organization")
            .filter(organization__linear_id=linear_id)
            .order_by()[:1]
        ),
        arguments=1,
    )

    def for_organization(self, organization_id: Any) -> LinearToken | None:
        """The organization's Linear token (expired ones too: check ``is_expired()``), or ``None``."""
        linear_id = clean_identifier(organization_id, "organization_id")
        # One token per organization (one-to-one): zero or one row, no ORDER BY.
        rows = self._for_organization_query(linear_id, using=self.db)
        return rows[0] if rows else None

    # A manager method, not a QuerySet one: the proxy frame Django puts in front of QuerySet methods
    # would hold the tokens in its ``kwargs``, visible on a DEBUG crash page.
    @sensitive_variables("access_token", "refresh_token")
    def store(
        self,
        organization_id: Any,
        *,
        access_token: Any,
        refresh_token: Any = None,
        app_user_id: Any,
        expires_at: Any,
        scope: Any = "",
    ) -> LinearToken:
        """Create or replace the organization's Linear token (creating the organization on first use).

        One upsert (``INSERT ... ON CONFLICT (organization_id) DO UPDATE``), so concurrent stores for
        one organization end with one row holding the last writer's values; a new organization is
        created in the same transaction as its token. A store replaces the whole grant:
        ``refresh_token=None`` clears a stored refresh token.
        """
        tokens = seal_tokens(access_token, refresh_token)
        del access_token, refresh_token  # only the sealed copy from here on
        linear_id = clean_identifier(organization_id, "organization_id")
        app_user_id = clean_identifier(app_user_id, "app_user_id")
        expires_at = clean_aware_datetime(expires_at, "expires_at")
        scope = clean_text(scope, "scope", required=False, max_length=1000)
        return _store_token(
            self, linear_id, tokens, key=[], app_user_id=app_user_id, expires_at=expires_at, scope=scope
        )


class LinearToken(OAuthToken):
    """The Linear OAuth token of an organization (one per organization)."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="linear_token")
    app_user_id = models.CharField(
        "Linear app user id", max_length=255, help_text="The Linear user the app acts as."
    )

    objects = LinearTokenManager()

    class Meta:
        verbose_name = "Linear token"
        ordering = ["organization_id"]
        indexes = [models.Index(fields=["expires_at"], name="accounts_lineartoken_expires")]


class ConfluenceTokenQuerySet(OAuthTokenQuerySet):
    """Queries on Confluence tokens."""

    def for_organization(self, organization_id: Any, cloud_id: Any = None) -> ConfluenceToken | None:
        """The organization's Confluence token for ``cloud_id``, or ``None``.

        Without ``cloud_id``: the most recently updated of the organization's Confluence tokens.
        """
        linear_id = clean_identifier(organization_id, "organization_id")
        queryset = self.select_related("organization").filter(organization__linear_id=linear_id)
        if cloud_id is not None:
            cloud_id = clean_identifier(cloud_id, "cloud_id", required=False)
            return queryset.filter(cloud_id=cloud_id).first()
        return queryset.order_by("-updated_at", "-pk").first()


class ConfluenceTokenManager(models.Manager.from_queryset(ConfluenceTokenQuerySet)):
    """``ConfluenceToken.objects``: the queries above plus ``store``, the agent's write."""

    @sensitive_variables("access_token", "refresh_token")
    def store(
        self,
        organization_id: Any,
        *,
        cloud_id: Any = "",
        site_url: Any,
        access_token: Any,
        refresh_token: Any = None,
        expires_at: Any,
        scope: Any = "",
    ) -> ConfluenceToken:
        """Create or replace the organization's token for ``cloud_id``: one upsert, as ``LinearToken``'s."""
        tokens = seal_tokens(access_token, refresh_token)
        del access_token, refresh_token  # only the sealed copy from here on
        linear_id = clean_identifier(organization_id, "organization_id")
        cloud_id = clean_identifier(cloud_id, "cloud_id", required=False)
        site_url = clean_text(site_url, "site_url", max_length=500)
        expires_at = clean_aware_datetime(expires_at, "expires_at")
        scope = clean_text(scope, "scope", required=False, max_length=1000)
        return _store_token(
            self,
            linear_id,
            tokens,
            key=["cloud_id"],
            cloud_id=cloud_id,
            site_url=site_url,
            expires_at=expires_at,
            scope=scope,
        )


class ConfluenceToken(OAuthToken):
    """A Confluence (Atlassian) OAuth token; one per organization and Atlassian cloud id.

    Tokens imported from the old system have an empty ``cloud_id`` until the agent learns it from
    ``site_url``.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="confluence_tokens")
    cloud_id = models.CharField("Atlassian cloud id", max_length=255, blank=True, default="")
    site_url = models.URLField(max_length=500)

    objects = ConfluenceTokenManager()

    class Meta:
        verbose_name = "Confluence token"
        ordering = ["organization_id", "cloud_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "cloud_id"], name="accounts_confluencetoken_org_cloud_uniq"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="accounts_conftoken_expires")]
