"""Service settings from environment variables, read once through `get_settings()`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aq_assets.ml import air_quality

MIN_TOKEN_CHARS = 16


class Settings(BaseSettings):
    """Every field is an environment variable (its alias); tests pass them by field name."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    aq_home: str = Field(default=".aq", validation_alias="AQ_HOME")
    mlflow_tracking_uri: str = Field(
        default="",
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking server; default the sqlite store under AQ_HOME.",
    )
    registered_model: str = Field(default="aq-forecast", validation_alias="AQ_MODEL_NAME")
    alias: str = Field(default="champion", validation_alias="AQ_MODEL_ALIAS")
    api_token: SecretStr | None = Field(default=None, validation_alias="AQ_API_TOKEN")
    api_open: bool = Field(
        default=False,
        validation_alias="AQ_API_OPEN",
        description="Serve without a token: for local use only.",
    )
    poll_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias="AQ_API_POLL_SECONDS",
        description="How often the champion alias and the online_features file are checked; "
        "0 turns the background check off.",
    )
    max_series: int = Field(default=100, ge=1, validation_alias="AQ_API_MAX_SERIES")
    max_history_rows: int = Field(
        default=2000,
        ge=1,
        validation_alias="AQ_API_MAX_HISTORY_ROWS",
        description="Readings per series and per co-located parameter of one request.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, validation_alias="AQ_API_MAX_BODY_BYTES"
    )
    online_features: str = Field(
        default="",
        validation_alias="AQ_ONLINE_FEATURES",
        description="The online_features snapshot; default $AQ_HOME/online_features.parquet.",
    )
    thresholds: str = Field(
        default="",
        validation_alias="AQ_THRESHOLDS",
        description="Concentrations whose exceedance probability forecasts carry, "
        "comma-separated; empty: the parameter's defaults (as the pipeline's predictions).",
    )
    host: str = Field(default="127.0.0.1", validation_alias="AQ_API_HOST")
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="AQ_API_PORT")

    @field_validator("thresholds")
    @classmethod
    def _thresholds_parse(cls, value: str) -> str:
        air_quality.thresholds("", value)  # raises naming the variable and the format
        return value

    @model_validator(mode="after")
    def _token_or_open(self) -> Settings:
        token = self.api_token.get_secret_value() if self.api_token else ""
        if self.api_open:
            return self
        if not token.strip():
            raise ValueError(
                "Set AQ_API_TOKEN to the bearer token clients must send, or AQ_API_OPEN=true "
                "to serve without one (local use only)."
            )
        if token != token.strip() or len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"AQ_API_TOKEN must be at least {MIN_TOKEN_CHARS} characters, without spaces "
                "around it (one that is easy to guess protects nothing). Make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return self

    @property
    def home(self) -> Path:
        return Path(self.aq_home).expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        """As `MLflowTracking.uri` computes it, so the service reads the pipeline's store."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def online_features_path(self) -> Path:
        if self.online_features:
            return Path(self.online_features).expanduser()
        return self.home / "online_features.parquet"

    def token(self) -> bytes | None:
        if self.api_open or self.api_token is None:
            return None
        return self.api_token.get_secret_value().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()
