"""The ``email`` task: SMTP delivery, or an outbox of ``.eml`` files when SMTP is not set up.

The outbox (``<data_dir>/outbox/<task id>.eml``) is a development mail backend like
Django's: the seed's example works out of the box and the message can be opened in any
mail client. SMTP replies decide retries: 4xx and connection problems are transient and
retried; 5xx (unknown mailbox, rejected content, failed login) fail at once.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import unicodedata
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses, parseaddr
from pathlib import Path
from typing import Any, Final

import aiosmtplib

from taskd.config import EmailSettings
from taskd.engine.context import Context
from taskd.engine.payload_schema import known_keys
from taskd.engine.registry import task
from taskd.errors import Fail, Retry, ValidationError
from taskd.handlers.sandbox import (
    check_relative,
    data_dir,
    files_root,
    not_a_file,
    resolve_inside,
)

MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 20
MAX_ATTACHMENT_BYTES = 10 << 20
MAX_TOTAL_ATTACHMENT_BYTES = 25 << 20
MAX_SUBJECT_CHARS = 998  # RFC 5322 line limit
_CONTROL_CATEGORIES: Final = frozenset({"Cc", "Zl", "Zp"})
_ADDR_SPEC: Final = re.compile(
    r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\".]+(\.[^@\s<>()\[\],;:\".]+)*"
)
EXAMPLE: Final = {
    "recipient": "user@example.com",
    "subject": "Welcome!",
    "body": "Hi Ada,\n\nyour account is ready.",
    "html": "<p>Hi Ada,</p><p>your account is <b>ready</b>.</p>",
}

SCHEMA: Final = known_keys(
    {
        "recipient": "Address or list of addresses (or use to).",
        "to": "Address or list of addresses (or use recipient).",
        "cc": "Address or list of addresses.",
        "bcc": "Address or list of addresses.",
        "reply_to": "Address or list of addresses.",
        "subject": "One line; a subject or a body is required.",
        "body": "Plain-text body.",
        "html": "HTML body (sent beside the text body).",
        "attachments": "Paths in the files root.",
    }
)


def addresses(payload: dict[str, Any], key: str) -> list[str]:
    """The addresses under ``key`` (a string or a list), each checked; [] when absent."""
    raw = payload.get(key)
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValidationError(f"payload.{key}", "must be an address or a list of addresses")
    for i, item in enumerate(items):
        where = f"payload.{key}" if isinstance(raw, str) else f"payload.{key}[{i}]"
        # Exactly what sending will see: getaddresses, which would also split "a@x, b@y"
        # and expand group syntax into addresses nobody checked.
        parsed = getaddresses([item])
        if len(parsed) != 1 or _has_controls(item) or not _ADDR_SPEC.fullmatch(parsed[0][1]):
            raise ValidationError(where, f"{item!r} is not one email address")
    return items


def _has_controls(text: str, allowed: str = "") -> bool:
    """Control characters and line/paragraph separators (NUL, VT, FF, NEL, U+2028, ...)."""
    return any(unicodedata.category(c) in _CONTROL_CATEGORIES and c not in allowed for c in text)


def recipients(payload: dict[str, Any]) -> list[str]:
    """The envelope recipients: to, cc and bcc, each validated as one address."""
    keys = ("recipient", "to", "cc", "bcc")
    return [getaddresses([item])[0][1] for key in keys for item in addresses(payload, key)]


def validate(payload: dict[str, Any]) -> None:
    """Submit-time checks: recipients, header-safe text, attachment paths."""
    to = addresses(payload, "recipient") + addresses(payload, "to")
    if not to:
        raise ValidationError("payload.recipient", "is required (or give 'to')")
    count = len(to) + len(addresses(payload, "cc")) + len(addresses(payload, "bcc"))
    if count > MAX_RECIPIENTS:
        raise ValidationError("payload.to", f"at most {MAX_RECIPIENTS} recipients in all")
    addresses(payload, "reply_to")
    subject = payload.get("subject", "")
    if (
        not isinstance(subject, str)
        or len(subject) > MAX_SUBJECT_CHARS
        or _has_controls(subject, allowed="\t")
    ):
        raise ValidationError(
            "payload.subject",
            f"must be one line of at most {MAX_SUBJECT_CHARS} characters without control "
            "characters or line separators",
        )
    for key in ("body", "html"):
        if not isinstance(payload.get(key, ""), str):
            raise ValidationError(f"payload.{key}", "must be a string")
    attachments = payload.get("attachments", [])
    if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
        raise ValidationError(
            "payload.attachments", f"must be a list of at most {MAX_ATTACHMENTS} file paths"
        )
    for i, path in enumerate(attachments):
        check_relative(path, f"payload.attachments[{i}]")
    texts = (subject, payload.get("body", ""), payload.get("html", ""))
    if not (attachments or any(text.strip() for text in texts)):
        raise ValidationError("payload.body", "give a subject or a body (the message is empty)")


@task("email", example=EXAMPLE, schema=SCHEMA, validate=validate)
async def email(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Send an email (``recipient`` or ``to``, ``subject``, ``body`` and/or ``html``).

    With ``email.smtp_host`` set it goes out over SMTP; otherwise it is written as a
    ``.eml`` file to ``<data_dir>/outbox``. Attachments are paths in the files root.
    """
    try:
        validate(payload)
    except ValidationError as exc:
        raise Fail(str(exc)) from None
    config = ctx.settings.email if ctx.settings is not None else EmailSettings()
    await ctx.progress(10, "composing")
    files = await asyncio.to_thread(read_attachments, ctx, payload.get("attachments", []))
    message = compose(payload, config.sender, ctx.task_id, files)
    envelope = recipients(payload)
    head = {"message_id": message["Message-ID"], "recipients": envelope}
    if not config.smtp_host:
        relative = Path("outbox") / f"{ctx.task_id}.eml"  # clients never see server paths
        size = await asyncio.to_thread(write_eml, data_dir(ctx.settings) / relative, message)
        await ctx.progress(100, "written to the outbox")
        return {"delivery": "outbox", **head, "path": relative.as_posix(), "size": size}
    await ctx.progress(40, f"sending via {config.smtp_host}")
    sent = await send_smtp(message, envelope, config)
    await ctx.progress(100, "sent")
    return {"delivery": "smtp", **head, **sent}


def read_attachments(ctx: Context, paths: list[str]) -> list[tuple[str, bytes]]:
    """(file name, content) of each attachment, from the files root, within the limits."""
    root = files_root(ctx.settings)
    files, total = [], 0
    for i, value in enumerate(paths):
        where = f"payload.attachments[{i}]"
        path = resolve_inside(root, value, where)
        if not path.is_file():
            raise not_a_file(root, value, where)
        size = path.stat().st_size
        total += size
        if size > MAX_ATTACHMENT_BYTES or total > MAX_TOTAL_ATTACHMENT_BYTES:
            raise Fail(
                f"{where}: attachments are limited to {MAX_ATTACHMENT_BYTES >> 20} MiB "
                f"each and {MAX_TOTAL_ATTACHMENT_BYTES >> 20} MiB in all"
            )
        files.append((path.name, path.read_bytes()))
    return files


def compose(
    payload: dict[str, Any], sender: str, task_id: str, files: list[tuple[str, bytes]]
) -> EmailMessage:
    """The MIME message; Bcc stays off the headers (it only goes into the envelope).

    The Message-ID derives from the task id, so a retried task sends the same message
    and receivers can de-duplicate it.
    """
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = ", ".join(addresses(payload, "recipient") + addresses(payload, "to"))
    if cc := addresses(payload, "cc"):
        message["Cc"] = ", ".join(cc)
    if reply_to := addresses(payload, "reply_to"):
        message["Reply-To"] = ", ".join(reply_to)
    message["Subject"] = payload.get("subject", "")
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "taskd.localhost"
    message["Message-ID"] = f"<{task_id}@{domain}>"
    body, html = payload.get("body"), payload.get("html")
    if html is not None and body is None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body or "")
        if html is not None:
            message.add_alternative(html, subtype="html")
    for name, data in files:
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        maintype, subtype = kind.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def write_eml(path: Path, message: EmailMessage) -> int:
    """Write the message atomically (CRLF line ends, as on the wire); returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = message.as_bytes(policy=SMTP)
    temp = path.with_name(f".{path.name}.part")
    temp.write_bytes(data)
    os.replace(temp, path)
    return len(data)


async def send_smtp(
    message: EmailMessage, recipients: list[str], config: EmailSettings
) -> dict[str, Any]:
    """Send over SMTP; Retry on transient trouble (4xx, network), Fail on 5xx."""
    server = f"{config.smtp_host}:{config.smtp_port}"
    try:
        refused, response = await aiosmtplib.send(
            message,
            sender=parseaddr(config.sender)[1],
            recipients=recipients,
            hostname=config.smtp_host,
            port=config.smtp_port,
            username=config.smtp_user or None,
            password=config.smtp_password or None,
            use_tls=config.use_tls,
            start_tls=config.starttls and not config.use_tls,
            timeout=config.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(r.code >= 500 for r in exc.recipients):
            raise Fail(f"{server} refused every recipient: {detail}") from None
        raise Retry(f"{server} deferred recipients: {detail}") from None
    except aiosmtplib.SMTPResponseException as exc:
        text = f"{server} answered {exc.code} {exc.message}"
        raise (Fail(text) if exc.code >= 500 else Retry(text)) from None
    except aiosmtplib.SMTPNotSupported as exc:
        raise Fail(f"{server}: {exc} (check email.starttls / email.use_tls)") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise Retry(f"{server}: {type(exc).__name__}: {exc}") from None
    accepted = [r for r in recipients if r not in refused]
    result: dict[str, Any] = {"accepted": accepted, "response": response}
    if refused:
        result["refused"] = {addr: f"{r.code} {r.message}" for addr, r in refused.items()}
    return result
