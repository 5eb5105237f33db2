"""Ingest stage: discover sensors and keep one row per reading in `ingest.raw_readings`."""
