"""Alerts POSTed as JSON to a webhook, from a thread of their own: a bounded queue that never
blocks the caller (what does not fit is dropped and counted), each alert tried again with
backoff until the receiver answers 2xx or the attempts are spent."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import orjson

log = logging.getLogger("marketlab.watch")


class Webhook:
    """``send`` queues; a daemon thread POSTs. ``close`` lets the queue drain for a moment."""

    def __init__(
        self,
        url: str,
        max_queue: int = 1000,
        attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
    ):
        self.url = url
        self.attempts, self.backoff_s, self.timeout_s = attempts, backoff_s, timeout_s
        self.dropped = 0  # alerts the full queue let go of
        self.failed = 0  # alerts every attempt failed for
        self.delivered = 0
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marketlab-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._stop.set()

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._deliver(alert)

    def _deliver(self, alert: Mapping[str, Any]) -> None:
        body = orjson.dumps(alert, option=orjson.OPT_NON_STR_KEYS)
        error: Exception = RuntimeError("not sent")
        for attempt in range(self.attempts):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    if 200 <= answer.status < 300:
                        self.delivered += 1
                        return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = exc
            else:
                error = RuntimeError(f"answered {answer.status}")
            if attempt + 1 < self.attempts and self._stop.wait(self.backoff_s * 2**attempt):
                break
        self.failed += 1
        log.warning("alert webhook %s: %s not delivered: %s", self.url, alert.get("rule"), error)
