"""Alerts: a Slack-compatible webhook when AQ_ALERT_WEBHOOK_URL is set, a clear log line
otherwise; and where the pages an alert or the UI points to are served."""

from __future__ import annotations

import logging

import httpx
from dagster import ConfigurableResource

log = logging.getLogger("aq.alerts")


class Alerter(ConfigurableResource):
    webhook_url: str = ""
    timeout_s: float = 10.0

    def send(self, text: str) -> bool:
        """Post `{"text": text}` to the webhook, or log it. Returns whether a webhook took it;
        a webhook that fails is logged, never raised: an alert must not fail the run it reports."""
        if not self.webhook_url:
            log.error("ALERT %s", text)
            return False
        try:
            response = httpx.post(self.webhook_url, json={"text": text}, timeout=self.timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.error("ALERT (webhook %s failed: %s) %s", self.webhook_url, exc, text)
            return False
        return True


class ServiceLinks(ConfigurableResource):
    """The forecast service's base URL (AQ_SERVICE_URL), so assets can link to the pages it
    serves, e.g. a day's drift report, and the Dagster UI opens them in one click."""

    service_url: str = "http://127.0.0.1:8000"

    def drift_report(self, day: str) -> str:
        return f"{self.service_url.rstrip('/')}/v1/reports/drift/{day}"
