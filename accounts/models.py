"""Organizations (the tenants), their Linear and Confluence OAuth tokens, and the admin operators."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, Self, TypeVar, cast

from asgiref.sync import async_to_sync, sync_to_async
from cryptography.fernet import InvalidToken
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import connections, models, router, transaction
from django.db.models.functions import Now
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.fields import SERIALIZED_PREFIX, EncryptedTokenField, EncryptedValue, TokenDecryptionError
from accounts.validation import clean_aware_datetime, clean_identifier, clean_text
from config.db import CompiledQuery, FastLoadMixin, upsert_one

logger = logging.getLogger(__name__)

__all__ = [
    "AsyncRefresher",
    "ConfluenceToken",
    "LinearToken",
    "Organization",
    "OrganizationMembership",
    "ReauthorizationRequired",
    "RefreshRejected",
    "Refresher",
    "SyncRefresher",
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

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]  # django-stubs types no Meta
        swappable = "AUTH_USER_MODEL"


class OrganizationManager(models.Manager["Organization"]):
    """``Organization.objects``: the lookup every write makes, compiled once per connection."""

    # config.db.CompiledQuery: building and compiling this lookup took longer than its round trip on
    # every token store and every write that names an organization (benchmarks/hot_paths.py).
    _by_linear_id_query: CompiledQuery[Organization] = CompiledQuery(
        lambda linear_id: Organization._base_manager.filter(linear_id=linear_id).order_by()[:1],
        arguments=1,
    )

    def by_linear_id(self, linear_id: str) -> Organization | None:
        """The organization with this Linear organization id, or ``None``."""
        linear_id = clean_identifier(linear_id, "organization_id")
        rows = self._by_linear_id_query(linear_id, using=self.db)  # linear_id is unique: 0 or 1 row
        return rows[0] if rows else None

    def ensure(self, linear_id: str, *, name: str = "") -> Organization:
        """Return the organization with this Linear organization id, creating it on first use.

        Race-safe: ``get_or_create`` (for a new id) is backed by the unique constraint on ``linear_id``.
        """
        linear_id = clean_identifier(linear_id, "organization_id")
        manager = self.db_manager(self._db or router.db_for_write(self.model, **self._hints))  # type: ignore[attr-defined]
        found = manager.by_linear_id(linear_id)
        return found or manager.get_or_create(linear_id=linear_id, defaults={"name": name})[0]

    async def aby_linear_id(self, linear_id: str) -> Organization | None:
        """Async twin of :meth:`by_linear_id`."""
        return await sync_to_async(self.by_linear_id)(linear_id)

    async def aensure(self, linear_id: str, *, name: str = "") -> Organization:
        """Async twin of :meth:`ensure`."""
        return await sync_to_async(self.ensure)(linear_id, name=name)


class Organization(FastLoadMixin, models.Model):
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

#: What a refresher returns: ``(access_token, refresh_token | None, expires_at)``.
RefreshResult = tuple[str, "str | None", dt.datetime]
#: A synchronous refresher: ``refresher(refresh_token) -> (access, refresh | None, expires_at)``.
SyncRefresher = Callable[[str], RefreshResult]
#: An ``async def`` refresher; it runs on the caller's event loop.
AsyncRefresher = Callable[[str], Awaitable[RefreshResult]]
#: Every method that takes a refresher takes either kind.
Refresher = SyncRefresher | AsyncRefresher

_P = ParamSpec("_P")
_R = TypeVar("_R")


class TokenRefreshError(Exception):
    """A token could not be refreshed (no refresh token, or the refresher failed). Never holds a token."""


class RefreshRejected(Exception):
    """Raised *by a refresher* when the provider refuses the refresh token (OAuth ``invalid_grant``).

    The token is then marked ``reauthorization_required_at`` and every later ``refresh`` or
    ``access_token`` raises :class:`ReauthorizationRequired` without calling the provider, until a
    ``store()`` saves a new grant. Whatever message it carries is not kept (it may quote the token).
    """


class ReauthorizationRequired(TokenRefreshError):
    """The organization must authorize the app again: no token, no refresh token, or a rejected one.

    A :class:`TokenRefreshError`, so code that catches that keeps working.
    """


class TokenStatus(models.TextChoices):
    """Expiry state shown by the admin."""

    NONE = "none", "none"
    EXPIRED = "expired", "expired"
    EXPIRING = "expiring", "expiring within 24h"
    VALID = "valid", "valid"


def clean_token(value: object, name: str, *, required: bool = True) -> str | None:
    """Return a token string, or ``None`` for an absent optional token; messages never include the value."""
    if value is None and not required:
        return None
    if isinstance(value, str) and not value.isascii() and not _encodes(value):
        # Raised here, outside any ``except``: a UnicodeEncodeError holds the whole string (the token)
        # and would ride along as the ``__context__`` of anything raised while handling it.
        raise ValidationError(
            f"{name} must be valid Unicode text (it holds a lone surrogate).", code="invalid"
        )
    value = clean_text(value, name)
    if value.startswith(SERIALIZED_PREFIX):
        # That prefix marks ciphertext in dumps; a real token never starts with it.
        raise ValidationError(f"{name} must be the token itself, not serialized ciphertext.", code="invalid")
    return value


@sensitive_variables("value")
def _encodes(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (no lone surrogates), without raising."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
def seal_tokens(access_token: object, refresh_token: object) -> Sealed:
    """Check an access token and an optional refresh token; return them sealed as a pair."""
    return Sealed(
        (
            clean_token(access_token, "access_token"),
            clean_token(refresh_token, "refresh_token", required=False),
        )
    )


def encrypt_tokens(model: type[models.Model], tokens: Sealed) -> Sealed:
    """The sealed (access, refresh) pair as ciphertext (``EncryptedValue``), as a loaded row holds it."""
    access_field = cast(EncryptedTokenField, model._meta.get_field("access_token"))
    refresh_field = cast(EncryptedTokenField, model._meta.get_field("refresh_token"))
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
    organizations = Organization.objects
    if organizations.db != manager.db:
        organizations = organizations.db_manager(manager.db)
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
                # A new grant: the instance's None clears a "re-authorization required" mark.
                "reauthorization_required_at",
                "updated_at",
            ],
        )
    logger.info("Stored %r", token)
    return cast(OAuthToken, token)


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


def shifted(at: object, delta: object, name: str) -> dt.datetime:
    """``at`` (an aware datetime; now when ``None``) plus the timedelta ``delta``, or a clear error.

    The expiry helpers take a leeway or window from callers: a wrong type is a ``ValueError``, a naive
    ``at`` or a sum beyond the calendar a ``ValidationError`` (not a ``TypeError``/``OverflowError``).
    """
    if not isinstance(delta, dt.timedelta):
        raise ValueError(f"{name} must be a timedelta, not {type(delta).__name__}.")
    start = clean_aware_datetime(at, "at", required=False) or timezone.now()
    try:
        return cast(dt.datetime, clean_aware_datetime(start + delta, name))
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


class OAuthTokenQuerySet(models.QuerySet[Any]):
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

    def needing_reauthorization(self) -> OAuthTokenQuerySet:
        """Tokens whose refresh token the provider rejected: the organization must authorize again."""
        return self.filter(reauthorization_required_at__isnull=False)

    def with_status(self, status: TokenStatus | str, *, at: dt.datetime | None = None) -> OAuthTokenQuerySet:
        """Tokens expired, expiring within 24 hours or valid at ``at`` (now), as ``status()`` says."""
        now = clean_aware_datetime(at, "at", required=False) or timezone.now()
        return self.filter(expiry_condition(status, at=now))


class OAuthToken(FastLoadMixin, models.Model):
    """Fields and behaviour shared by the Linear and the Confluence token (abstract)."""

    access_token = EncryptedTokenField()
    refresh_token = EncryptedTokenField(null=True, blank=True)
    expires_at = models.DateTimeField(help_text="When the access token expires (aware).")
    scope = models.CharField(max_length=1000, blank=True, default="")
    reauthorization_required_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the provider rejected the refresh token; set until a new token is stored.",
    )
    # db_default: a row inserted without Django (an SQL session, a script) still gets a creation time.
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)

    # Declared by each concrete subclass (a one-to-one or a foreign key); named here for type checkers.
    organization: Organization
    organization_id: int

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

    def needs_reauthorization(self) -> bool:
        """Whether the provider rejected this token's refresh token: only a new ``store()`` helps."""
        return self.reauthorization_required_at is not None

    def refresh(self, refresher: Refresher) -> Self:
        """Refresh the access token with ``refresher(refresh_token) -> (access, refresh | None, expires_at)``.

        ``refresher`` may be a plain function or an ``async def`` one (run to completion here with
        ``async_to_sync``). The row is locked (``select_for_update``) for the whole call, so that
        concurrent workers never spend the same refresh token twice: that network call inside the
        transaction is the point. After the lock the row is re-read; when another worker changed it
        since this instance was loaded (a different ``updated_at`` or refresh token), the refresher is
        not called and this instance is updated to the stored values. A ``None`` refresh token from the
        provider keeps the old one. Returns ``self``.

        Raises :class:`ReauthorizationRequired` (a :class:`TokenRefreshError`) when there is no refresh
        token, when the token is marked as needing re-authorization, or when the refresher raises
        :class:`RefreshRejected` (the token is then marked); :class:`TokenRefreshError` when the
        refresher fails or returns bad values; :class:`TokenDecryptionError` when the stored refresh
        token cannot be decrypted with ``FERNET_KEYS`` (the provider is not called). None of them holds
        a token.
        """
        return self._refresh(refresher, leeway=None)

    async def arefresh(self, refresher: Refresher) -> Self:
        """Async twin of :meth:`refresh`; an ``async def`` refresher runs on the caller's event loop.

        The locked transaction runs on a worker thread of its own (not on the one thread that
        ``sync_to_async`` shares between every task's ORM calls), so a slow provider stalls nobody
        else's database calls.
        """
        return await _in_own_thread(self._refresh)(refresher, leeway=None)

    @sensitive_variables("result")
    def _refresh(self, refresher: Refresher, *, leeway: dt.timedelta | None) -> Self:
        """:meth:`refresh`; with ``leeway``, refresh only if the locked row expires within it."""
        if self.pk is None:
            raise ValueError(f"{type(self).__name__} must be saved before it can be refreshed.")
        manager = type(self)._default_manager.db_manager(self._state.db)
        rejected = False
        with transaction.atomic(using=manager.db):
            locked = manager.select_for_update().get(pk=self.pk)
            if locked.reauthorization_required_at is not None:
                self._copy_from(locked)
                raise ReauthorizationRequired(locked._reauthorization_message())
            if leeway is not None and not locked.is_expired(leeway):
                logger.info("%r was refreshed by another worker; not refreshing again", locked)
                self._copy_from(locked)
                return self
            if leeway is None and self._changed_in(locked):
                logger.info("%r was refreshed by another worker; not refreshing again", locked)
                self._copy_from(locked)
                return self
            if not locked.refresh_token:
                raise ReauthorizationRequired(
                    f"{locked!r} has no refresh token; the organization must authorize again."
                )
            try:
                # Sealed, not unpacked: no token sits in a local variable of this frame.
                result = _call_refresher(refresher, locked)
            except RefreshRejected:
                rejected = True
                locked.reauthorization_required_at = timezone.now()
                locked.save(update_fields=["reauthorization_required_at", "updated_at"])
            else:
                locked.access_token = result.value[0]
                if result.value[1] is not None:
                    locked.refresh_token = result.value[1]
                locked.expires_at = result.value[2]
                locked.save(update_fields=["access_token", "refresh_token", "expires_at", "updated_at"])
        self._copy_from(locked)
        if rejected:
            logger.warning("The provider rejected the refresh token of %r; re-authorization required", locked)
            raise ReauthorizationRequired(locked._reauthorization_message())
        logger.info("Refreshed %r", locked)
        return self

    def _reauthorization_message(self) -> str:
        """What :class:`ReauthorizationRequired` says about this token (no token in it)."""
        since = self.reauthorization_required_at
        return (
            f"{self!r} needs re-authorization: the provider rejected its refresh token"
            f"{f' at {since.isoformat()}' if since else ''}; store a new token (store() or "
            "store_oauth_response()) after the organization authorizes the app again."
        )

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


async def _awaited(awaitable: Awaitable[_R]) -> _R:
    return await awaitable


@sensitive_variables("returned", "outcome")
def _call_refresher(refresher: Refresher, token: OAuthToken) -> Sealed:
    """Call the refresher with the token's refresh token; return (access, refresh, expires_at) sealed.

    An awaitable result (an ``async def`` refresher) is run to completion with ``async_to_sync``: on the
    event loop of the ``sync_to_async`` call that started this thread (``arefresh``), else on a loop of
    its own. Errors name the row, never a token. The refresher's own exception is neither chained nor
    kept as context (it may quote the token in a URL or a response body): only its type is reported.
    :class:`RefreshRejected` comes out as a fresh, empty :class:`RefreshRejected`; a ``BaseException``
    that is not an ``Exception`` (``CancelledError``, ``KeyboardInterrupt``) as a fresh instance of its
    own type, so cancellation still cancels.
    """
    failure: str | None = None
    escaping: type[BaseException] | None = None
    try:
        outcome = refresher(token.refresh_token)
        if inspect.isawaitable(outcome):
            outcome = async_to_sync(_awaited)(outcome)
        returned = Sealed(outcome)
    except RefreshRejected:
        escaping = RefreshRejected
    except Exception as exc:
        failure = type(exc).__name__
    except BaseException as exc:  # cancellation, interrupts: re-raised below, without their message
        escaping = type(exc)
    if escaping is not None:
        # Raised outside the ``except`` clauses, so the refresher's exception is not the context.
        if escaping is not RefreshRejected:
            logger.warning("Refreshing %r was interrupted: the refresher raised %s", token, escaping.__name__)
        raise _clean_instance(escaping, token)
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
        problem = str(exc)  # our own checks' messages name the argument, never the value
    else:
        return Sealed((*tokens.value, expires_at))
    raise TokenRefreshError(f"Refreshing {token!r} failed: the refresher returned a bad value ({problem}).")


def _clean_instance(kind: type[BaseException], token: OAuthToken) -> BaseException:
    """A new ``kind`` without arguments, or a :class:`TokenRefreshError` when ``kind`` needs some."""
    try:
        return kind()
    except Exception:  # a BaseException subclass whose constructor wants arguments
        return TokenRefreshError(
            f"Refreshing {token!r} was interrupted: the refresher raised {kind.__name__}."
        )


# --- Helpers of the token managers --------------------------------------------------------------

#: Threads that run refreshes for async callers: the locked transaction and the wait on the provider
#: happen here, never on asgiref's one shared thread (every task's ``sync_to_async`` ORM call runs there).
#: Each thread holds a database connection only for the length of one refresh.
REFRESH_THREADS = 8
_refresh_executor: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _refresh_executor
    if _refresh_executor is None:
        _refresh_executor = ThreadPoolExecutor(
            max_workers=REFRESH_THREADS, thread_name_prefix="token-refresh"
        )
    return _refresh_executor


def _in_own_thread(func: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """``func`` as a coroutine function that runs it on a refresh thread and then closes its connections."""

    @functools.wraps(func)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(run, thread_sensitive=False, executor=_executor())


def _check_leeway(leeway: object) -> dt.timedelta:
    if not isinstance(leeway, dt.timedelta):
        raise ValueError(f"leeway must be a timedelta, not {type(leeway).__name__}.")
    return leeway


def _usable_access_token(
    model: type[models.Model], organization_id: str, token: OAuthToken | None, leeway: dt.timedelta
) -> str | None:
    """The stored access token if it outlives ``leeway``; ``None`` when a refresh is needed; or raise."""
    if token is None:
        raise ReauthorizationRequired(
            f"No {model._meta.verbose_name} is stored for organization {organization_id!r}; "
            "the organization must authorize the app."
        )
    if token.reauthorization_required_at is not None:
        raise ReauthorizationRequired(token._reauthorization_message())
    if token.is_expired(leeway):
        return None
    return token.access_token


#: Refreshes in flight per event loop, keyed by (model, database, row id): concurrent ``aaccess_token``
#: calls in one process share one refresh (and one thread) instead of queueing on the row lock.
_in_flight: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str, int], asyncio.Task[Any]]
]
_in_flight = weakref.WeakKeyDictionary()


async def _ashared_refresh(token: OAuthToken, refresher: Refresher, leeway: dt.timedelta) -> str:
    """Refresh ``token`` if it still expires within ``leeway`` once locked; share the work in-process."""
    loop = asyncio.get_running_loop()
    tasks = _in_flight.setdefault(loop, {})
    key = (token._meta.label, token._state.db or "default", token.pk)
    task = tasks.get(key)
    if task is None:
        task = loop.create_task(_in_own_thread(token._refresh)(refresher, leeway=leeway))
        tasks[key] = task
        task.add_done_callback(lambda _done: tasks.pop(key, None))
    # shield: a caller that is cancelled leaves the refresh running for the others.
    refreshed = await asyncio.shield(task)
    return refreshed.access_token


def _access_token(
    manager: models.Manager[Any],
    organization_id: str,
    lookup: Callable[[], OAuthToken | None],
    refresher: Refresher,
    leeway: object,
) -> str:
    """Both token managers' ``access_token``: ``lookup()`` finds the row (after ``leeway`` is checked)."""
    leeway = _check_leeway(leeway)
    token = lookup()
    usable = _usable_access_token(manager.model, organization_id, token, leeway)
    if usable is not None:
        return usable
    return cast(OAuthToken, token)._refresh(refresher, leeway=leeway).access_token


async def _aaccess_token(
    manager: models.Manager[Any],
    organization_id: str,
    lookup: Callable[[], Awaitable[OAuthToken | None]],
    refresher: Refresher,
    leeway: object,
) -> str:
    """Both token managers' ``aaccess_token``: as :func:`_access_token`, the refresh shared in-process."""
    leeway = _check_leeway(leeway)
    token = await lookup()
    usable = _usable_access_token(manager.model, organization_id, token, leeway)
    if usable is not None:
        return usable
    return await _ashared_refresh(cast(OAuthToken, token), refresher, leeway)


@sensitive_variables("response", "access_token", "refresh_token")
def _from_oauth_response(response: object, *, at: dt.datetime | None) -> tuple[Sealed, dt.datetime, str]:
    """(tokens sealed, expires_at, scope) of a token endpoint's JSON, checked; messages name keys only."""
    if not isinstance(response, Mapping):
        raise ValueError(
            f"response must be a mapping (the token endpoint's JSON), not {type(response).__name__}."
        )
    if "access_token" not in response:
        raise ValidationError("response has no access_token.", code="required")
    access_token = response["access_token"]
    refresh_token = response.get("refresh_token")
    tokens = _seal_tokens_named(access_token, refresh_token, prefix="response")
    del access_token, refresh_token
    expires_in = response.get("expires_in")
    if expires_in is None:
        raise ValidationError("response has no expires_in.", code="required")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise ValueError(
            f"response['expires_in'] must be an integer (seconds), not {type(expires_in).__name__}."
        )
    if expires_in <= 0:
        raise ValidationError(
            f"response['expires_in'] must be positive (got {expires_in}).", code="min_value"
        )
    expires_at = shifted(at, _seconds(expires_in), "response['expires_in']")
    scope = response.get("scope", "")
    if isinstance(scope, list | tuple):
        for item in scope:
            if not isinstance(item, str):
                raise ValueError(f"response['scope'] must hold strings, not {type(item).__name__}.")
        scope = " ".join(scope)
    scope = clean_text(scope, "response['scope']", required=False, max_length=1000)
    return tokens, expires_at, scope


def _seconds(seconds: int) -> dt.timedelta:
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ValidationError(
            f"response['expires_in'] is too large (got {seconds}).", code="max_value"
        ) from None


@sensitive_variables("access_token", "refresh_token")
def _seal_tokens_named(access_token: object, refresh_token: object, *, prefix: str) -> Sealed:
    """:func:`seal_tokens` with argument names as ``prefix['access_token']`` in messages."""
    return Sealed(
        (
            clean_token(access_token, f"{prefix}['access_token']"),
            clean_token(refresh_token, f"{prefix}['refresh_token']", required=False),
        )
    )


_LinearTokenManagerBase = models.Manager.from_queryset(OAuthTokenQuerySet)


class LinearTokenManager(_LinearTokenManagerBase):
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

    def for_organization(self, organization_id: str) -> LinearToken | None:
        """The organization's Linear token (expired ones too: check ``is_expired()``), or ``None``."""
        linear_id = clean_identifier(organization_id, "organization_id")
        # One token per organization (one-to-one): zero or one row, no ORDER BY.
        rows = self._for_organization_query(linear_id, using=self.db)
        return rows[0] if rows else None

    async def afor_organization(self, organization_id: str) -> LinearToken | None:
        """Async twin of :meth:`for_organization`."""
        return await sync_to_async(self.for_organization)(organization_id)

    def access_token(
        self, organization_id: str, refresher: Refresher, *, leeway: dt.timedelta = DEFAULT_EXPIRY_LEEWAY
    ) -> str:
        """A usable access token of the organization: the stored one, or a fresh one after one refresh.

        The stored token is returned when it does not expire within ``leeway``; otherwise the row is
        locked and, if it still expires within ``leeway`` (no other worker refreshed it meanwhile),
        refreshed with ``refresher`` (sync or async, as for :meth:`OAuthToken.refresh`). Raises
        :class:`ReauthorizationRequired` when no token is stored or it needs re-authorization, and what
        ``refresh`` raises.
        """
        lookup = functools.partial(self.for_organization, organization_id)
        return _access_token(self, organization_id, lookup, refresher, leeway)

    async def aaccess_token(
        self, organization_id: str, refresher: Refresher, *, leeway: dt.timedelta = DEFAULT_EXPIRY_LEEWAY
    ) -> str:
        """Async twin of :meth:`access_token`: concurrent callers in one process share one refresh.

        The lookup runs as any ``sync_to_async`` call; a refresh runs on a thread of its own, so a slow
        provider holds up no other task's database calls.
        """
        lookup = functools.partial(self.afor_organization, organization_id)
        return await _aaccess_token(self, organization_id, lookup, refresher, leeway)

    @sensitive_variables("response")
    def store_oauth_response(
        self,
        organization_id: str,
        response: Mapping[str, object],
        *,
        app_user_id: str,
        at: dt.datetime | None = None,
    ) -> LinearToken:
        """Store a Linear token endpoint's JSON as it came: ``access_token``, ``refresh_token`` (optional),
        ``expires_in`` seconds from ``at`` (now), ``scope`` as a list or a space-separated string."""
        tokens, expires_at, scope = _from_oauth_response(response, at=at)
        return self._store(
            organization_id, tokens, app_user_id=app_user_id, expires_at=expires_at, scope=scope
        )

    @sensitive_variables("response")
    async def astore_oauth_response(
        self,
        organization_id: str,
        response: Mapping[str, object],
        *,
        app_user_id: str,
        at: dt.datetime | None = None,
    ) -> LinearToken:
        """Async twin of :meth:`store_oauth_response`."""
        return await sync_to_async(self.store_oauth_response)(
            organization_id, response, app_user_id=app_user_id, at=at
        )

    # A manager method, not a QuerySet one: the proxy frame Django puts in front of QuerySet methods
    # would hold the tokens in its ``kwargs``, visible on a DEBUG crash page.
    @sensitive_variables("access_token", "refresh_token")
    def store(
        self,
        organization_id: str,
        *,
        access_token: str,
        refresh_token: str | None = None,
        app_user_id: str,
        expires_at: dt.datetime,
        scope: str = "",
    ) -> LinearToken:
        """Create or replace the organization's Linear token (creating the organization on first use).

        One upsert (``INSERT ... ON CONFLICT (organization_id) DO UPDATE``), so concurrent stores for
        one organization end with one row holding the last writer's values; a new organization is
        created in the same transaction as its token. A store replaces the whole grant:
        ``refresh_token=None`` clears a stored refresh token, and a "re-authorization required" mark
        is cleared.
        """
        tokens = seal_tokens(access_token, refresh_token)
        del access_token, refresh_token  # only the sealed copy from here on
        return self._store(
            organization_id, tokens, app_user_id=app_user_id, expires_at=expires_at, scope=scope
        )

    @sensitive_variables("access_token", "refresh_token")
    async def astore(
        self,
        organization_id: str,
        *,
        access_token: str,
        refresh_token: str | None = None,
        app_user_id: str,
        expires_at: dt.datetime,
        scope: str = "",
    ) -> LinearToken:
        """Async twin of :meth:`store`."""
        tokens = seal_tokens(access_token, refresh_token)
        del access_token, refresh_token
        return await sync_to_async(self._store)(
            organization_id, tokens, app_user_id=app_user_id, expires_at=expires_at, scope=scope
        )

    def _store(
        self,
        organization_id: object,
        tokens: Sealed,
        *,
        app_user_id: object,
        expires_at: object,
        scope: object,
    ) -> LinearToken:
        linear_id = clean_identifier(organization_id, "organization_id")
        app_user_id = clean_identifier(app_user_id, "app_user_id")
        expires_at = clean_aware_datetime(expires_at, "expires_at")
        scope = clean_text(scope, "scope", required=False, max_length=1000)
        token = _store_token(
            self, linear_id, tokens, key=[], app_user_id=app_user_id, expires_at=expires_at, scope=scope
        )
        return cast(LinearToken, token)


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

    def for_organization(self, organization_id: str, cloud_id: str | None = None) -> ConfluenceToken | None:
        """The organization's Confluence token for ``cloud_id``, or ``None``.

        Without ``cloud_id``: the most recently updated of the organization's Confluence tokens.
        """
        linear_id = clean_identifier(organization_id, "organization_id")
        queryset = self.select_related("organization").filter(organization__linear_id=linear_id)
        if cloud_id is not None:
            cloud_id = clean_identifier(cloud_id, "cloud_id", required=False)
            return queryset.filter(cloud_id=cloud_id).first()
        return queryset.order_by("-updated_at", "-pk").first()


_ConfluenceTokenManagerBase = models.Manager.from_queryset(ConfluenceTokenQuerySet)


class ConfluenceTokenManager(_ConfluenceTokenManagerBase):
    """``ConfluenceToken.objects``: the queries above plus ``store``, the agent's write."""

    async def afor_organization(
        self, organization_id: str, cloud_id: str | None = None
    ) -> ConfluenceToken | None:
        """Async twin of :meth:`ConfluenceTokenQuerySet.for_organization`."""
        return await sync_to_async(self.for_organization)(organization_id, cloud_id)

    def access_token(
        self,
        organization_id: str,
        refresher: Refresher,
        *,
        cloud_id: str | None = None,
        leeway: dt.timedelta = DEFAULT_EXPIRY_LEEWAY,
    ) -> str:
        """A usable access token for ``cloud_id`` (without it: the most recently updated token), as
        :meth:`LinearTokenManager.access_token` gives one."""
        lookup = functools.partial(self.for_organization, organization_id, cloud_id)
        return _access_token(self, organization_id, lookup, refresher, leeway)

    async def aaccess_token(
        self,
        organization_id: str,
        refresher: Refresher,
        *,
        cloud_id: str | None = None,
        leeway: dt.timedelta = DEFAULT_EXPIRY_LEEWAY,
    ) -> str:
        """Async twin of :meth:`access_token` (a refresh runs on a thread of its own, shared in-process)."""
        lookup = functools.partial(self.afor_organization, organization_id, cloud_id)
        return await _aaccess_token(self, organization_id, lookup, refresher, leeway)

    @sensitive_variables("access_token", "refresh_token")
    def store(
        self,
        organization_id: str,
        *,
        cloud_id: str = "",
        site_url: str,
        access_token: str,
        refresh_token: str | None = None,
        expires_at: dt.datetime,
        scope: str = "",
    ) -> ConfluenceToken:
        """Create or replace the organization's token for ``cloud_id``: one upsert, as ``LinearToken``'s."""
        tokens = seal_tokens(access_token, refresh_token)
        del access_token, refresh_token  # only the sealed copy from here on
        return self._store(
            organization_id, tokens, cloud_id=cloud_id, site_url=site_url, expires_at=expires_at, scope=scope
        )

    @sensitive_variables("access_token", "refresh_token")
    async def astore(
        self,
        organization_id: str,
        *,
        cloud_id: str = "",
        site_url: str,
        access_token: str,
        refresh_token: str | None = None,
        expires_at: dt.datetime,
        scope: str = "",
    ) -> ConfluenceToken:
        """Async twin of :meth:`store`."""
        tokens = seal_tokens(access_token, refresh_token)
        del access_token, refresh_token
        return await sync_to_async(self._store)(
            organization_id, tokens, cloud_id=cloud_id, site_url=site_url, expires_at=expires_at, scope=scope
        )

    @sensitive_variables("response")
    def store_oauth_response(
        self,
        organization_id: str,
        response: Mapping[str, object],
        *,
        cloud_id: str,
        site_url: str,
        at: dt.datetime | None = None,
    ) -> ConfluenceToken:
        """Store an Atlassian token endpoint's JSON as it came (see
        :meth:`LinearTokenManager.store_oauth_response`) for ``cloud_id`` and ``site_url``."""
        tokens, expires_at, scope = _from_oauth_response(response, at=at)
        return self._store(
            organization_id, tokens, cloud_id=cloud_id, site_url=site_url, expires_at=expires_at, scope=scope
        )

    @sensitive_variables("response")
    async def astore_oauth_response(
        self,
        organization_id: str,
        response: Mapping[str, object],
        *,
        cloud_id: str,
        site_url: str,
        at: dt.datetime | None = None,
    ) -> ConfluenceToken:
        """Async twin of :meth:`store_oauth_response`."""
        return await sync_to_async(self.store_oauth_response)(
            organization_id, response, cloud_id=cloud_id, site_url=site_url, at=at
        )

    def _store(
        self,
        organization_id: object,
        tokens: Sealed,
        *,
        cloud_id: object,
        site_url: object,
        expires_at: object,
        scope: object,
    ) -> ConfluenceToken:
        linear_id = clean_identifier(organization_id, "organization_id")
        cloud_id = clean_identifier(cloud_id, "cloud_id", required=False)
        site_url = clean_text(site_url, "site_url", max_length=500)
        expires_at = clean_aware_datetime(expires_at, "expires_at")
        scope = clean_text(scope, "scope", required=False, max_length=1000)
        token = _store_token(
            self,
            linear_id,
            tokens,
            key=["cloud_id"],
            cloud_id=cloud_id,
            site_url=site_url,
            expires_at=expires_at,
            scope=scope,
        )
        return cast(ConfluenceToken, token)


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
