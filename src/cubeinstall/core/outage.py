"""How long a server has given no answer: the one retry budget of a server in a run.

It lives with the client of the server (the cluster's ``KubeClient``, a port-forward's
target), so every call of a run shares it: each object has its own deadline, and
without a shared budget a run of 600 objects against a dead server would wait 600
deadlines. A server that answered earlier in the run and stops (an apiserver
restarting) is waited for up to ``budget`` seconds (``timeouts.object_seconds``); one
that never answered (wrong address, cluster down) gets ``FIRST_CONTACT_RETRIES`` quick
retries, so a refused connection is reported within seconds, not minutes. Once the
budget is spent the server is *given up* for the run: later calls fail at once instead of
each waiting its own timeout (a silent server would otherwise cost every object of every
stage a connect timeout).
"""

from __future__ import annotations

import threading
import time
from typing import Any

FIRST_CONTACT_RETRIES = 2  # a server never reached in this run: refused 3 times = down


class Outage:
    def __init__(self, budget: float, first_contact_retries: int = FIRST_CONTACT_RETRIES):
        self.budget = budget
        self.first_contact_retries = first_contact_retries
        self.reached = False  # any answer from the server in this run
        self.since: float | None = None
        self.retries = 0  # retries granted in the current outage
        self.given_up = False  # budget spent: ask the server nothing more in this run
        self.last_failure = ""  # what the last unanswered call met (said once given up)
        self._noted = 0.0
        self._lock = threading.Lock()

    def allows_retry(self, unreachable: bool, failure: str = "") -> bool:
        """After a failed call: may it be tried again? ``unreachable``: the server gave no
        answer at all (any answer, even an error, ends the outage); ``failure``: what it met."""
        if not unreachable:
            self.answered()
            return True
        with self._lock:
            self.last_failure = failure or self.last_failure
            now = time.monotonic()
            if self.since is None:
                self.since = now
            if self.reached:
                allowed = now - self.since < self.budget
            else:
                allowed = self.retries < self.first_contact_retries
            self.retries += allowed
            self.given_up = not allowed
            return allowed

    def answered(self) -> None:
        with self._lock:
            self.reached, self.since, self.retries, self.given_up = True, None, 0, False

    def retrying(self) -> str | None:
        """"retrying (n/N) ..." for the retry just granted; None when one was said less than a
        second ago in a long outage (concurrent calls share it and would repeat it)."""
        with self._lock:
            now = time.monotonic()
            if self.reached and now - self._noted < 1:
                return None
            self._noted = now
            if self.reached:
                return f"retrying ({self.retries}, for up to {self.budget:.0f} s) ..."
            return f"retrying ({self.retries}/{self.first_contact_retries}) ..."


def outage_of(ctx: Any, kubeconfig: Any, context: str | None, budget: float) -> Outage:
    """The one Outage of a cluster's API server in a run (``ctx``: the RunContext), shared
    by whoever talks to it: the kube client and the databases' port-forwards."""
    return ctx.cached(f"outage:{kubeconfig}:{context}", lambda: Outage(budget))
