"""The web config file (``--web.config.file``, exporter-toolkit's format): one invalid file
per rule, exporter-toolkit's sample, real TLS handshakes on 127.0.0.1 against the server
context (versions, client certificates, certificate rotation), ``ccwatch hash-password``
and ``ccwatch check-config --web.config.file``.

What a TLS 1.1 client sees: Debian's OpenSSL refuses TLS 1.1 on the client side unless the
client lowers its own security level, so the tests do (and show that such a client does
get TLS 1.1 from a server that allows it). ccwatch's server then fails the handshake with
``UNSUPPORTED_PROTOCOL`` and the client receives the server's alert:
``[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version``. (A bare asyncio
server would drop that alert and reset the connection; see ``_AlertingSSLObject``.)
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import structlog
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ccwatch.cli import main
from ccwatch.errors import ConfigError
from ccwatch.webconfig import (
    CIPHER_SUITES,
    ServerTLS,
    hash_password,
    load_web_config,
    parse_go_duration,
)

TESTDATA = Path(__file__).parent / "testdata" / "webconfig"
INVALID = sorted((TESTDATA / "invalid").glob("*.yml"))
SAMPLE = TESTDATA / "valid" / "exporter_toolkit_sample.yml"
#: exporter-toolkit's sample hash (cost 10)
SAMPLE_HASH = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze"
CLIENT_NAME = "prometheus.monitoring.svc"
#: the handshake tests run on both event loops: the alerts rely on how each loop drives
#: the server's SSLObject (see webconfig._AlertingSSLObject)
pytestmark = pytest.mark.both_loops


# --------------------------------------------------------------------------- certificates


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


@dataclass
class Certs:
    """A CA, a server certificate for 127.0.0.1 in ``dir`` (server.crt, server.key, the CA
    in ca.pem), and the odd files the invalid configs name."""

    ca: trustme.CA
    dir: Path
    server: trustme.LeafCert

    def issue(self) -> trustme.LeafCert:
        return self.ca.issue_cert("localhost", "127.0.0.1")

    def trusting(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context

    def client(self, name: str = CLIENT_NAME, ca: trustme.CA | None = None) -> ssl.SSLContext:
        """Trusting the server, presenting a certificate for ``name`` signed by ``ca``."""
        context = self.trusting()
        (ca or self.ca).issue_cert(name).configure_cert(context)
        return context

    def copy(self, source: Path) -> Path:
        target = self.dir / source.name
        shutil.copyfile(source, target)
        return target

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


def write_pair(leaf: trustme.LeafCert, cert: Path, key: Path) -> int:
    """Write ``leaf``'s certificate and key in place; its serial number."""
    cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    return serial_of(leaf)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    write_pair(server, tmp_path / "server.crt", tmp_path / "server.key")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("other").private_key_pem.write_to_path(str(tmp_path / "other.key"))
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    (tmp_path / "encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return Certs(ca, tmp_path, server)


def tls_config(certs: Certs, **tls: Any) -> Path:
    """A web config with a TLS section (cert_file and key_file unless given)."""
    section = {"cert_file": "server.crt", "key_file": "server.key", **tls}
    return certs.write("web.yml", yaml.safe_dump({"tls_server_config": section}))


def load_tls(certs: Certs, **tls: Any) -> ServerTLS:
    loaded = load_web_config(tls_config(certs, **tls))
    assert loaded.tls is not None
    return loaded.tls


# --------------------------------------------------------------------------- invalid files


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_there_is_an_invalid_file_per_rule() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_web_config_names_key_path_and_problem(path: Path, certs: Certs) -> None:
    with pytest.raises(ConfigError) as info:
        load_web_config(certs.copy(path))
    expected = expected_message(path)
    assert any(expected in line for line in info.value.errors), info.value.errors
    # a password hash, even an invalid one, never shows in an error
    with suppress(yaml.YAMLError):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("basic_auth_users"), dict):
            for value in data["basic_auth_users"].values():
                assert str(value) not in str(info.value)


def test_every_error_is_reported_at_once(certs: Certs) -> None:
    path = certs.write(
        "web.yml",
        "bogus: 1\n"
        "http_server_config: {headers: {Content-Type: x, X-Frame-Options: allow}}\n"
        "basic_auth_users: {alice: plain, bob: " + SAMPLE_HASH + "}\n"
        "rate_limit: {interval: soon}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    keys = [line.split(": ")[0] for line in info.value.errors]
    assert sorted(keys) == ["basic_auth_users.alice", "bogus", "rate_limit.interval"]
    # the headers are checked once the file's shape is right
    path = certs.write(
        "web.yml",
        "http_server_config: {headers: {Content-Type: x, X-Frame-Options: allow}}\n"
        "tls_server_config: {cert_file: server.crt, client_allowed_sans: [a]}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    keys = [line.split(": ")[0] for line in info.value.errors]
    assert keys == [
        "http_server_config.headers.Content-Type",
        "http_server_config.headers.X-Frame-Options",
        "tls_server_config.key_file",
        "tls_server_config.client_allowed_sans",
    ]


def test_an_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web\.yml: cannot read: No such file"):
        load_web_config(tmp_path / "web.yml")


# --------------------------------------------------------------------------- valid files


def test_exporter_toolkit_sample_loads_with_the_expected_warnings(certs: Certs) -> None:
    loaded = load_web_config(certs.copy(SAMPLE))
    listed = [
        line.removeprefix("# warning: ")
        for line in SAMPLE.read_text().splitlines()
        if line.startswith("# warning: ")
    ]
    assert sorted(key for key, _ in loaded.warnings) == sorted(listed)
    warnings = dict(loaded.warnings)
    assert "HTTP/1.1 only" in warnings["http_server_config.http2"]
    assert "TLS_AES_128_GCM_SHA256" in warnings["tls_server_config.cipher_suites"]
    assert warnings["tls_server_config.curve_preferences"].startswith(
        "Python's ssl takes one curve: CurveP256 (prime256v1) only; not offered: CurveP384, "
        "CurveP521, X25519"
    )

    assert loaded.path == str(certs.dir / SAMPLE.name)
    assert sorted(loaded.users) == ["alice", "bob"]
    assert loaded.users["alice"] == SAMPLE_HASH.encode()
    assert dict(loaded.headers) == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-XSS-Protection": "1",
        "Content-Security-Policy": "default-src 'self' *.test.example.net",
    }
    assert loaded.rate_limit == (1.0, 20)
    assert loaded.requires_client_cert
    assert loaded.tls is not None
    assert loaded.tls.allowed_sans == frozenset({CLIENT_NAME, "127.0.0.1"})
    context = loaded.tls.context
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.options & ssl.OP_NO_COMPRESSION
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert loaded.config.tls_server_config is not None
    configured = {CIPHER_SUITES[name] for name in loaded.config.tls_server_config.cipher_suites}
    assert tls12
    assert tls12 <= configured
    assert loaded.summary() == (
        "TLS, client certificates required, 2 basic auth users, rate limit 1 per 1s, burst 20"
    )
    # nothing secret in a repr
    assert "$2y$" not in repr(loaded)
    assert "mDwo" not in repr(loaded.config)


@pytest.mark.parametrize("text", ["", "# nothing\n", "basic_auth_users:\ntls_server_config:\n"])
def test_an_empty_file_is_plain_http_without_auth(tmp_path: Path, text: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    loaded = load_web_config(path)
    assert loaded.tls is None
    assert dict(loaded.users) == {}
    assert dict(loaded.headers) == {}
    assert loaded.rate_limit is None
    assert loaded.warnings == ()
    assert not loaded.requires_client_cert
    assert loaded.summary() == "plain HTTP, no basic auth"


def test_relative_paths_are_relative_to_the_file(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tls_config(certs)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    loaded = load_web_config(os.path.relpath(path))
    assert loaded.path == str(path)
    assert loaded.tls is not None
    assert loaded.tls.files == (str(certs.dir / "server.crt"), str(certs.dir / "server.key"))


def test_inline_cert_key_and_client_ca(certs: Certs) -> None:
    path = certs.write(
        "web.yml",
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert": certs.server.cert_chain_pems[0].bytes().decode(),
                    "key": certs.server.private_key_pem.bytes().decode(),
                    "client_ca": certs.ca.cert_pem.bytes().decode(),
                    "client_auth_type": "VerifyClientCertIfGiven",
                }
            }
        ),
    )
    loaded = load_web_config(path)
    assert loaded.tls is not None
    assert loaded.tls.context.verify_mode == ssl.CERT_OPTIONAL
    assert loaded.tls.files == ()
    assert not loaded.tls.refresh()  # nothing to re-read
    assert "PRIVATE KEY" not in repr(loaded)
    assert loaded.summary() == "TLS, client certificates verified if given, no basic auth"
    assert loaded.warnings == ()


def test_an_inline_key_never_shows_in_an_error(certs: Certs) -> None:
    other = certs.ca.issue_cert("other").private_key_pem.bytes().decode()
    path = certs.write(
        "web.yml",
        yaml.safe_dump({"tls_server_config": {"cert_file": "server.crt", "key": other}}),
    )
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert info.value.errors[0].startswith(
        "tls_server_config.key: the key does not match the certificate from '"
    )
    body = other.splitlines()[1]
    assert body not in str(info.value)


def test_prefer_server_cipher_suites_false_clears_the_option(certs: Certs) -> None:
    assert not load_tls(certs, prefer_server_cipher_suites=False).context.options & (
        ssl.OP_CIPHER_SERVER_PREFERENCE
    )
    assert load_tls(certs).context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_tls_defaults(certs: Certs) -> None:
    loaded = load_web_config(tls_config(certs))
    assert loaded.warnings == ()
    assert loaded.tls is not None
    context = loaded.tls.context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_NO_COMPRESSION
    assert loaded.summary() == "TLS, no basic auth"


@pytest.mark.parametrize(
    ("curves", "warning"),
    [
        (["CurveP384"], None),
        (["X25519"], None),
        (["X25519MLKEM768", "X25519"], "X25519 (X25519) only; not available to Python's ssl"),
        (["X25519MLKEM768"], "none of X25519MLKEM768 can be set with Python's ssl"),
    ],
)
def test_curve_preferences(certs: Certs, curves: list[str], warning: str | None) -> None:
    loaded = load_web_config(tls_config(certs, curve_preferences=curves))
    warnings = dict(loaded.warnings)
    if warning is None:
        assert warnings == {}
    else:
        assert warning in warnings["tls_server_config.curve_preferences"]


def test_cipher_suites_become_the_openssl_list(certs: Certs) -> None:
    loaded = load_web_config(
        tls_config(
            certs,
            cipher_suites=[
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_RSA_WITH_RC4_128_SHA",
            ],
        )
    )
    assert loaded.tls is not None
    tls12 = [c["name"] for c in loaded.tls.context.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert tls12 == ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]
    assert dict(loaded.warnings) == {
        "tls_server_config.cipher_suites": (
            "TLS_RSA_WITH_RC4_128_SHA: not available in this OpenSSL, left out"
        )
    }


@pytest.mark.parametrize(("http2", "warned"), [(None, False), (False, False), (True, True)])
def test_http2_is_warned_about_only_when_asked_for(
    tmp_path: Path, http2: bool | None, warned: bool
) -> None:
    section = {} if http2 is None else {"http2": http2}
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"http_server_config": section}))
    assert bool(load_web_config(path).warnings) is warned


def test_verified_client_certificates_without_a_ca_use_the_system_store(certs: Certs) -> None:
    loaded = load_web_config(tls_config(certs, client_auth_type="RequireAndVerifyClientCert"))
    assert loaded.requires_client_cert
    (warning,) = loaded.warnings
    assert warning[0] == "tls_server_config.client_ca_file"
    assert "system's CA certificates" in warning[1]


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_variants_are_accepted(tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{prefix}{SAMPLE_HASH[4:]}'\n")
    assert load_web_config(path).users["alice"].startswith(prefix.encode())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("interval: 0\nburst: 0", None),
        ("interval: 0s\nburst: 5", None),
        ("interval: 100ms\nburst: 5", (0.1, 5)),
        ("interval: 1m30s\nburst: 1", (90.0, 1)),
        ("burst: 3", None),
    ],
)
def test_rate_limit(tmp_path: Path, text: str, expected: tuple[float, int] | None) -> None:
    path = tmp_path / "web.yml"
    path.write_text("rate_limit:\n" + "".join(f"  {line}\n" for line in text.splitlines()))
    assert load_web_config(path).rate_limit == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        ("0", 0.0),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("250us", 0.00025),
        ("1h2m3s", 3723.0),
        ("1d", 86400.0),
    ],
)
def test_go_durations(value: object, seconds: float) -> None:
    assert parse_go_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "1", "s", "1s2", "1x", "-1s", True, 5, None])
def test_bad_go_durations(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(value)


def test_fingerprint_changes_with_the_file_and_the_files_it_names(certs: Certs) -> None:
    path = tls_config(certs)
    loaded = load_web_config(path)
    first = loaded.fingerprint()
    assert loaded.fingerprint() == first
    assert load_web_config(path).fingerprint() == first
    write_pair(certs.issue(), certs.dir / "server.crt", certs.dir / "server.key")
    second = loaded.fingerprint()
    assert second != first
    path.write_text(path.read_text() + "# a comment\n")
    assert loaded.fingerprint() != second


# --------------------------------------------------------------------------- handshakes


@asynccontextmanager
async def serving(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 answering ``ok`` once the handshake is done; its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"ok\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Peer:
    version: str | None
    serial: int
    answer: bytes


async def connect(port: int, context: ssl.SSLContext) -> Peer:
    """One connection: the TLS version, the server certificate's serial number and what
    the server said (a refusal after the handshake, as TLS 1.3's of a missing client
    certificate, raises here too)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), 10
    )
    try:
        answer = await asyncio.wait_for(reader.readline(), 10)
        ssl_object = writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert()
        return Peer(ssl_object.version(), int(cert["serialNumber"], 16), answer)
    finally:
        writer.close()
        with suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def tls11_client(certs: Certs) -> ssl.SSLContext:
    context = certs.trusting()
    # Debian's OpenSSL refuses TLS 1.1 on the client side unless told otherwise: lower the
    # client's own level, so that a refusal can only be the server's
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


async def test_a_tls12_client_is_served(certs: Certs) -> None:
    tls = load_tls(certs)
    client = certs.trusting()
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    async with serving(tls.context) as port:
        peer = await connect(port, client)
        assert peer.version == "TLSv1.2"
        assert peer.serial == serial_of(certs.server)
        assert peer.answer == b"ok\n"
        assert (await connect(port, certs.trusting())).version == "TLSv1.3"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_a_tls11_client_is_refused_by_the_server_with_an_alert(certs: Certs) -> None:
    # the control: this client does speak TLS 1.1 to a server that allows it
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs.server.configure_cert(permissive)
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    async with serving(permissive) as port:
        assert (await connect(port, tls11_client(certs))).version == "TLSv1.1"
    # ccwatch's server refuses it, and says why
    async with serving(load_tls(certs).context) as port:
        with pytest.raises(ssl.SSLError) as refused:
            await connect(port, tls11_client(certs))
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


async def test_min_version_tls13_refuses_a_tls12_client(certs: Certs) -> None:
    client = certs.trusting()
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    async with serving(load_tls(certs, min_version="TLS13").context) as port:
        with pytest.raises(ssl.SSLError) as refused:
            await connect(port, client)
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value
        assert (await connect(port, certs.trusting())).version == "TLSv1.3"


async def test_max_version_tls12_serves_tls12_to_a_tls13_client(certs: Certs) -> None:
    async with serving(load_tls(certs, max_version="TLS12").context) as port:
        assert (await connect(port, certs.trusting())).version == "TLSv1.2"


async def test_require_and_verify_client_cert(certs: Certs) -> None:
    tls = load_tls(certs, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.pem")
    async with serving(tls.context) as port:
        assert (await connect(port, certs.client())).answer == b"ok\n"
        with pytest.raises(ssl.SSLError) as refused:  # no certificate
            await connect(port, certs.trusting())
        assert refused.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED", refused.value
        with pytest.raises(ssl.SSLError) as refused:  # a certificate from another CA
            await connect(port, certs.client(ca=trustme.CA()))
        assert refused.value.reason == "TLSV1_ALERT_UNKNOWN_CA", refused.value


async def test_verify_client_cert_if_given(certs: Certs) -> None:
    tls = load_tls(certs, client_auth_type="VerifyClientCertIfGiven", client_ca_file="ca.pem")
    async with serving(tls.context) as port:
        assert (await connect(port, certs.trusting())).answer == b"ok\n"
        assert (await connect(port, certs.client())).answer == b"ok\n"
        with pytest.raises(ssl.SSLError):
            await connect(port, certs.client(ca=trustme.CA()))


# --------------------------------------------------------------------------- rotation


async def test_a_certificate_rewritten_in_place_is_served_to_new_connections(
    certs: Certs,
) -> None:
    tls = load_tls(certs)
    tls.check_interval = 0  # check at every handshake
    async with serving(tls.context) as port:
        assert (await connect(port, certs.trusting())).serial == serial_of(certs.server)
        new = write_pair(certs.issue(), certs.dir / "server.crt", certs.dir / "server.key")
        with structlog.testing.capture_logs() as events:
            assert (await connect(port, certs.trusting())).serial == new
            assert (await connect(port, certs.trusting())).serial == new
        assert [e["event"] for e in events] == ["tls_reloaded"]
        assert events[0]["cert_file"] == str(certs.dir / "server.crt")
        assert not tls.refresh()  # unchanged


def kubernetes_volume(directory: Path, leaf: trustme.LeafCert, stamp: str) -> int:
    """Write ``leaf`` as the kubelet updates a Secret volume: the files in a new
    timestamped directory, then ``..data`` swapped to it at once; its serial number."""
    data = directory / f"..2026_11_30_{stamp}"
    data.mkdir()
    serial = write_pair(leaf, data / "tls.crt", data / "tls.key")
    link = directory / "..data"
    old = os.readlink(link) if link.is_symlink() else None
    temporary = directory / "..data_tmp"
    temporary.symlink_to(data.name)
    os.replace(temporary, link)
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(directory / old)
    return serial


async def test_a_kubernetes_secret_volume_swap_is_served_to_new_connections(
    certs: Certs,
) -> None:
    volume = certs.dir / "secret"
    volume.mkdir()
    first = kubernetes_volume(volume, certs.issue(), "10_00_00.000000001")
    tls = load_tls(certs, cert_file="secret/tls.crt", key_file="secret/tls.key")
    tls.check_interval = 0
    async with serving(tls.context) as port:
        assert (await connect(port, certs.trusting())).serial == first
        second = kubernetes_volume(volume, certs.issue(), "11_00_00.000000002")
        assert (await connect(port, certs.trusting())).serial == second
        third = kubernetes_volume(volume, certs.issue(), "12_00_00.000000003")
        assert (await connect(port, certs.trusting())).serial == third


async def test_the_files_are_checked_at_most_every_check_interval(certs: Certs) -> None:
    tls = load_tls(certs)
    tls.check_interval = 3600
    async with serving(tls.context) as port:
        new = write_pair(certs.issue(), certs.dir / "server.crt", certs.dir / "server.key")
        assert (await connect(port, certs.trusting())).serial == serial_of(certs.server)
        assert tls.refresh()
        assert (await connect(port, certs.trusting())).serial == new


async def test_a_bad_new_pair_keeps_the_old_one_and_is_logged_once(certs: Certs) -> None:
    tls = load_tls(certs)
    tls.check_interval = 0
    cert, key = certs.dir / "server.crt", certs.dir / "server.key"
    old = serial_of(certs.server)
    async with serving(tls.context) as port:
        newer = certs.issue()
        cert.write_bytes(newer.cert_chain_pems[0].bytes())  # the key is not rewritten yet
        with structlog.testing.capture_logs() as events:
            for _ in range(3):
                assert (await connect(port, certs.trusting())).serial == old
            assert not tls.refresh()
        assert len(events) == 1, events
        (event,) = events
        assert event["event"] == "tls_reload_failed"
        assert event["log_level"] == "error"
        assert event["cert_file"] == str(cert)
        assert event["key_file"] == str(key)
        assert "does not match" in event["error"]
        assert "BEGIN" not in repr(event)
        # the key arrives: the new pair is served
        key.write_bytes(newer.private_key_pem.bytes())
        with structlog.testing.capture_logs() as events:
            assert (await connect(port, certs.trusting())).serial == serial_of(newer)
        assert [e["event"] for e in events] == ["tls_reloaded"]
        # a vanished file: the current pair stays, one error
        cert.unlink()
        with structlog.testing.capture_logs() as events:
            assert (await connect(port, certs.trusting())).serial == serial_of(newer)
            assert (await connect(port, certs.trusting())).serial == serial_of(newer)
        assert [e["event"] for e in events] == ["tls_reload_failed"]
        assert "cannot read" in events[0]["error"]


async def test_a_rotated_client_ca_is_used_for_new_connections(certs: Certs) -> None:
    tls = load_tls(certs, client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.pem")
    tls.check_interval = 0
    async with serving(tls.context) as port:
        assert (await connect(port, certs.client())).answer == b"ok\n"
        other = trustme.CA()
        other.cert_pem.write_to_path(str(certs.dir / "ca.pem"))
        assert (await connect(port, certs.client(ca=other))).answer == b"ok\n"
        with pytest.raises(ssl.SSLError):
            await connect(port, certs.client())


async def test_plain_http_to_the_tls_port_is_closed_at_once(certs: Certs) -> None:
    async with serving(load_tls(certs).context) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


# --------------------------------------------------------------------------- hash-password


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_hash_password_reads_one_line_from_a_pipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(" pässwörd \n".encode())))
    status, out, err = run_cli(["hash-password", "--cost", "4"], capsys)
    assert (status, err) == (0, "")
    hashed = out.strip()
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(" pässwörd ".encode(), hashed.encode())


def test_hash_password_prompts_twice_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal())
    answers = iter(["s3cret", "s3cret", "s3cret", "typo"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    status, out, _ = run_cli(["hash-password", "--cost", "4"], capsys)
    assert status == 0
    assert bcrypt.checkpw(b"s3cret", out.strip().encode())
    assert len(prompts) == 2
    status, out, err = run_cli(["hash-password", "--cost", "4"], capsys)
    assert (status, out) == (1, "")
    assert "the passwords do not match" in err


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "the password is empty"),
        ("x" * 73, "the password is 73 bytes long in UTF-8; bcrypt uses at most 72"),
        ("é" * 37, "the password is 74 bytes long in UTF-8"),
    ],
)
def test_hash_password_refuses(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    password: str,
    message: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    status, out, err = run_cli(["hash-password", "--cost", "4"], capsys)
    assert (status, out) == (1, "")
    assert message in err


def test_hash_password_takes_72_bytes() -> None:
    hashed = hash_password("x" * 72, cost=4)
    assert bcrypt.checkpw(b"x" * 72, hashed.encode())


def test_hash_password_as_a_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ccwatch", "hash-password", "--cost", "4"],
        input="correct horse\n",
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert bcrypt.checkpw(b"correct horse", result.stdout.strip().encode())
    result = subprocess.run(
        [sys.executable, "-m", "ccwatch", "hash-password"],
        input="y" * 73 + "\n",
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 1
    assert "73 bytes" in result.stderr
    assert result.stdout == ""
    result = subprocess.run(
        [sys.executable, "-m", "ccwatch", "hash-password", "--cost", "3"],
        input="x\n",
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 2
    assert "expected a cost from 4 to 31" in result.stderr


# --------------------------------------------------------------------------- check-config

MAIN_CONFIG = (
    "targets:\n  - {name: a, source: ece, url: 'http://127.0.0.1:1/system', entry_points: [1]}\n"
)


@pytest.fixture
def in_certs_dir(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> Certs:
    monkeypatch.chdir(certs.dir)
    certs.write("ccwatch.yml", MAIN_CONFIG)
    return certs


def test_check_config_with_a_web_config(
    in_certs_dir: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()
    in_certs_dir.write(
        "web.yml",
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAndVerifyClientCert",
                    "client_ca_file": "ca.pem",
                    "curve_preferences": ["CurveP256", "X25519"],
                },
                "basic_auth_users": {"alice": hashed, "bob": hashed},
            }
        ),
    )
    status, out, err = run_cli(
        ["check-config", "ccwatch.yml", "--web.config.file", "web.yml"], capsys
    )
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "ccwatch.yml: OK (1 targets, 5 poll jobs)"
    assert lines[1] == "web.yml: OK (TLS, client certificates required, 2 basic auth users)"
    assert lines[2].startswith(
        "  warning: tls_server_config.curve_preferences: Python's ssl takes one curve"
    )
    assert len(lines) == 3
    assert hashed not in out


def test_check_config_with_an_invalid_web_config(
    in_certs_dir: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    in_certs_dir.write(
        "web.yml",
        "tls_server_config: {cert_file: server.crt, key_file: other.key}\n"
        "basic_auth_users: {alice: hunter2}\n",
    )
    status, out, err = run_cli(["check-config", "ccwatch.yml", "--web.config.file=web.yml"], capsys)
    assert status == 1
    assert out == "ccwatch.yml: OK (1 targets, 5 poll jobs)\n"
    assert err.splitlines() == [
        "web.yml: invalid web configuration",
        "  basic_auth_users.alice: not a bcrypt hash (a plain password? write its bcrypt "
        "hash); make one with: ccwatch hash-password",
    ]
    assert "hunter2" not in err
    # the pair is checked once the file's shape is right
    in_certs_dir.write(
        "web.yml", "tls_server_config: {cert_file: server.crt, key_file: other.key}\n"
    )
    status, _, err = run_cli(["check-config", "ccwatch.yml", "--web.config.file=web.yml"], capsys)
    assert status == 1
    assert "  tls_server_config.key_file: the key does not match the certificate" in err


def test_check_config_reports_both_files(
    in_certs_dir: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    in_certs_dir.write("ccwatch.yml", "targets: []\n")
    in_certs_dir.write("web.yml", "")
    status, out, err = run_cli(["check-config", "ccwatch.yml", "--web.config.file=web.yml"], capsys)
    assert status == 1
    assert "ccwatch.yml: invalid configuration" in err
    assert out == "web.yml: OK (plain HTTP, no basic auth)\n"
