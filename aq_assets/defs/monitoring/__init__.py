"""Monitoring stage: the daily drift report, its check, retraining on drift, and alerts."""
