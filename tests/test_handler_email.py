"""The email task against a real SMTP server (aiosmtpd on loopback) and in outbox mode."""

from __future__ import annotations

import asyncio
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from taskd.config import Settings
from taskd.engine.registry import Registry
from taskd.errors import Fail, Retry, ValidationError
from taskd.model import Status, make_spec
from taskd.store import Store
from tests.handlertools import call, finished, running_pool, settings_at


@dataclass
class Mailbox:
    """An aiosmtpd handler: refuses bad*@ for good (550), later*@ for now (451)."""

    received: list[Envelope] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("bad"):
            return "550 5.1.1 <%s>: no such mailbox" % address  # noqa: UP031 - SMTP text
        if address.startswith("later"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.received.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[tuple[Mailbox, Settings]]:
    """A real SMTP server on a free loopback port, and settings pointing at it."""
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(mailbox, hostname="mx.test", loop=loop), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    settings = settings_at(
        tmp_path,
        email={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "starttls": False,
            "sender": "Shop <shop@example.com>",
            "timeout_s": 5.0,
        },
    )
    try:
        yield mailbox, settings
    finally:
        server.close()
        await server.wait_closed()


def parse(data: bytes) -> EmailMessage:
    """Parse a message the way a mail client would."""
    message = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_smtp_delivery_with_html_cc_bcc_and_attachment(
    smtp: tuple[Mailbox, Settings], tmp_path: Path
) -> None:
    """A multipart message reaches the server; Bcc is in the envelope, not the headers."""
    mailbox, settings = smtp
    settings.files_root.mkdir(parents=True)
    (settings.files_root / "invoice.csv").write_text("item,price\nbook,12\n")
    payload = {
        "to": ["Ada <ada@example.com>"],
        "cc": "cc@example.com",
        "bcc": ["audit@example.com"],
        "reply_to": "help@example.com",
        "subject": "Your invoice ✓",
        "body": "Hi Ada",
        "html": "<p>Hi <b>Ada</b></p>",
        "attachments": ["invoice.csv"],
    }
    result, ctx, progress = await call("email", payload, settings)
    assert result["delivery"] == "smtp"
    assert result["accepted"] == ["ada@example.com", "cc@example.com", "audit@example.com"]
    assert progress.percents[-1] == 100
    (envelope,) = mailbox.received
    assert envelope.mail_from == "shop@example.com"
    assert envelope.rcpt_tos == ["ada@example.com", "cc@example.com", "audit@example.com"]
    assert isinstance(envelope.original_content, bytes)
    message = parse(envelope.original_content)
    assert message["Subject"] == "Your invoice ✓"
    assert message["Message-ID"] == f"<{ctx.task_id}@example.com>"
    assert message["Bcc"] is None
    assert message["Reply-To"] == "help@example.com"
    html = message.get_body(("html",))
    assert html is not None
    assert "<b>Ada</b>" in html.get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "invoice.csv"
    assert attachment.get_content() == "item,price\nbook,12\n"


async def test_permanent_refusal_fails_without_retry(smtp: tuple[Mailbox, Settings]) -> None:
    """A 5xx for every recipient is final: the handler raises Fail with the server's reply."""
    mailbox, settings = smtp
    with pytest.raises(Fail, match=r"550 5\.1\.1"):
        await call("email", {"recipient": "bad@example.com", "subject": "x"}, settings)
    assert mailbox.received == []


async def test_transient_refusal_asks_for_a_retry(smtp: tuple[Mailbox, Settings]) -> None:
    """A 4xx reply is temporary: the handler raises Retry."""
    _, settings = smtp
    with pytest.raises(Retry, match="451"):
        await call("email", {"recipient": "later@example.com", "subject": "later"}, settings)


async def test_partly_refused_message_is_delivered_and_reports_refusals(
    smtp: tuple[Mailbox, Settings],
) -> None:
    """When some recipients are accepted the message is sent once; refusals are listed."""
    mailbox, settings = smtp
    payload = {"to": ["ok@example.com", "bad@example.com"], "body": "hi"}
    result, _, _ = await call("email", payload, settings)
    assert result["accepted"] == ["ok@example.com"]
    assert result["refused"]["bad@example.com"].startswith("550")
    assert len(mailbox.received) == 1


async def test_connection_refused_is_retried(tmp_path: Path, free_port: int) -> None:
    """No server listening is a transient network problem: Retry, not Fail."""
    settings = settings_at(
        tmp_path,
        email={
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port,
            "starttls": False,
            "timeout_s": 2.0,
        },
    )
    with pytest.raises(Retry, match=rf"127\.0\.0\.1:{free_port}"):
        await call("email", {"recipient": "a@example.com", "subject": "hi"}, settings)


async def test_outbox_mode_writes_a_standard_eml_file(tmp_path: Path) -> None:
    """Without smtp_host the message lands in <data_dir>/outbox/<task id>.eml, CRLF-ended."""
    settings = settings_at(tmp_path)
    result, ctx, _ = await call(
        "email", {"recipient": "user@example.com", "subject": "Welcome!"}, settings
    )
    path = tmp_path / "outbox" / f"{ctx.task_id}.eml"
    assert result == {
        "delivery": "outbox",
        "path": f"outbox/{ctx.task_id}.eml",
        "size": path.stat().st_size,
        "message_id": f"<{ctx.task_id}@localhost>",
        "recipients": ["user@example.com"],
    }
    data = path.read_bytes()
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    message = parse(data)
    assert message["To"] == "user@example.com"
    assert message["From"] == "taskd@localhost"
    assert message["Date"] is not None
    assert message.get_content_type() == "text/plain"
    assert list(tmp_path.joinpath("outbox").iterdir()) == [path]


async def test_attachment_outside_the_files_root_fails(tmp_path: Path) -> None:
    """An attachment symlinked out of the sandbox is refused at run time."""
    settings = settings_at(tmp_path)
    settings.files_root.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (settings.files_root / "report.txt").symlink_to(secret)
    with pytest.raises(Fail, match="outside the files root"):
        await call("email", {"recipient": "a@example.com", "attachments": ["report.txt"]}, settings)


async def test_seed_email_task_completes_through_the_pool(
    store: Store, queue: str, tmp_path: Path
) -> None:
    """The seed's example payload runs end to end in a real pool and lands in the outbox."""
    settings = settings_at(tmp_path)
    async with running_pool(store, queue, settings):
        ((task, _),) = await store.submit(
            [
                make_spec(
                    "email", {"recipient": "user@example.com", "subject": "Welcome!"}, queue=queue
                )
            ]
        )
        done = await finished(store, task.id)
    assert done.status == Status.COMPLETED, done.error
    assert done.progress == 100
    assert done.result["delivery"] == "outbox"
    assert done.result["path"] == f"outbox/{task.id}.eml"


@pytest.mark.parametrize(
    "payload",
    [
        {"recipient": "a@example.com"},
        {"recipient": "a@example.com", "subject": " ", "body": "", "html": "\n"},
    ],
)
def test_message_with_neither_subject_nor_body_is_refused(payload: dict[str, Any]) -> None:
    """An email with no subject and no body (text or HTML) is refused at submit."""
    with pytest.raises(ValidationError, match="subject or a body"):
        Registry.from_modules([]).check_payload("email", payload)
