"""Predictions stage: daily batch forecasts from the champion, and the snapshot the service reads."""
