"""The encrypted token field: Fernet ciphertext in the database, plaintext only in Python memory.

``EncryptedTokenField`` extends ``fernet_fields.EncryptedTextField`` in four ways:

* **Lazy decryption.** ``from_db_value`` does not decrypt: it returns an :class:`EncryptedValue` holding
  the stored ciphertext, and the model attribute decrypts on first access, then caches the plaintext in
  the instance as a :class:`DecryptedToken` (a ``str`` that remembers its ciphertext). So loading a row
  the configured keys cannot decrypt never fails: listing pages, key rotation and ``dumpdata`` work on
  such rows, and only reading the token raises :class:`TokenDecryptionError`, which names the model,
  the field and the row id, never a value. A loaded row, read or not, is saved back with its
  ciphertext untouched unless a new value was assigned.
* **Keys follow the settings.** The parent caches its ``Fernet`` on the field instance for the life of
  the process; here the keys are looked up from ``settings.FERNET_KEYS`` on every use (the
  ``MultiFernet`` itself is memoised per key list), so ``override_settings(FERNET_KEYS=...)`` in tests
  and a rotated key list take effect without a restart. The first key encrypts; every key decrypts.
* **Serialization emits ciphertext.** ``value_to_string`` (``dumpdata``) writes
  ``fernet:<ciphertext>``; ``to_python`` turns that form back into an :class:`EncryptedValue`, so
  ``loaddata`` of a dump stores the same ciphertext instead of encrypting it a second time.
* **Key rotation without plaintext.** :meth:`EncryptedTokenField.rotate_ciphertext` re-encrypts stored
  bytes with ``MultiFernet.rotate``.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.db.models.query_utils import DeferredAttribute
from django.dispatch import receiver
from django.utils.encoding import force_bytes, force_str
from fernet_fields import EncryptedTextField, hkdf

#: Prefix of a serialized (``dumpdata``) token: the text after it is Fernet ciphertext, not a token.
SERIALIZED_PREFIX = "fernet:"

_KEY_SETTINGS = frozenset({"FERNET_KEYS", "FERNET_USE_HKDF", "SECRET_KEY"})


class TokenDecryptionError(Exception):
    """A stored token cannot be decrypted with any key of ``FERNET_KEYS`` (a wrong or missing key)."""

    def __init__(self, model_label: str, field_name: str, pk: Any) -> None:
        self.model_label = model_label
        self.field_name = field_name
        self.pk = pk
        super().__init__(
            f"{model_label}.{field_name} of row id={pk} cannot be decrypted with the configured "
            f"FERNET_KEYS (was it encrypted with a key that is no longer listed?)."
        )


class EncryptedValue:
    """Ciphertext loaded from the database and not decrypted yet.

    Deliberately not a ``str``: code that ever sees one cannot mistake it for the token.
    """

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: bytes) -> None:
        self.ciphertext = bytes(ciphertext)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptedValue) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)

    def __repr__(self) -> str:
        return "<EncryptedValue>"

    __str__ = __repr__


class DecryptedToken(str):
    """A decrypted token that remembers the ciphertext it came from.

    Saving it unchanged writes that ciphertext back instead of encrypting again, including on Django's
    raw saves (``loaddata``), which read the attribute rather than calling ``pre_save``.
    """

    ciphertext: bytes

    def __new__(cls, plaintext: str, ciphertext: bytes) -> DecryptedToken:
        token = super().__new__(cls, plaintext)
        token.ciphertext = ciphertext
        return token

    def __reduce__(self) -> Any:
        return (DecryptedToken, (str(self), self.ciphertext))


@functools.lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...], use_hkdf: bool) -> MultiFernet:
    fernet_keys = [hkdf.derive_fernet_key(key) for key in keys] if use_hkdf else list(keys)
    return MultiFernet([Fernet(key) for key in fernet_keys])


def current_fernet() -> MultiFernet:
    """The ``MultiFernet`` of the current ``FERNET_KEYS``: the first key encrypts, every key decrypts."""
    keys = getattr(settings, "FERNET_KEYS", None)
    if keys is None:
        keys = [settings.SECRET_KEY]
    return _multi_fernet(tuple(keys), bool(getattr(settings, "FERNET_USE_HKDF", True)))


def first_fernet() -> MultiFernet:
    """The ``Fernet`` of the first key of ``FERNET_KEYS`` alone: the key new ciphertext must use."""
    keys = getattr(settings, "FERNET_KEYS", None)
    if keys is None:
        keys = [settings.SECRET_KEY]
    return _multi_fernet(tuple(keys[:1]), bool(getattr(settings, "FERNET_USE_HKDF", True)))


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs: Any) -> None:
    # Only a memo; dropping it keeps no stale key material around after a test override.
    if setting in _KEY_SETTINGS:
        _multi_fernet.cache_clear()


class _DecryptingAttribute(DeferredAttribute):
    """Model attribute that decrypts an :class:`EncryptedValue` on first access."""

    #: ``__set__`` only stores the value in the instance's ``__dict__``: rows may be loaded by filling
    #: it directly (``config.db.FastLoadMixin``), and the first read still decrypts.
    FAST_LOAD_SAFE = True

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, EncryptedValue):
            value = self.field.decrypt_for(instance, value)  # type: ignore[attr-defined]
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        # Defining __set__ makes this a data descriptor, so __get__ runs even when the instance
        # __dict__ holds the value (where plain DeferredAttribute would be bypassed).
        instance.__dict__[self.field.attname] = value


class EncryptedTokenField(EncryptedTextField):
    """A ``TextField`` stored as Fernet ciphertext, decrypted lazily; see the module docstring."""

    descriptor_class = _DecryptingAttribute

    # The parent's cached_property versions would pin the keys of the first use forever.
    @property
    def keys(self) -> list[str]:  # type: ignore[override]
        keys = getattr(settings, "FERNET_KEYS", None)
        return list(keys) if keys is not None else [settings.SECRET_KEY]

    @property
    def fernet(self) -> MultiFernet:  # type: ignore[override]
        return current_fernet()

    def from_db_value(self, value: Any, expression: Any, connection: Any, *args: Any) -> Any:
        if value is None:
            return None
        return EncryptedValue(bytes(value))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, EncryptedValue) or value is None:
            return value
        if isinstance(value, str) and value.startswith(SERIALIZED_PREFIX):
            return EncryptedValue(value[len(SERIALIZED_PREFIX) :].encode("ascii"))
        return super().to_python(value)

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        # Read the raw instance value so that saving a row never decrypts a token nobody read.
        if self.attname in model_instance.__dict__:
            return model_instance.__dict__[self.attname]
        return super().pre_save(model_instance, add)

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if isinstance(value, EncryptedValue | DecryptedToken):
            return connection.Database.Binary(value.ciphertext)
        return super().get_db_prep_save(value, connection)

    def value_from_object(self, obj: Any) -> Any:
        """The raw instance value: plaintext if set or read in this process, else an ``EncryptedValue``."""
        return obj.__dict__.get(self.attname)

    def value_to_string(self, obj: Any) -> str | None:
        """Serialize as ``fernet:<ciphertext>``; ``dumpdata`` never writes a plaintext token."""
        value = self.value_from_object(obj)
        if value is None:
            return None
        if isinstance(value, EncryptedValue | DecryptedToken):
            ciphertext = value.ciphertext
        else:
            ciphertext = self.encrypt(value)
        return SERIALIZED_PREFIX + force_str(ciphertext)

    def encrypt(self, value: str) -> bytes:
        """Encrypt a plaintext token with the first key of ``FERNET_KEYS``."""
        return self.fernet.encrypt(force_bytes(value))

    def decrypt_for(self, instance: Any, value: EncryptedValue) -> DecryptedToken:
        """Decrypt ``value`` read from ``instance``, or raise :class:`TokenDecryptionError` naming the row."""
        try:
            return DecryptedToken(force_str(self.fernet.decrypt(value.ciphertext)), value.ciphertext)
        except InvalidToken:
            # InvalidToken carries no data; "from None" keeps the traceback short.
            raise TokenDecryptionError(instance._meta.label, self.name, instance.pk) from None

    def rotate_ciphertext(self, ciphertext: bytes) -> bytes:
        """Re-encrypt stored ciphertext with the first key without returning plaintext.

        Raises ``cryptography.fernet.InvalidToken`` when no configured key decrypts it.
        """
        return self.fernet.rotate(bytes(ciphertext))

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether ``ciphertext`` was encrypted with the first key of ``FERNET_KEYS``."""
        try:
            first_fernet().decrypt(bytes(ciphertext))
        except InvalidToken:
            return False
        return True
