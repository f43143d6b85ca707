"""A delivery worker: ``python -m mailiverse.delivery.worker SETTINGS``, started by the appliance's pool.

It imports what sealing needs, isolates itself (``delivery/isolation.py``), says which measures
applied, then serves jobs one at a time over its standard input and output (``delivery/framing.py``):
the message bytes and the recipients' public keys in, the sealed objects out. It never sees a
database URL, a private key, a session secret or a DKIM key, and it can open no file and no socket:
the DNS questions of judging a message go to the appliance over the same pipe (``ENQUIRY`` out,
``ANSWER`` in). A failure is reported by its exception's type only: the text could quote the message.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import IO, BinaryIO

from mailiverse.delivery import framing
from mailiverse.delivery.dnschannel import DnsReply, Enquirer, Record
from mailiverse.delivery.isolation import IsolationSettings, arm_cpu_limit, isolate
from mailiverse.delivery.sealing import SealJob, seal_message
from mailiverse.delivery.verdicts import JudgeRequest

#: Ciphertext goes back in frames of about this size.
_OUT_CHUNK = 256 * 1024


class _FrameWriter:
    """A write-only file that sends what is written as ``CHUNK`` frames."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= _OUT_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._out.write(framing.frame(framing.CHUNK, bytes(self._pending)))
            self._pending.clear()


class _PipeSink:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def begin(self) -> IO[bytes]:
        return _FrameWriter(self._out)  # type: ignore[return-value]

    def end(self, out: IO[bytes]) -> None:
        out.flush()
        self._out.write(framing.frame(framing.END_OBJECT, b""))


def _read_exactly(source: BinaryIO, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = source.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return None
        got += n
    return bytes(buffer)


class _PipeQuestions:
    """The worker's DNS: a question out as ``ENQUIRY``, then wait for the ``ANSWER``.

    A pipe that closes or sends anything else ends the worker at once (``os._exit``): the appliance
    gave up on the message, and an exception could be swallowed by a library's bare ``except``.
    """

    def __init__(self, source: BinaryIO, out: BinaryIO) -> None:
        self._source = source
        self._out = out

    def __call__(self, name: str, rtype: str) -> DnsReply:
        self._out.write(framing.json_frame(framing.ENQUIRY, {"name": name, "type": rtype}))
        self._out.flush()
        header = _read_exactly(self._source, framing.HEADER.size)
        if header is None:
            os._exit(2)
        tag, length = framing.HEADER.unpack(header)
        proper = tag == framing.ANSWER and length <= framing.MAX_ANSWER
        payload = _read_exactly(self._source, length) if proper else None
        if payload is None:
            os._exit(2)
        try:
            return DnsReply.from_wire(json.loads(payload), rtype)
        except ValueError:
            return DnsReply(error="temperror")


def serve(source: BinaryIO, out: BinaryIO) -> int:
    """Seal jobs from ``source`` until it closes; 0 on a clean end."""
    sink = _PipeSink(out)
    while True:
        header = _read_exactly(source, framing.HEADER.size)
        if header is None:
            return 0
        tag, length = framing.HEADER.unpack(header)
        if tag != framing.JOB or length > framing.MAX_FRAME:
            return 2
        payload = _read_exactly(source, length)
        if payload is None:
            return 2
        request = json.loads(payload)
        raw = _read_exactly(source, int(request["size"]))
        if raw is None:
            return 2
        arm_cpu_limit(int(request["cpu_seconds"]))
        job = SealJob.from_wire(request["job"])
        enquirer = Enquirer(_PipeQuestions(source, out)) if job.judge is not None and job.judge.dns else None
        try:
            meta = seal_message(raw, job, sink, enquirer)
        except Exception as error:  # noqa: BLE001 - reported to the appliance by type, which answers 451
            out.write(framing.json_frame(framing.ERROR, {"error": type(error).__name__}))
        else:
            out.write(framing.json_frame(framing.RESULT, meta.to_wire()))
        del raw
        out.flush()


_WARM_UP_MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: =?utf-8?q?w=C3=A4rm?=\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=E9\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAEC\r\n--b--\r\n"
)


class _Discard:
    def begin(self) -> IO[bytes]:
        return io.BytesIO()

    def end(self, out: IO[bytes]) -> None:
        pass


def _warm_up() -> None:
    """Import now what sealing would import lazily: once isolated, the worker can open no file."""
    import base64

    # The parser of end-to-end carriers (mime/carrier.py), imported when one is parsed.
    import email.message  # noqa: F401
    import email.parser  # noqa: F401
    import email.policy  # noqa: F401
    import encodings
    import importlib
    import pkgutil

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    # The judge's and the safe-HTML libraries, which sealing imports only when it needs them (the judge
    # reads its public suffix list as it is imported): once isolated, the worker can open no file.
    import mailiverse.delivery.judge
    import mailiverse.delivery.policy
    import mailiverse.delivery.resultsheader
    import mailiverse.mime.safehtml  # noqa: F401
    import mailiverse.mime.twin  # noqa: F401
    from mailiverse.mime.limits import Limits

    for module in pkgutil.iter_modules(encodings.__path__):
        try:
            importlib.import_module(f"encodings.{module.name}")
        except Exception:  # noqa: BLE001, S112 - a codec of another platform (mbcs, ...)
            continue
    # A throwaway key made here: the worker never receives a private key.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    job = SealJob("Mail/In/0_0", "Mail/In_Json/0_0", 0, (("v1", pem), ("v2", pem)), Limits())
    seal_message(_WARM_UP_MESSAGE, job, _Discard())

    # Judge a signed message too, over a zone held here, so that every check has run once.
    signing_key = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    key_text = base64.b64encode(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1))
    # And an ed25519-sha256 one (RFC 8463), which dkimpy verifies through PyNaCl: its key is the raw 32 bytes.
    raw = serialization.Encoding.Raw
    ed_private = ed25519.Ed25519PrivateKey.generate()
    ed_seed = ed_private.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    ed_key_text = base64.b64encode(ed_private.public_key().public_bytes(raw, serialization.PublicFormat.Raw))
    zone: dict[tuple[str, str], tuple[Record, ...]] = {
        ("example.org", "TXT"): ("v=spf1 ip4:192.0.2.1 mx a include:_spf.example.org -all",),
        ("_spf.example.org", "TXT"): ("v=spf1 ip6:2001:db8::/32 ~all",),
        ("example.org", "MX"): ((10, "mx.example.org"),),
        ("mx.example.org", "A"): ("192.0.2.2",),
        ("warm._domainkey.example.org", "TXT"): ("v=DKIM1; k=rsa; p=" + key_text.decode("ascii"),),
        ("warmed._domainkey.example.org", "TXT"): ("v=DKIM1; k=ed25519; p=" + ed_key_text.decode("ascii"),),
        ("_dmarc.example.org", "TXT"): ("v=DMARC1; p=none",),
    }
    signed = dkim.sign(_WARM_UP_MESSAGE, b"warm", b"example.org", signing_key) + _WARM_UP_MESSAGE
    ed_signature = dkim.sign(
        signed, b"warmed", b"example.org", base64.b64encode(ed_seed), signature_algorithm=b"ed25519-sha256"
    )
    signed = ed_signature + signed
    judge = JudgeRequest("192.0.2.1", "mx.example.org", "a@example.org", "warm.invalid", ("warm.invalid",))
    enquirer = Enquirer(lambda name, rtype: DnsReply(zone.get((name, rtype), ())))
    judged = SealJob("Mail/In/0_1", "Mail/In_Json/0_1", 0, (("v2", pem),), Limits(), judge, "Mail/Spam/0_1")
    seal_message(signed, judged, _Discard(), enquirer)


def _settings_frame(source: BinaryIO) -> IsolationSettings | None:
    """The ``SETTINGS`` frame the appliance sends first over the worker socket; None if it sent anything else."""
    header = _read_exactly(source, framing.HEADER.size)
    if header is None:
        return None
    tag, length = framing.HEADER.unpack(header)
    payload = _read_exactly(source, length) if tag == framing.SETTINGS and length <= framing.MAX_SETTINGS else None
    if payload is None:
        return None
    try:
        fields = json.loads(payload)
        settings = IsolationSettings(int(fields["address_space_budget"]), str(fields["user"]))
    except (ValueError, KeyError, TypeError):
        return None
    return settings


def main(argv: list[str]) -> int:
    source = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115 - the pipe lives as long as we do
    out = open(1, "wb", buffering=1024 * 1024, closefd=False)  # noqa: SIM115
    # Started by the pool: its settings on the command line. Started by systemd per connection to the worker
    # socket (appliance/mailiverse-worker@.service): the appliance's first frame.
    settings = IsolationSettings(**json.loads(argv[1])) if len(argv) > 1 else _settings_frame(source)
    if settings is None:
        print("mailiverse worker: the connection did not begin with its settings", file=sys.stderr)
        return 2
    _warm_up()
    applied = isolate(settings, ".")
    out.write(framing.json_frame(framing.HELLO, {"isolation": applied, "pid": os.getpid()}))
    out.flush()
    return serve(source, out)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
