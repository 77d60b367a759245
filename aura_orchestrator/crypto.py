"""Secrets at rest: every secret the database holds (a provider's API key, a webhook's
signing secret) is one `EncryptedTextField`, a Fernet token in its column.

Keys: `settings.ENCRYPTION_KEYS` (AURA_ENCRYPTION_KEYS, comma-separated Fernet keys):
the first encrypts, every one decrypts (MultiFernet), so a new key goes first and the
old ones stay until `manage.py rotate_encryption_key` has re-encrypted every value.
Without it (the embedded default), one key is derived from DJANGO_SECRET_KEY with
HKDF-SHA256 (salt none, info `DERIVED_KEY_INFO`, 32 bytes), and `check --deploy` warns.
The derived key always decrypts too (last): an install begun on the default sets
AURA_ENCRYPTION_KEYS, runs `rotate_encryption_key`, and nothing is lost on the way.

On a model instance the field's value is always a `Sealed`: it holds the token (as
loaded) or the text (as assigned), encrypts when saved, decrypts only when `reveal()`
is called (where an adapter or a signature needs the text), and prints as `…abcd`.
"""

import base64
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import exceptions
from django.db import models
from django.db.models.query_utils import DeferredAttribute

DERIVED_KEY_INFO = b"aura-orchestrator encryption key v1"
HINT_CHARS = 4


class SecretUnreadable(Exception):
    """A stored token no configured key decrypts (a key removed too early, or the
    database restored under other keys)."""


@functools.lru_cache(maxsize=4)
def derived_key(secret_key: str) -> bytes:
    """The Fernet key derived from Django's SECRET_KEY (HKDF-SHA256; once per key: a
    provider's key is revealed on every call)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DERIVED_KEY_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(raw)


def configured_keys() -> tuple[bytes, ...]:
    """The keys in use, first the one that encrypts, the derived one last."""
    keys = tuple(k.strip().encode() for k in settings.ENCRYPTION_KEYS if k.strip())
    derived = derived_key(settings.SECRET_KEY)
    return (*keys, derived) if derived not in keys else keys


@functools.lru_cache(maxsize=4)
def _multi(keys: tuple[bytes, ...]) -> tuple[MultiFernet, Fernet]:
    fernets = [Fernet(k) for k in keys]
    return MultiFernet(fernets), fernets[0]


def _fernets() -> tuple[MultiFernet, Fernet]:
    # Keyed by the settings' value: a test's override_settings takes effect at once.
    return _multi(configured_keys())


def encrypt(text: str) -> str:
    return _fernets()[0].encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernets()[0].decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with AURA_ENCRYPTION_KEYS: keep the key it "
            "was encrypted with in the list (after the new one) until `manage.py "
            "rotate_encryption_key` has run."
        ) from None


def is_current(token: str) -> bool:
    """Whether `token` is encrypted with the first key (nothing to rotate)."""
    try:
        _fernets()[1].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    """`token` re-encrypted with the first key (its timestamp kept)."""
    try:
        return _fernets()[0].rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("A stored secret cannot be decrypted with any key.") from None


def hint(text: str) -> str:
    """What may be shown of a secret: its last four characters."""
    return f"…{text[-HINT_CHARS:]}" if len(text) > HINT_CHARS else "…"


class Sealed:
    """A secret as a model holds it. `reveal()` is the only way to its text; str() and
    repr() show `…abcd` at most, pickling carries the token only."""

    __slots__ = ("_text", "_token")

    def __init__(self, *, text: str | None = None, token: str | None = None) -> None:
        self._text = text
        self._token = token

    @classmethod
    def of(cls, value: "Sealed | str | None") -> "Sealed":
        """An assigned value: a Sealed as it is, a str as the secret's text."""
        if isinstance(value, Sealed):
            return value
        return cls(text=value or "")

    def __bool__(self) -> bool:
        return bool(self._text) if self._token is None else bool(self._token)

    def reveal(self) -> str:
        if self._text is None:
            self._text = decrypt(self._token or "")
        return self._text

    @property
    def token(self) -> str:
        """The column's value: "" when empty, else the Fernet token (encrypted once)."""
        if self._token is None:
            self._token = encrypt(self._text) if self._text else ""
        return self._token

    @property
    def hint(self) -> str:
        """`…abcd`, or "" when empty or unreadable with the configured keys."""
        if not self:
            return ""
        try:
            return hint(self.reveal())
        except SecretUnreadable:
            return ""

    def __repr__(self) -> str:
        return f"Sealed({self.hint or 'unreadable'})" if self else "Sealed(empty)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_from_token, (self.token,))

    def __copy__(self) -> "Sealed":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "Sealed":
        return self


def _from_token(token: str) -> Sealed:
    return Sealed(token=token)


class _SealedAttribute(DeferredAttribute):
    """Every value assigned to the field becomes a Sealed (a str is the secret's text)."""

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = Sealed.of(value)


if TYPE_CHECKING:  # generic for the type checker only: assigned str | Sealed, read Sealed
    _TextField = models.TextField[Sealed | str, Sealed]
else:
    _TextField = models.TextField


class EncryptedTextField(_TextField):
    """A secret, stored as a Fernet token (see the module). Never a form field: each
    form that takes a secret has its own write-only field and assigns the text."""

    descriptor_class = _SealedAttribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Sealed:
        return Sealed(token=value or "")

    def to_python(self, value: Any) -> Sealed:
        # A serializer's string is the column's, a token (`value_to_string`).
        if isinstance(value, Sealed):
            return value
        return Sealed(token=value or "")

    def get_prep_value(self, value: Any) -> str:
        return Sealed.of(value).token

    def value_to_string(self, obj: models.Model) -> str:
        return Sealed.of(self.value_from_object(obj)).token

    def validate(self, value: Any, model_instance: models.Model | None) -> None:
        if not self.blank and not Sealed.of(value):
            raise exceptions.ValidationError(self.error_messages["blank"], code="blank")

    def get_default(self) -> Sealed:
        return Sealed(text="")


def encrypted_fields() -> Iterable[tuple[type[models.Model], EncryptedTextField]]:
    """Every (model, field) that holds an encrypted value."""
    from django.apps import apps

    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            if isinstance(f, EncryptedTextField):
                yield model, f


def _recrypt_column(app_label: str, model_name: str, field_name: str, *, forward: bool) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        connection = schema_editor.connection
        table = connection.ops.quote_name(model._meta.db_table)
        column = connection.ops.quote_name(model._meta.get_field(field_name).column)
        pk = connection.ops.quote_name(model._meta.pk.column)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {pk}, {column} FROM {table}")
            rows = cursor.fetchall()
            for row_id, value in rows:
                if not value:
                    continue
                if forward:
                    try:
                        decrypt(value)
                        continue  # already a token (the migration ran before, then back)
                    except SecretUnreadable:
                        new = encrypt(value)
                else:
                    new = decrypt(value)
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [new, row_id])

    return run


def encrypt_existing(app_label: str, model_name: str, field_name: str) -> Any:
    """The data migration that encrypts a column's values stored in clear (and, backwards,
    decrypts them): with raw SQL, since the field's value on a model is a Sealed."""
    from django.db import migrations

    return migrations.RunPython(
        _recrypt_column(app_label, model_name, field_name, forward=True),
        _recrypt_column(app_label, model_name, field_name, forward=False),
    )
