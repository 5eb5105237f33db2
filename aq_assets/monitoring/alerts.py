"""Alerts: a Slack-compatible webhook when AQ_ALERT_WEBHOOK_URL is set, a clear log line otherwise."""

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
