"""A small client for brand systems: report usage, read status, wait for settlement.

Requests that fail on the network, with a 5xx or with a 429 are retried: reporting is idempotent
per event id, so a retry can never count a usage twice. ``BridgeHttp`` is the transport under it
(retries, ``Retry-After``, problem details decoded into ``BridgeApiError``), shared with the model
command line's relay calls (``bridge.cli.model``).

    with BridgeClient("https://bridge.example", api_key) as bridge:
        result = bridge.submit(usage_event("shoot-7-img-3", twin_id=7, usage_type="campaign_image",
                                           quantity=1, used_at=datetime.now(UTC)))
        status = bridge.wait_for_settlement(result.event_id, timeout=60)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bridge.errors import BridgeError

USAGE_PATH: Final = "/v1/usage-events"
FINAL_STATUSES: Final = frozenset({"settled", "rejected"})


class BridgeApiError(BridgeError):
    """The bridge answered with an error (problem details kept in ``problem``)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.detail: str = str(problem.get("detail") or problem.get("title") or "no detail")
        """The problem's detail, else its title."""
        super().__init__(f"bridge answered {status}: {self.detail}")


class EventConflictError(BridgeApiError):
    """The event id was used before with a different body (409)."""


class RetryableError(BridgeApiError):
    """A 5xx or 429 answer, retried; raised once the attempts are spent."""

    def __init__(self, status: int, problem: Mapping[str, Any], retry_after: float | None) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


class SettlementTimeoutError(BridgeError):
    """The event did not reach a final status in time."""

    def __init__(self, event_id: str, timeout: float, last_status: str) -> None:
        self.event_id = event_id
        self.timeout = timeout
        self.last_status = last_status
        super().__init__(f"event {event_id!r} still {last_status} after {timeout:g} s")


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The bridge's answer for one event: stored (its status as it stands, ``replayed`` when it
    was stored before with the same body) or ``refused`` (a code and a sentence)."""

    event_id: str
    status: str
    usage_id: int | None = None
    replayed: bool = False
    code: str | None = None
    sentence: str | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> SubmitResult:
        return cls(
            event_id=data["event_id"],
            status=data["status"],
            usage_id=data.get("usage_id"),
            replayed=bool(data.get("replayed", False)),
            code=data.get("code"),
            sentence=data.get("sentence"),
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry: exponential backoff with jitter, or ``Retry-After``."""

    max_attempts: int = 5
    initial_wait: float = 0.2
    max_wait: float = 10.0
    retry_rate_limited: bool = True
    """Retry 429 answers too (network errors and 5xx always are)."""

    def retries(self, status: int) -> bool:
        """Whether an answer with this status is asked again."""
        return status >= 500 or (status == 429 and self.retry_rate_limited)


def usage_event(
    event_id: str,
    *,
    twin_id: int,
    usage_type: str | int,
    quantity: int,
    used_at: datetime,
    campaign_ref: str | None = None,
    asset_ref: str | None = None,
) -> dict[str, Any]:
    """A usage event as the API takes it (``used_at`` must carry a time zone)."""
    if used_at.tzinfo is None:
        raise ValueError("used_at needs a time zone")
    event: dict[str, Any] = {
        "event_id": event_id,
        "twin_id": twin_id,
        "usage_type": usage_type,
        "quantity": quantity,
        "used_at": used_at.isoformat(),
    }
    if campaign_ref is not None:
        event["campaign_ref"] = campaign_ref
    if asset_ref is not None:
        event["asset_ref"] = asset_ref
    return event


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem details (RFC 9457) of an error answer; a body that is not JSON becomes the
    ``detail``."""
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200]}
    return body if isinstance(body, dict) else {"detail": str(body)}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class BridgeHttp:
    """HTTP to one bridge: network errors and the answers ``retry`` names (5xx, 429) are asked
    again with exponential backoff and jitter, or after the answer's ``Retry-After``.

    Args:
        base_url: the bridge's base URL; request paths are relative to it.
        headers: sent with every request (an ``Authorization`` header, say).
        timeout: seconds for each attempt.
        retry: how often and how long to retry.
        transport: httpx's transport (a ``MockTransport`` in tests).
        sleep: how to wait between attempts.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": "twin-bridge-client", **(headers or {})},
            timeout=timeout,
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._backoff = wait_exponential_jitter(
            multiplier=self._retry.initial_wait,
            max=self._retry.max_wait,
            jitter=self._retry.initial_wait,
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to ``method path`` once it is not one to retry (it may be a 4xx).

        Raises:
            RetryableError: the last retryable answer, once the attempts are spent.
            httpx.TransportError: the last network error, once the attempts are spent.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((httpx.TransportError, RetryableError)),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                response = self._http.request(method, path, **kwargs)
                if self._retry.retries(response.status_code):
                    raise RetryableError(
                        response.status_code, problem_of(response), _retry_after(response)
                    )
                return response
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful answer.

        Raises:
            BridgeApiError: the bridge refused (4xx), or kept failing (``RetryableError``).
            httpx.TransportError: the bridge could not be reached.
        """
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise BridgeApiError(response.status_code, problem_of(response))
        return response.json()

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(error.retry_after, self._retry.max_wait)
        return self._backoff(state)


class BridgeClient:
    """Talks to one bridge with one brand's API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = BridgeHttp(
            base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            retry=retry,
            transport=transport,
            sleep=sleep,
        )
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, event: Mapping[str, Any]) -> SubmitResult:
        """Reports one event.

        Raises:
            EventConflictError: the event id was used before with another body.
            BridgeApiError: any other refusal of the request (401, 413, 422 validation...).
        """
        response = self._http.request("POST", USAGE_PATH, json=dict(event))
        if response.status_code in (200, 202):
            return SubmitResult.of(response.json())
        problem = problem_of(response)
        if response.status_code == 409:
            raise EventConflictError(409, problem)
        if response.status_code == 422 and "code" in problem:
            return SubmitResult(
                event_id=problem["event_id"],
                status="refused",
                code=problem["code"],
                sentence=problem.get("sentence"),
            )
        raise BridgeApiError(response.status_code, problem)

    def submit_batch(self, events: Sequence[Mapping[str, Any]]) -> list[SubmitResult]:
        """Reports up to 1,000 events in one request; one result per event, in order.

        Raises:
            BridgeApiError: when the request as a whole is refused.
        """
        response = self._http.request(
            "POST", USAGE_PATH, json={"events": [dict(e) for e in events]}
        )
        if response.status_code != 200:
            raise BridgeApiError(response.status_code, problem_of(response))
        return [SubmitResult.of(item) for item in response.json()["results"]]

    def status(self, event_id: str) -> dict[str, Any]:
        """The event's status record (``status``: accepted, submitted, settled or rejected).

        Raises:
            BridgeApiError: 404 for an event the bridge does not know.
        """
        response = self._http.request("GET", f"{USAGE_PATH}/{event_id}")
        if response.status_code != 200:
            raise BridgeApiError(response.status_code, problem_of(response))
        body: dict[str, Any] = response.json()
        return body

    def wait_for_settlement(
        self,
        event_id: str,
        *,
        timeout: float,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Polls the event's status until it is settled or rejected.

        Raises:
            SettlementTimeoutError: when ``timeout`` seconds pass first.
        """
        deadline = clock() + timeout
        while True:
            status = self.status(event_id)
            if status["status"] in FINAL_STATUSES:
                return status
            remaining = deadline - clock()
            if remaining <= 0:
                raise SettlementTimeoutError(event_id, timeout, status["status"])
            self._sleep(min(poll_interval, remaining))
