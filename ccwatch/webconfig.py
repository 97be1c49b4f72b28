"""The ``--web.config.file`` file: TLS, basic auth, headers and a rate limit for ccwatch's
own HTTP endpoint, in the Prometheus exporter-toolkit format (its
docs/web-configuration.md), so that one file serves ccwatch and the exporters next to it.

Every key exporter-toolkit knows is accepted. What Python's :mod:`ssl` cannot do at all is
refused with a message saying so (``RequireAnyClientCert``, TLS below 1.2); what it can do
only approximately (``curve_preferences``, TLS 1.3 ``cipher_suites``, ``http2``) is applied
as closely as it can be and reported as a warning, returned by :func:`load_web_config` as
data for the daemon to log once. Errors name their key path as the main config's do
(``basic_auth_users.alice: not a bcrypt hash (...)``); no error, log line or ``repr``
shows a password hash, a private key or any other secret.

The certificate is re-read when the content of its files changes (:class:`ServerTLS`):
a Kubernetes Secret volume or cert-manager can rotate it without a restart.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import re
import ssl
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TextIO

import bcrypt
import structlog
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    model_validator,
)

from ccwatch.config import StrictModel, format_validation_errors, read_yaml
from ccwatch.errors import ConfigError

__all__ = [
    "CIPHER_SUITES",
    "CLIENT_AUTH_TYPES",
    "CURVES",
    "HEADERS",
    "HTTPServerConfig",
    "LoadedWebConfig",
    "RateLimit",
    "ServerTLS",
    "TLSServerConfig",
    "WebConfigFile",
    "hash_password",
    "hash_password_command",
    "load_web_config",
    "parse_go_duration",
]

#: The structlog logger of the certificate reloads (``tls_reloaded``, ``tls_reload_failed``).
LOGGER_NAME: Final = "ccwatch.web"

# --------------------------------------------------------------------------- vocabularies

#: Go's crypto/tls cipher suite names (``tls.CipherSuites()`` and
#: ``tls.InsecureCipherSuites()``) -> OpenSSL's name; ``None`` for the TLS 1.3 suites,
#: which Python's ssl does not let a program choose (nor does Go: it ignores them too).
CIPHER_SUITES: Final[Mapping[str, str | None]] = types.MappingProxyType(
    {
        # TLS 1.3
        "TLS_AES_128_GCM_SHA256": None,
        "TLS_AES_256_GCM_SHA384": None,
        "TLS_CHACHA20_POLY1305_SHA256": None,
        # TLS 1.0 - 1.2, ECDHE
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
        # TLS 1.0 - 1.2, RSA key exchange
        "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    }
)

#: Go's ``tls.CurveID`` names -> OpenSSL's; ``None``: no way to set it from Python.
CURVES: Final[Mapping[str, str | None]] = types.MappingProxyType(
    {
        "CurveP256": "prime256v1",
        "CurveP384": "secp384r1",
        "CurveP521": "secp521r1",
        "X25519": "X25519",
        "X25519MLKEM768": None,
    }
)

_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

#: The ``client_auth_type`` values ccwatch serves -> the server context's ``verify_mode``.
CLIENT_AUTH_TYPES: Final[Mapping[str, ssl.VerifyMode]] = types.MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)

#: Values exporter-toolkit knows that ask for a certificate without verifying it.
_UNVERIFIED_CLIENT_AUTH: Final = {
    "RequestClientCert": "VerifyClientCertIfGiven or RequireAndVerifyClientCert",
    "RequireAnyClientCert": "RequireAndVerifyClientCert",
    "RequireClientCert": "RequireAndVerifyClientCert",  # exporter-toolkit's old spelling
}

#: The response headers the file may set -> the values allowed (``None``: any); as
#: exporter-toolkit's, which keeps this list closed on purpose. An empty value unsets one.
HEADERS: Final[Mapping[str, tuple[str, ...] | None]] = types.MappingProxyType(
    {
        "Content-Security-Policy": None,
        "Strict-Transport-Security": None,
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": None,
    }
)

# --------------------------------------------------------------------------- value checks


def _check_client_auth_type(value: str) -> str:
    if value == "":
        return "NoClientCert"
    if value in _UNVERIFIED_CLIENT_AUTH:
        raise ValueError(
            f"{value} asks for a client certificate without verifying it, which Python's ssl "
            f"cannot do (and which authenticates nobody): use {_UNVERIFIED_CLIENT_AUTH[value]} "
            "with client_ca_file"
        )
    if value not in CLIENT_AUTH_TYPES:
        raise ValueError(
            f"unknown client_auth_type {value!r}: expected one of {', '.join(CLIENT_AUTH_TYPES)}"
        )
    return value


def _check_tls_version(value: str) -> str:
    if value in ("TLS10", "TLS11"):
        raise ValueError(f"ccwatch does not serve TLS below 1.2 ({value}): use TLS12 or TLS13")
    if value not in _TLS_VERSIONS:
        raise ValueError(f"unknown TLS version {value!r}: expected TLS12 or TLS13")
    return value


def _check_cipher_suite(value: str) -> str:
    if value not in CIPHER_SUITES:
        raise ValueError(
            f"unknown cipher suite {value!r}: expected a Go crypto/tls name such as "
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        )
    return value


def _check_curve(value: str) -> str:
    if value not in CURVES:
        raise ValueError(f"unknown curve {value!r}: expected one of {', '.join(CURVES)}")
    return value


_BCRYPT_RE = re.compile(r"^\$2([aby])\$(\d\d)\$([./A-Za-z0-9]{53})$")
_OTHER_HASHES = (
    ("$2", "an unknown bcrypt variant: expected $2a$, $2b$ or $2y$"),
    ("$1$", "an MD5 crypt hash"),
    ("$apr1$", "an Apache MD5 hash"),
    ("$5$", "a SHA-256 crypt hash"),
    ("$6$", "a SHA-512 crypt hash"),
    ("$y$", "a yescrypt hash"),
    ("$argon2", "an Argon2 hash"),
    ("{SHA}", "an htpasswd SHA-1 hash"),
)


def _bcrypt_problem(value: str) -> str | None:
    """Why ``value`` is not a bcrypt hash exporter-toolkit and ccwatch accept, or None.

    Cheap: a pattern, and one bcrypt run at cost 4 (about a millisecond) that makes the
    library parse the salt; never the hash's own cost. The message never quotes the value.
    """
    match = _BCRYPT_RE.match(value)
    if match is None:
        if not value:
            return "empty"
        if value.startswith("$2") and re.match(r"^\$2[aby]\$\d\d\$", value):
            return f"expected 53 characters after the cost, found {len(value) - 7}"
        for prefix, what in _OTHER_HASHES:
            if value.startswith(prefix):
                return f"{what}; ccwatch, as exporter-toolkit, takes bcrypt only"
        return "a plain password? write its bcrypt hash"
    cost = int(match.group(2))
    if not 4 <= cost <= 31:
        return f"the cost must be 04 to 31, not {match.group(2)}"
    cheap = f"$2{match.group(1)}$04${match.group(3)}"
    try:
        bcrypt.checkpw(b"", cheap.encode("ascii"))
    except ValueError:
        return "the salt is not valid bcrypt base64"
    return None


def _check_bcrypt(value: object) -> object:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise ValueError("not a bcrypt hash (expected a string)")
    problem = _bcrypt_problem(value)
    if problem is not None:
        raise ValueError(f"not a bcrypt hash ({problem}); make one with: ccwatch hash-password")
    return value


def _header_value(value: object) -> object:
    """YAML reads ``X-XSS-Protection: 1`` as a number, Go's map[string]string as "1" (and
    a header written without a value as "", unset)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


_GO_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w|y)")
_GO_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}


def parse_go_duration(value: object) -> float:
    """A duration as Go's ``time.ParseDuration`` (``1s``, ``100ms``, ``1m30s``, ``1.5s``) or
    Prometheus writes it (``1d``), in seconds. Zero is allowed (``0``, ``0s``): exporter-
    toolkit's ``rate_limit.interval: 0`` turns the limiter off."""
    hint = "write it with a unit, such as 1s, 100ms or 1m30s (0 turns it off)"
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {hint}")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        raise ValueError(f"invalid duration {value!r}: {hint}")
    if not isinstance(value, str):
        raise ValueError(f"invalid duration: {hint}")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    text = text.removeprefix("+")
    if text == "0":
        return 0.0
    position, seconds = 0, 0.0
    for match in _GO_DURATION_RE.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"invalid duration {value!r}: {hint}")
    return seconds


GoDuration = Annotated[
    float,
    BeforeValidator(parse_go_duration),
    PlainSerializer(lambda seconds: f"{seconds:g}s", return_type=str),
]
BcryptHash = Annotated[SecretStr, BeforeValidator(_check_bcrypt)]
TLSVersionName = Annotated[str, AfterValidator(_check_tls_version)]
ClientAuthType = Annotated[str, AfterValidator(_check_client_auth_type)]
CipherSuiteName = Annotated[str, AfterValidator(_check_cipher_suite)]
CurveName = Annotated[str, AfterValidator(_check_curve)]
HeaderValue = Annotated[str, BeforeValidator(_header_value)]

# --------------------------------------------------------------------------- the model


class _WebModel(StrictModel):
    """A key written with no value (``basic_auth_users:``) is unset, as in Go's YAML."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class TLSServerConfig(_WebModel):
    """``tls_server_config``. Relative file names are relative to the web config file."""

    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str | None = None
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[CipherSuiteName] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[CurveName] = Field(default_factory=list)


class HTTPServerConfig(_WebModel):
    """``http_server_config``."""

    #: Accepted for compatibility: ccwatch's server (aiohttp) speaks HTTP/1.1 only.
    http2: bool = True
    headers: dict[str, HeaderValue] = Field(default_factory=dict)


class RateLimit(_WebModel):
    """``rate_limit``: token buckets per client, after basic auth (see
    :class:`ccwatch.webauth.RateLimit`); ``interval: 0`` turns it off."""

    interval: GoDuration = 0.0
    burst: int = Field(default=0, ge=0, strict=True)


class WebConfigFile(_WebModel):
    """The whole file, as written."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, BcryptHash] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None


# --------------------------------------------------------------------------- TLS


class _TLSProblem(Exception):
    """A TLS file or setting that does not load; ``key`` is its key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class _EncryptedKeyError(Exception):
    pass


def _refuse_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise _EncryptedKeyError


@contextlib.contextmanager
def _pem_path(data: bytes) -> Iterator[str]:
    """A path ``load_cert_chain`` can open holding ``data``: an anonymous in-memory file
    on Linux (the key never touches a disk), else a 0600 temporary file deleted at once."""
    memfd_create: Callable[[str, int], int] | None = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create("ccwatch-pem", getattr(os, "MFD_CLOEXEC", 0))
        try:
            with open(fd, "wb", closefd=False) as out:
                out.write(data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="ccwatch-", suffix=".pem")  # mode 0600
    try:
        with open(fd, "wb") as out:
            out.write(data)
        yield path
    finally:
        os.unlink(path)


@dataclass(frozen=True)
class _Material:
    """The bytes of one certificate, key and client CA, read once."""

    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    ca: bytes | None = field(repr=False)

    @property
    def digest(self) -> bytes:
        h = hashlib.sha256()
        for part in (self.cert, self.key, self.ca or b""):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.digest()


@dataclass(frozen=True)
class _TLSSettings:
    """Everything a server context is built from: settings, and where the PEM comes from
    (a file, re-read on change, or inline text)."""

    cert_file: str | None
    key_file: str | None
    ca_file: str | None
    cert_pem: bytes | None = field(repr=False)
    key_pem: bytes | None = field(repr=False)
    ca_pem: bytes | None = field(repr=False)
    verify_mode: ssl.VerifyMode
    minimum_version: ssl.TLSVersion
    maximum_version: ssl.TLSVersion
    ciphers: str | None
    prefer_server_ciphers: bool
    curve: str | None

    @property
    def cert_key(self) -> str:
        return "tls_server_config." + ("cert_file" if self.cert_file else "cert")

    @property
    def key_key(self) -> str:
        return "tls_server_config." + ("key_file" if self.key_file else "key")

    @property
    def ca_key(self) -> str:
        return "tls_server_config." + ("client_ca_file" if self.ca_file else "client_ca")

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.ca_file) if f)

    def read(self) -> _Material:
        """The PEM bytes: each file read once."""

        def one(path: str | None, inline: bytes | None, key: str) -> bytes | None:
            if path is None:
                return inline
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise _TLSProblem(key, f"cannot read {path!r}: {exc.strerror}") from None

        cert = one(self.cert_file, self.cert_pem, self.cert_key)
        key = one(self.key_file, self.key_pem, self.key_key)
        # load_web_config made sure of both
        assert cert is not None
        assert key is not None
        ca = one(self.ca_file, self.ca_pem, self.ca_key)
        return _Material(cert, key, ca)

    def where(self, path: str | None) -> str:
        return f" from {path!r}" if path else ""


class _AlertingSSLObject(ssl.SSLObject):
    """An ``SSLObject`` that gets a failed server handshake's TLS alert sent.

    asyncio (whose servers aiohttp uses) closes the connection as soon as a handshake
    fails, dropping the alert OpenSSL has just written: the client sees a reset instead
    of the reason (``protocol version``, ``certificate required``). This reports "want
    read" once instead, so that asyncio sends what OpenSSL wrote, and fails the next
    time, when the client hangs up or writes (the server's handshake deadline,
    :data:`ccwatch.web.HANDSHAKE_TIMEOUT`, bounds a client that does neither). uvloop's
    SSL protocol is a port of asyncio's and behaves the same (it calls the context's
    ``wrap_bio`` and sends what is pending on "want read"); the handshake tests run on
    both loops.
    """

    _outgoing: ssl.MemoryBIO | None = None
    _failure: ssl.SSLError | None = None

    def do_handshake(self) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            if not self.server_side or self._outgoing is None or not self._outgoing.pending:
                raise
            self._failure = exc
            raise ssl.SSLWantReadError("a TLS alert to send before failing") from exc


class _ServerContext(ssl.SSLContext):
    """The server context; see :class:`_AlertingSSLObject`."""

    sslobject_class = _AlertingSSLObject

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if isinstance(obj, _AlertingSSLObject):
            obj._outgoing = outgoing
        return obj


def _diagnose(settings: _TLSSettings, material: _Material, exc: ssl.SSLError) -> _TLSProblem:
    """Which of the certificate and the key did not load (OpenSSL says "PEM lib")."""
    reason = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", exc.reason or exc.strerror or str(exc))
    if exc.reason == "KEY_VALUES_MISMATCH":
        return _TLSProblem(
            settings.key_key,
            f"the key does not match the certificate{settings.where(settings.cert_file)} "
            f"({reason})",
        )
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cadata=material.cert.decode("latin-1"))
    except (ssl.SSLError, ValueError):
        return _TLSProblem(
            settings.cert_key,
            f"no PEM certificate could be read{settings.where(settings.cert_file)}",
        )
    return _TLSProblem(
        settings.key_key,
        f"no PEM private key could be read{settings.where(settings.key_file)} ({reason})",
    )


def _build_context(settings: _TLSSettings, material: _Material) -> ssl.SSLContext:
    """A server context from ``settings`` and ``material``; :class:`_TLSProblem` if the
    certificate, key or client CA does not load."""
    context = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION
    if settings.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.minimum_version = settings.minimum_version
    context.maximum_version = settings.maximum_version
    if settings.ciphers:
        context.set_ciphers(settings.ciphers)
    if settings.curve:
        context.set_ecdh_curve(settings.curve)
    context.verify_mode = settings.verify_mode
    if settings.verify_mode != ssl.CERT_NONE:
        if material.ca is not None:
            try:
                context.load_verify_locations(cadata=material.ca.decode("latin-1"))
            except (ssl.SSLError, ValueError):
                raise _TLSProblem(
                    settings.ca_key,
                    f"no PEM certificate could be read{settings.where(settings.ca_file)}",
                ) from None
        else:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    with _pem_path(material.cert) as certfile, _pem_path(material.key) as keyfile:
        try:
            context.load_cert_chain(certfile, keyfile, password=_refuse_password)
        except _EncryptedKeyError:
            raise _TLSProblem(
                settings.key_key,
                "the private key is encrypted: ccwatch, as exporter-toolkit, needs it "
                "unencrypted (protect the file instead)",
            ) from None
        except ssl.SSLError as exc:
            raise _diagnose(settings, material, exc) from None
    return context


class ServerTLS:
    """The server's TLS: an ssl.SSLContext for the listening socket whose certificate is
    re-read when its files change.

    A listening socket's context cannot swap its certificate, so :attr:`context` has an
    ``sni_callback``: at every handshake (at most every :attr:`check_interval` seconds) it
    calls :meth:`refresh`, then hands the handshake to the current inner context, built
    with the same settings from the newest certificate and key that load.
    """

    #: Seconds between two checks of the files from the handshake callback.
    check_interval: float = 1.0

    def __init__(self, settings: _TLSSettings, allowed_sans: frozenset[str] = frozenset()) -> None:
        self._settings = settings
        #: ``client_allowed_sans`` (the web layer checks them per connection)
        self.allowed_sans = allowed_sans
        material = settings.read()
        #: pass to aiohttp's ``TCPSite(ssl_context=...)``
        self.context = _build_context(settings, material)
        self.context.sni_callback = self._on_handshake
        self._inner = self.context
        self._digest = material.digest
        self._failed: bytes | None = None
        self._lock = threading.Lock()
        self._last_check = time.monotonic()

    def __repr__(self) -> str:
        return f"ServerTLS(files={list(self.files)!r}, allowed_sans={sorted(self.allowed_sans)})"

    @property
    def files(self) -> tuple[str, ...]:
        """The certificate, key and client CA files (not the inline ones)."""
        return self._settings.files

    @property
    def current(self) -> ssl.SSLContext:
        """The context new handshakes get."""
        return self._inner

    def _paths(self) -> dict[str, str]:
        s = self._settings
        names = {"cert_file": s.cert_file, "key_file": s.key_file, "client_ca_file": s.ca_file}
        return {name: path for name, path in names.items() if path}

    def refresh(self) -> bool:
        """Re-read the certificate and key (and client CA) files; when their content
        changed, build a new inner context from them. False when nothing changed, or when
        the new files do not load: then the old certificate stays, and one
        ``tls_reload_failed`` error is logged per distinct bad content."""
        if not self.files:
            return False
        log = structlog.get_logger(LOGGER_NAME)
        with self._lock:
            try:
                material = self._settings.read()
            except _TLSProblem as problem:
                marker = hashlib.sha256(problem.message.encode()).digest()
                if marker != self._failed:
                    self._failed = marker
                    log.error("tls_reload_failed", **self._paths(), error=str(problem))
                return False
            digest = material.digest
            if digest == self._digest:
                self._failed = None
                return False
            if digest == self._failed:
                return False
            try:
                context = _build_context(self._settings, material)
            except _TLSProblem as problem:
                self._failed = digest
                log.error("tls_reload_failed", **self._paths(), error=str(problem))
                return False
            self._inner = context
            self._digest = digest
            self._failed = None
        log.info("tls_reloaded", **self._paths())
        return True

    def _on_handshake(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        # Never raise here: ssl would fail the handshake and report an unraisable error.
        try:
            now = time.monotonic()
            if now - self._last_check >= self.check_interval:
                self._last_check = now
                self.refresh()
            inner = self._inner
            if inner is not context:
                ssl_object.context = inner
        except Exception as exc:
            structlog.get_logger(LOGGER_NAME).error("tls_reload_failed", error=repr(exc))


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedWebConfig:
    """A valid web config file, ready for the web layer."""

    #: the file, absolute
    path: str
    config: WebConfigFile
    #: (key path, message): settings applied only approximately; one log line each
    warnings: tuple[tuple[str, str], ...]
    #: the configured response headers (non-empty values only)
    headers: Mapping[str, str]
    #: user name -> bcrypt hash (never in a repr)
    users: Mapping[str, bytes] = field(repr=False)
    #: None: plain HTTP
    tls: ServerTLS | None
    #: (interval seconds, burst); None when absent or interval 0
    rate_limit: tuple[float, int] | None

    @property
    def requires_client_cert(self) -> bool:
        """TLS with ``client_auth_type: RequireAndVerifyClientCert``."""
        return self.tls is not None and self.tls.context.verify_mode == ssl.CERT_REQUIRED

    def fingerprint(self) -> str:
        """Changes when this file or a file it names changes (content, not mtime)."""
        digest = hashlib.sha256()
        for name in (self.path, *(self.tls.files if self.tls is not None else ())):
            digest.update(name.encode() + b"\0")
            try:
                with open(name, "rb") as f:
                    digest.update(hashlib.sha256(f.read()).digest())
            except OSError as exc:
                digest.update(f"unreadable {exc.errno}".encode())
        return digest.hexdigest()

    def summary(self) -> str:
        """``TLS, client certificates required, 2 basic auth users``."""
        parts = []
        if self.tls is None:
            parts.append("plain HTTP")
        else:
            parts.append("TLS")
            mode = self.tls.context.verify_mode
            if mode == ssl.CERT_REQUIRED:
                parts.append("client certificates required")
            elif mode == ssl.CERT_OPTIONAL:
                parts.append("client certificates verified if given")
        count = len(self.users)
        plural = "" if count == 1 else "s"
        parts.append(f"{count} basic auth user{plural}" if count else "no basic auth")
        if self.rate_limit is not None:
            interval, burst = self.rate_limit
            parts.append(f"rate limit 1 per {interval:g}s, burst {burst}")
        return ", ".join(parts)


def _resolve(base: str, name: str | None) -> str | None:
    if not name:
        return None
    return name if os.path.isabs(name) else os.path.join(base, name)


def _cipher_plan(
    names: list[str], errors: list[str], warnings: list[tuple[str, str]]
) -> str | None:
    """The OpenSSL cipher string for ``cipher_suites``, or None for OpenSSL's defaults."""
    key = "tls_server_config.cipher_suites"
    wanted = list(dict.fromkeys(names))
    tls13 = [name for name in wanted if CIPHER_SUITES[name] is None]
    tls12 = [(name, openssl) for name in wanted if (openssl := CIPHER_SUITES[name]) is not None]
    notes = []
    if tls13:
        notes.append(
            f"{', '.join(tls13)}: TLS 1.3 suites cannot be chosen with Python's ssl "
            "(nor with Go's); OpenSSL's TLS 1.3 suites apply"
        )
    cipher_string = None
    if tls12:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            probe.set_ciphers(":".join(openssl for _, openssl in tls12))
        except ssl.SSLError:
            errors.append(
                f"{key}: none of the TLS 1.2 suites is available in this OpenSSL "
                f"({ssl.OPENSSL_VERSION})"
            )
            return None
        available = {cipher["name"] for cipher in probe.get_ciphers()}
        missing = [name for name, openssl in tls12 if openssl not in available]
        if missing:
            notes.append(f"{', '.join(missing)}: not available in this OpenSSL, left out")
        cipher_string = ":".join(openssl for _, openssl in tls12 if openssl in available)
    if notes:
        warnings.append((key, "; ".join(notes)))
    return cipher_string


def _curve_plan(names: list[str], warnings: list[tuple[str, str]]) -> str | None:
    """The one curve Python's ``set_ecdh_curve`` takes: the first of ``names`` that works."""
    if not names:
        return None
    wanted = list(dict.fromkeys(names))
    skipped: list[str] = []
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for i, name in enumerate(wanted):
        openssl = CURVES[name]
        if openssl is not None:
            try:
                probe.set_ecdh_curve(openssl)
            except (ValueError, ssl.SSLError):
                pass
            else:
                rest = wanted[i + 1 :]
                if skipped or rest:
                    note = f"Python's ssl takes one curve: {name} ({openssl}) only"
                    if rest:
                        note += f"; not offered: {', '.join(rest)}"
                    if skipped:
                        note += f"; not available to Python's ssl: {', '.join(skipped)}"
                    warnings.append(("tls_server_config.curve_preferences", note))
                return openssl
        skipped.append(name)
    warnings.append(
        (
            "tls_server_config.curve_preferences",
            f"none of {', '.join(wanted)} can be set with Python's ssl: OpenSSL's default "
            "curves apply",
        )
    )
    return None


def _tls_settings(
    tls: TLSServerConfig, base: str, errors: list[str], warnings: list[tuple[str, str]]
) -> tuple[_TLSSettings, frozenset[str]] | None:
    """The checks across keys of ``tls_server_config``; None if any failed."""
    before = len(errors)
    p = "tls_server_config"
    key_text = tls.key.get_secret_value() if tls.key is not None else ""
    pairs = (
        ("cert", tls.cert or "", "cert_file", tls.cert_file or ""),
        ("key", key_text, "key_file", tls.key_file or ""),
        ("client_ca", tls.client_ca or "", "client_ca_file", tls.client_ca_file or ""),
    )
    for inline, inline_value, file, file_value in pairs:
        if inline_value and file_value:
            errors.append(f"{p}.{inline}: set {inline} or {file}, not both")
    for inline, inline_value, file, file_value in pairs[:2]:
        if not inline_value and not file_value:
            errors.append(
                f"{p}.{file}: required key is missing: set {file} or {inline} "
                "(TLS needs a certificate and its key)"
            )
    verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    has_ca = bool(tls.client_ca or tls.client_ca_file)
    if has_ca and verify_mode == ssl.CERT_NONE:
        name = "client_ca_file" if tls.client_ca_file else "client_ca"
        errors.append(
            f"{p}.{name}: a client CA needs client_auth_type RequireAndVerifyClientCert "
            "(or VerifyClientCertIfGiven); client_auth_type is NoClientCert"
        )
    if tls.client_allowed_sans and tls.client_auth_type != "RequireAndVerifyClientCert":
        errors.append(
            f"{p}.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert "
            f"(it is {tls.client_auth_type})"
        )
    if _TLS_VERSIONS[tls.max_version] < _TLS_VERSIONS[tls.min_version]:
        errors.append(f"{p}.max_version: {tls.max_version} is below min_version {tls.min_version}")
    if verify_mode != ssl.CERT_NONE and not has_ca:
        warnings.append(
            (
                f"{p}.client_ca_file",
                f"not set: client certificates ({tls.client_auth_type}) are verified against "
                "the system's CA certificates, as exporter-toolkit does; set client_ca_file "
                "to the CA that signs them",
            )
        )
    ciphers = _cipher_plan(tls.cipher_suites, errors, warnings)
    curve = _curve_plan(tls.curve_preferences, warnings)
    if len(errors) > before:
        return None
    settings = _TLSSettings(
        cert_file=_resolve(base, tls.cert_file),
        key_file=_resolve(base, tls.key_file),
        ca_file=_resolve(base, tls.client_ca_file),
        cert_pem=tls.cert.encode() if tls.cert else None,
        key_pem=key_text.encode() if key_text else None,
        ca_pem=tls.client_ca.encode() if tls.client_ca else None,
        verify_mode=verify_mode,
        minimum_version=_TLS_VERSIONS[tls.min_version],
        maximum_version=_TLS_VERSIONS[tls.max_version],
        ciphers=ciphers,
        prefer_server_ciphers=tls.prefer_server_cipher_suites,
        curve=curve,
    )
    return settings, frozenset(tls.client_allowed_sans)


def _header_errors(headers: Mapping[str, str]) -> list[str]:
    errors = []
    for name, value in headers.items():
        key = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            errors.append(
                f"{key}: HTTP header {name!r} can not be configured; the file may set "
                f"{', '.join(HEADERS)}"
            )
            continue
        allowed = HEADERS[name]
        if allowed is not None and value and value not in allowed:
            errors.append(
                f"{key}: invalid value {value!r}: expected {' or '.join(allowed)} (or empty)"
            )
        elif any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            errors.append(f"{key}: control characters (a line break?) are not allowed")
    return errors


def load_web_config(path: str | os.PathLike[str]) -> LoadedWebConfig:
    """Read and check a web config file, loading its certificate and key.

    Raises :class:`ConfigError` with one ``key.path: problem`` line per problem.
    """
    absolute = os.path.abspath(os.fspath(path))
    data = read_yaml(absolute)
    if data is None:
        data = {}  # an empty file: plain HTTP, no auth, as in exporter-toolkit
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): {absolute} must be a YAML mapping"])
    try:
        config = WebConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc)) from None

    errors: list[str] = []
    warnings: list[tuple[str, str]] = []
    errors += _header_errors(config.http_server_config.headers)
    if "http2" in config.http_server_config.model_fields_set and config.http_server_config.http2:
        warnings.append(
            (
                "http_server_config.http2",
                "ccwatch serves HTTP/1.1 only (aiohttp has no HTTP/2 server); ignored",
            )
        )
    tls: ServerTLS | None = None
    if config.tls_server_config is not None:
        planned = _tls_settings(
            config.tls_server_config, os.path.dirname(absolute), errors, warnings
        )
        if planned is not None:
            settings, allowed_sans = planned
            try:
                tls = ServerTLS(settings, allowed_sans)
            except _TLSProblem as problem:
                errors.append(str(problem))
    if errors:
        raise ConfigError(errors)

    limit = config.rate_limit
    return LoadedWebConfig(
        path=absolute,
        config=config,
        warnings=tuple(warnings),
        headers=types.MappingProxyType(
            {name: value for name, value in config.http_server_config.headers.items() if value}
        ),
        users=types.MappingProxyType(
            {
                name: secret.get_secret_value().encode()
                for name, secret in config.basic_auth_users.items()
            }
        ),
        tls=tls,
        rate_limit=(limit.interval, limit.burst) if limit is not None and limit.interval else None,
    )


# --------------------------------------------------------------------------- hash-password

#: bcrypt reads at most this many bytes of a password (bcrypt 5 refuses longer ones).
MAX_PASSWORD_BYTES: Final = 72


def hash_password(password: str, cost: int = 10) -> str:
    """The bcrypt hash (``$2b$...``) of ``password`` for ``basic_auth_users``.

    ValueError, with a message for a person, for an empty password, one longer than 72
    bytes in UTF-8, or a cost outside 4..31.
    """
    if not 4 <= cost <= 31:
        raise ValueError(f"the cost must be 4 to 31, not {cost}")
    raw = password.encode("utf-8")
    if not raw:
        raise ValueError("the password is empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(
            f"the password is {len(raw)} bytes long in UTF-8; bcrypt uses at most "
            f"{MAX_PASSWORD_BYTES}: choose a shorter one"
        )
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost)).decode("ascii")


def _read_line(stdin: TextIO) -> str | None:
    """One line of ``stdin`` without its line ending; None at end of input."""
    buffer = getattr(stdin, "buffer", None)
    if buffer is not None:
        raw: bytes = buffer.readline()
        if not raw:
            return None
        line = raw.decode("utf-8")
    else:
        line = stdin.readline()
        if not line:
            return None
    return line.removesuffix("\n").removesuffix("\r")


def hash_password_command(
    cost: int = 10,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``ccwatch hash-password``: prompt twice on a terminal, else read one line from
    standard input; print the hash. Exit status 0, or 1 with a message."""
    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        if stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password again: ") != password:
                print("hash-password: the passwords do not match", file=err)
                return 1
        else:
            line = _read_line(stdin)
            if line is None:
                print("hash-password: no password on standard input", file=err)
                return 1
            password = line
        hashed = hash_password(password, cost)
    except (EOFError, KeyboardInterrupt):
        print("\nhash-password: no password given", file=err)
        return 1
    except UnicodeDecodeError:
        print("hash-password: the password is not UTF-8 text", file=err)
        return 1
    except ValueError as exc:
        print(f"hash-password: {exc}", file=err)
        return 1
    print(hashed, file=out)
    return 0
