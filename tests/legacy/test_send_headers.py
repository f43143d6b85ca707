"""Legacy ``Send`` and header safety (issue 16, findings 8 and 9): one From with one address of the
sender's own, and no header injected through the subject, the display names or the recipients."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import default
from typing import Any

import pytest
import pytest_twisted
import treq

from tests.support.legacy import DOMAIN, SMTP_PASSWORD, Client, LegacyAppliance
from tests.support.legacy_client import send_body

#: The subject of finding 8, exactly as reported.
FINDING_SUBJECT = "=?utf-8?q?x=0D=0ABcc:=20evil@evil.com?="
ALICE = f"alice@{DOMAIN}"


async def _send(appliance: LegacyAppliance, **changes: str) -> int:
    fields = {
        "user": ALICE,
        "password": SMTP_PASSWORD,
        "from": ALICE,
        "to": "carol@remote.test",
        "subject": "s",
        "text": "t",
        "html": "<b>h</b>",
    }
    fields.update(changes)
    reply = await treq.put(appliance.base + "Send", data=send_body(appliance.send_public, fields))
    await treq.content(reply)
    return int(reply.code)


@pytest.mark.parametrize(
    "sender",
    [
        f"{ALICE},ceo@{DOMAIN}",
        f"{ALICE}, ceo@{DOMAIN}",
        f"Alice <{ALICE}>, Boss <ceo@{DOMAIN}>",
        f"ceo@{DOMAIN}, {ALICE}",
        f"team: {ALICE};",
        f"{ALICE} <ceo@{DOMAIN}>",
        f"{ALICE} ceo@{DOMAIN}",
        f"=?utf-8?q?x=0D=0AFrom:=20ceo@{DOMAIN}?= <{ALICE}>",
        f"x\u2028From: ceo@{DOMAIN} <{ALICE}>",
    ],
)
@pytest_twisted.ensureDeferred
async def test_send_needs_exactly_one_own_from_address(appliance: LegacyAppliance, outbound: Any, sender: str) -> None:
    """A From field with more than one address, a group or a line break is refused and nothing is sent."""
    await Client(appliance, "plain").sign_up()
    assert await _send(appliance, **{"from": sender}) == 403
    assert outbound.submitted == []


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": FINDING_SUBJECT},
        {"subject": "=?utf-8?b?eA0KQmNjOiBldmlsQGV2aWwuY29t?="},
        {"subject": "x\u2028Bcc: evil@evil.com"},
        {"subject": "x\x85Bcc: evil@evil.com"},
        {"subject": "=?utf-8?q?x=E2=80=A8Bcc:=20evil@evil.com?="},
        {"to": "=?utf-8?q?x=0D=0ABcc:=20evil@evil.com?= <carol@remote.test>"},
        {"to": "x\u2028Bcc: evil@evil.com <carol@remote.test>"},
        {"cc": "=?utf-8?q?x=C2=85Bcc:=20evil@evil.com?= <dave@remote.test>"},
        {"from": f"=?utf-8?q?x=0D=0ABcc:=20evil@evil.com?= <{ALICE}>"},
        {"from": f"x\x85Bcc: evil@evil.com <{ALICE}>"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_send_refuses_header_injection(
    appliance: LegacyAppliance, outbound: Any, changes: dict[str, str]
) -> None:
    """A line break in the subject or a display name, raw or encoded, is refused and nothing is sent."""
    await Client(appliance, "plain").sign_up()
    assert await _send(appliance, **changes) in (400, 403)
    assert outbound.submitted == []


@pytest_twisted.ensureDeferred
async def test_send_builds_one_from_and_no_extra_header(appliance: LegacyAppliance, outbound: Any) -> None:
    """An accepted Send carries one From with the sender's one address and exactly the headers it built."""
    await Client(appliance, "plain").sign_up()
    status = await _send(
        appliance, **{"from": f"=?utf-8?q?Al=C3=AFce?= <{ALICE}>", "to": "Carol <carol@remote.test>", "subject": "hé"}
    )
    assert status == 200
    [submitted] = outbound.submitted
    parsed = BytesParser(policy=default).parsebytes(submitted["message"], headersonly=True)
    assert sorted(k.lower() for k in parsed.keys()) == sorted(
        ["from", "to", "subject", "date", "message-id", "content-type", "mime-version"]
    )
    [sender] = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Alïce", ALICE)
    assert str(parsed["Subject"]) == "hé" and submitted["mail_from"] == ALICE
