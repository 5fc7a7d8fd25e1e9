"""Fakes of the services budgetguard's actions talk to: real HTTP servers on 127.0.0.1, for tests and demos.

Each fake is a ``LoopbackServer`` (``_server``: a threaded HTTP server on a free loopback port) that
answers like the real service,
status codes, body formats and quirks included (as recorded in the project's
``reference/integrations.md``), records every request it received, and can be scripted to fail.
budgetguard talks to them through its production code path (httpx over a socket), so a test exercises
exactly what a deployment does.

- ``lab.fakes.notify``: a Standard Webhooks receiver, Slack incoming webhooks, PagerDuty Events API v2
  and Alertmanager API v2.

Like the rest of the lab, the fakes import nothing from budgetguard: a signature or a payload is checked
against the services' own rules, not against budgetguard's idea of them.
"""

from lab.fakes.notify import (
    AlertmanagerFake,
    Answer,
    FakeService,
    PagerDutyFake,
    PagerDutyIncident,
    Recorded,
    SlackFake,
    StoredAlert,
    WebhookReceiver,
)

__all__ = [
    "AlertmanagerFake",
    "Answer",
    "FakeService",
    "PagerDutyFake",
    "PagerDutyIncident",
    "Recorded",
    "SlackFake",
    "StoredAlert",
    "WebhookReceiver",
]
