"""The built-in `jobcron.webhook` workflow: deliver one outbox entry (migration 0010) to its webhook.

The job's metadata is {"webhook": name, "event": ..., "body": {...}}; the URL, the secret and the
timeout come from this daemon's `notifications.webhooks` entry of that name. One POST of the body as
JSON (keys sorted, no spaces: the bytes that were signed), with headers

    Content-Type: application/json
    User-Agent: jobcron-webhook
    X-Jobcron-Event: job.failed
    X-Jobcron-Delivery: <the delivery job's id, also "delivery" in the body>
    X-Jobcron-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>

A 2xx answer completes the job. Redirects are not followed (a 3xx is an error naming the status: the
body and its signature go only where the config says). 408, 429, 5xx, a refused connection and a
timeout are retried (the durable backoff between attempts, up to the webhook's max_retries); any
other 4xx fails the delivery at once. Messages name the webhook and the URL's host, never its path,
query or the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from jobcron.errors import InvalidJob, PermanentError, TransientError
from jobcron.workflows.base import WorkflowContext

JOB_TYPE = "jobcron.webhook"
SIGNATURE_HEADER = "X-Jobcron-Signature"
RETRIED_STATUSES = frozenset({408, 425, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every 3xx comes back as an HTTPError instead of being followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def body_bytes(body: Any) -> bytes:
    """The exact bytes sent and signed."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The X-Jobcron-Signature value of a body: sha256=<hex>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def deliver(ctx: WorkflowContext) -> dict[str, Any]:
    """POST the outbox entry to its webhook; the result says what the receiver answered."""
    name, event, body = ctx.metadata.get("webhook"), ctx.metadata.get("event"), ctx.metadata.get("body")
    if not isinstance(name, str) or not isinstance(event, str) or not isinstance(body, dict):
        raise InvalidJob("a jobcron.webhook job needs metadata {webhook, event, body}")
    hook = ctx.settings.webhooks.get(name)
    if hook is None:
        raise PermanentError(
            f"webhook {name!r} is not in this daemon's notifications.webhooks "
            "(give every daemon of the database the same notifications section)"
        )
    host = urlsplit(hook.url).hostname or "?"
    data = body_bytes(body)
    request = urllib.request.Request(  # noqa: S310 - the config checked the scheme is http or https
        hook.url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "jobcron-webhook",
            "X-Jobcron-Event": event,
            "X-Jobcron-Delivery": ctx.job_id,
            SIGNATURE_HEADER: signature(hook.secret, data),
        },
    )
    where = f"webhook {name!r} ({host})"
    try:
        with _OPENER.open(request, timeout=hook.timeout_seconds) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        exc.close()
        if 300 <= status < 400:
            raise PermanentError(
                f"{where} answered {status}, a redirect; redirects are not followed"
            ) from None
        if status >= 500 or status in RETRIED_STATUSES:
            raise TransientError(f"{where} answered {status}") from None
        raise PermanentError(f"{where} answered {status}; not retried") from None
    except TimeoutError:
        raise TransientError(f"{where} did not answer within {hook.timeout_seconds:g}s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"{where} could not be reached: {reason}") from None
    return {"webhook": name, "event": event, "status": status}
