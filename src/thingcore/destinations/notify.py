"""SNS's counterpart: notifications through Apprise URLs configured per topic ARN (``[notifications] topics``).

Apprise speaks e-mail (SMTP), webhooks (``json://``, ``form://``) and dozens of chat services; it is
synchronous, so sends run in the destinations' bounded thread pool, one Apprise object per URL so a
failure is reported per URL.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

SUBJECT = "AWS Notification Message"  # SNS's default e-mail subject

# SNS message structure JSON: the key used for each kind of subscriber, "default" for the rest
_PROTOCOL_KEYS = {"mailto": "email", "mailtos": "email", "json": "http", "jsons": "https", "form": "http",
                  "forms": "https", "xml": "http", "xmls": "https"}


class NotifyError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def protocol_key(url: str) -> str:
    return _PROTOCOL_KEYS.get(url.split("://", 1)[0].lower(), "default")


def redact(url: str) -> str:
    """A URL fit for logs and error documents: scheme, host and port only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/..."


class Notifier:
    def __init__(self, topics: dict[str, list[str]]) -> None:
        self.topics = topics
        self._senders: dict[str, Any] = {}
        self._lock = threading.Lock()

    def urls(self, arn: str) -> list[str] | None:
        return self.topics.get(arn)

    def _sender(self, url: str) -> Any:
        import apprise

        with self._lock:
            sender = self._senders.get(url)
            if sender is None:
                sender = apprise.Apprise()
                if not sender.add(url):
                    raise NotifyError(f"{redact(url)} is not a valid Apprise URL", retryable=False)
                self._senders[url] = sender
            return sender

    def send(self, arn: str, messages: dict[str, str] | str) -> None:
        """Send to every URL of ``arn``: ``messages`` is the text, or SNS's per-protocol JSON structure."""
        urls = self.topics.get(arn)
        if not urls:
            raise NotifyError(f"topic {arn} has no Apprise URLs in [notifications] topics", retryable=False)
        failed = []
        for url in urls:
            body = messages if isinstance(messages, str) else messages.get(protocol_key(url), messages["default"])
            if not self._sender(url).notify(body=body, title=SUBJECT):
                failed.append(redact(url))
        if failed:
            raise NotifyError(f"{len(failed)} of {len(urls)} notification URLs failed: {', '.join(failed)}",
                              retryable=True)

    def close(self) -> None:
        self._senders.clear()
