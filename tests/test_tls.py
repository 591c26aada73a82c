"""``ssl:`` listen endpoints: the SDK and treq over https, bad key files at start."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any

import openai
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import treq
from twisted.internet import reactor
from twisted.internet.ssl import Certificate
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from mockai_tw.config import ORIGINAL_REPLIES
from mockai_tw.web.tls import (
    TLSFileError,
    check_tls_files,
    split_endpoint,
    tls_files,
)
from tests.support import TOKEN, merge, write_config
from tests.test_daemon import TWISTD, Twistd, environ

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
AUTH: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Certs:
    """A test CA, and a key and certificate it signed for 127.0.0.1/localhost."""

    ca: str
    key: str
    cert: str


def make_certs(directory: str) -> Certs:
    """Write a CA certificate and a server key and certificate under
    ``directory`` (a proper chain: TLS clients reject odd self-signed leaves)."""
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("mockai test CA"))
        .issuer_name(name("mockai test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(
        ca=os.path.join(directory, "ca.pem"),
        key=os.path.join(directory, "key.pem"),
        cert=os.path.join(directory, "cert.pem"),
    )
    with open(certs.ca, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(certs.cert, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(certs.key, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return certs


def ssl_listen(certs: Certs, port: int | str = 0) -> str:
    return f"ssl:{port}:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"


class TlsFilesTests(TestCase):
    """Which files an endpoint description names, as Twisted would read it."""

    def test_keywords_positional_and_defaults(self) -> None:
        self.assertEqual(tls_files("tcp:8082"), [])
        self.assertEqual(tls_files("ssl:8443"), [("privateKey", "server.pem")])
        self.assertEqual(
            tls_files("SSL:8443:privateKey=k.pem"), [("privateKey", "k.pem")]
        )
        self.assertEqual(
            tls_files("ssl:8443:k.pem:c.pem"),
            [("privateKey", "k.pem"), ("certKey", "c.pem")],
        )
        self.assertEqual(
            tls_files(
                "ssl:port=8443:certKey=c.pem:privateKey=k.pem"
                ":extraCertChain=chain.pem:dhParameters=dh.pem"
            ),
            [
                ("privateKey", "k.pem"),
                ("certKey", "c.pem"),
                ("extraCertChain", "chain.pem"),
                ("dhParameters", "dh.pem"),
            ],
        )

    def test_escapes(self) -> None:
        self.assertEqual(
            tls_files(r"ssl:8443:privateKey=C\:\\keys\\a=b.pem"),
            [("privateKey", r"C:\keys\a=b.pem")],
        )

    def test_fields_as_twisted_splits_them(self) -> None:
        from twisted.internet import endpoints

        parse = getattr(endpoints, "_parse", None)
        if parse is None:
            raise SkipTest("this Twisted has no endpoints._parse to compare with")
        for description in [
            r"ssl:8443:privateKey=C\:\\k\\a=b.pem",
            r"a:b\:c:d=e=f:g\=h=i",
            "x::y=",
            r"tcp\:1",
        ]:
            self.assertEqual(split_endpoint(description), parse(description))

    def test_readable_files_pass(self) -> None:
        certs = make_certs(self.mktemp())
        check_tls_files(ssl_listen(certs))
        check_tls_files("tcp:0")
        with self.assertRaises(TLSFileError):
            check_tls_files(ssl_listen(certs).replace("key.pem", "nokey.pem"))


class HttpsTests(TestCase):
    """The service ``makeService`` builds, on an ``ssl:`` endpoint."""

    async def start(self, listen_in_file: bool = False) -> str:
        from mockai_tw.tap import Options, makeService

        self.certs = make_certs(self.mktemp())
        config = merge(
            {"access_token": TOKEN, "stream": {"interval_ms": 0}},
            {"http": {"listen": ssl_listen(self.certs)}} if listen_in_file else {},
        )
        options = Options()
        argv = [f"--config={write_config(self, config)}"]
        if not listen_in_file:
            argv.append(f"--listen={ssl_listen(self.certs)}")
        # Parsing runs the start-time checks, the TLS files' included.
        options.parseOptions(argv)
        service: Any = makeService(options, reactor, {})
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listener.listening
        self.addCleanup(service.server.site.quiet)
        return f"https://127.0.0.1:{port.getHost().port}"

    def sdk(self, root: str, verify: str | bool) -> openai.OpenAI:
        """The official SDK, with an HTTP client that trusts ``verify``."""
        http_client = openai.DefaultHttpxClient(verify=verify)
        client = openai.OpenAI(
            base_url=root + "/v1",
            api_key=TOKEN,
            max_retries=0,
            http_client=http_client,
        )
        self.addCleanup(client.close)
        return client

    async def test_sdk_over_https(self) -> None:
        from twisted.internet.threads import deferToThread

        root = await self.start()
        client = self.sdk(root, self.certs.ca)
        completion = await deferToThread(
            lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        )
        self.assertIn(completion.choices[0].message.content, ORIGINAL_REPLIES)

        def stream() -> str:
            chunks = client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True
            )
            return "".join(
                c.choices[0].delta.content or "" for c in chunks if c.choices
            )

        self.assertIn(await deferToThread(stream), ORIGINAL_REPLIES)
        models = await deferToThread(lambda: client.models.list())
        self.assertIn("gpt-4o", [m.id for m in models.data])

    async def test_untrusted_certificate_is_refused(self) -> None:
        """It is real TLS: a client that does not trust the CA gets no answer."""
        from twisted.internet.threads import deferToThread

        root = await self.start()
        client = self.sdk(root, True)
        with self.assertRaises(openai.APIConnectionError):
            await deferToThread(
                lambda: client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES
                )
            )

    async def test_treq_over_https_listen_from_the_file(self) -> None:
        root = await self.start(listen_in_file=True)
        with open(self.certs.ca, "rb") as f:
            trust = Certificate.loadPEM(f.read())
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool)
        client = treq.client.HTTPClient(agent)
        health = await client.get(root + "/health")
        self.assertEqual(health.code, 200)
        self.assertEqual(json.loads(await treq.content(health))["status"], "ok")
        response = await client.post(
            root + "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers=AUTH,
        )
        self.assertEqual(response.code, 200)
        body = json.loads(await treq.content(response))
        self.assertIn(body["choices"][0]["message"]["content"], ORIGINAL_REPLIES)


class TlsDaemonTests(TestCase):
    """The real ``twistd`` with ``ssl:`` endpoints, good and bad."""

    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        self.certs = make_certs(self.workdir)

    def spawn(self, *args: str) -> Twistd:
        protocol = Twistd()
        process = reactor.spawnProcess(
            protocol, TWISTD, [TWISTD, *args], env=environ(), path=self.workdir
        )

        def stop() -> Any:
            if protocol.ended.called:
                return None
            process.signalProcess("TERM")
            return protocol.ended

        self.addCleanup(stop)
        return protocol

    def config(self, extra: str = "") -> str:
        path = os.path.join(self.workdir, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"access_token: {TOKEN}\n{extra}")
        return path

    async def refused(self, *args: str) -> str:
        """Run twistd expecting a refusal at start; its one stderr line."""
        protocol = self.spawn("-n", "--pidfile=", "mockai", *args)
        self.assertEqual(await protocol.ended, 1)
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)
        self.assertNotIn(b"listening on", protocol.out)
        lines = protocol.err.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, protocol.err[:500])
        return lines[0]

    async def test_serves_https(self) -> None:
        path = self.config(f"http:\n  listen: '{ssl_listen(self.certs)}'\n")
        protocol = self.spawn("-n", "--pidfile=", "mockai", f"--config={path}")
        port = await protocol.port
        self.assertIn(f"(base URL https://127.0.0.1:{port}/v1)".encode(), protocol.out)
        with open(self.certs.ca, "rb") as f:
            trust = Certificate.loadPEM(f.read())
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool)
        health = await treq.client.HTTPClient(agent).get(
            f"https://127.0.0.1:{port}/health"
        )
        self.assertEqual(health.code, 200)
        await treq.content(health)
        await pool.closeCachedConnections()

    async def test_missing_key_on_the_command_line(self) -> None:
        listen = f"ssl:0:privateKey=/x/key.pem:certKey={self.certs.cert}"
        line = await self.refused(f"--config={self.config()}", f"--listen={listen}")
        self.assertEqual(
            line,
            "mockai: http.listen: cannot read privateKey=/x/key.pem:"
            " No such file or directory",
        )

    async def test_missing_certificate_in_the_file(self) -> None:
        listen = f"ssl:0:privateKey={self.certs.key}:certKey=/x/cert.pem"
        path = self.config(f"http:\n  listen: '{listen}'\n")
        line = await self.refused(f"--config={path}")
        self.assertEqual(
            line,
            "mockai: http.listen: cannot read certKey=/x/cert.pem:"
            " No such file or directory",
        )

    async def test_missing_key_from_the_environment(self) -> None:
        """``MOCKAI_LISTEN`` is ``http.listen`` too; Twisted's default key
        file (server.pem in the working directory) is named when none is."""
        protocol = Twistd()
        env = {**environ(), "MOCKAI_LISTEN": "ssl:0"}
        reactor.spawnProcess(
            protocol,
            TWISTD,
            [TWISTD, "-n", "--pidfile=", "mockai", f"--config={self.config()}"],
            env=env,
            path=self.workdir,
        )
        self.assertEqual(await protocol.ended, 1)
        self.assertEqual(
            protocol.err.decode().strip(),
            "mockai: http.listen: cannot read privateKey=server.pem:"
            " No such file or directory",
        )

    async def test_unreadable_and_unusable_files(self) -> None:
        other = make_certs(os.path.join(self.workdir, "other"))
        config = f"--config={self.config()}"
        cases = [
            # A directory cannot be read as a file (and root reads any mode).
            (
                f"ssl:0:privateKey={self.workdir}:certKey={self.certs.cert}",
                f"cannot read privateKey={self.workdir}: Is a directory",
            ),
            (
                f"ssl:0:privateKey={self.certs.cert}:certKey={self.certs.cert}",
                f"cannot use privateKey={self.certs.cert}, certKey={self.certs.cert}:"
                " OpenSSL: ",
            ),
            (
                f"ssl:0:privateKey={other.key}:certKey={self.certs.cert}",
                f"cannot use privateKey={other.key}, certKey={self.certs.cert}:"
                " VerifyError: Certificate public and private keys do not match.",
            ),
        ]
        for listen, expected in cases:
            line = await self.refused(config, f"--listen={listen}")
            self.assertTrue(
                line.startswith(f"mockai: http.listen: {expected}"), (listen, line)
            )

    async def test_relative_paths_from_the_working_directory(self) -> None:
        # twistd runs in the directory make_certs wrote key.pem and cert.pem to.
        listen = "ssl:0:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem"
        protocol = self.spawn(
            "-n",
            "--pidfile=",
            "mockai",
            f"--config={self.config()}",
            f"--listen={listen}",
        )
        port = await protocol.port
        self.assertGreater(port, 0)
