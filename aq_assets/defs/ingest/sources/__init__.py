"""Where readings come from: simulated (offline default), the OpenAQ v3 API, the OpenAQ S3 archive."""
