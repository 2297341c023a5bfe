"""The daemon's configuration: typed sections, loaded from YAML with located errors."""
from .loader import (ConfigError, ConfigIssue, PASSWORD_ENV, check_models, is_loopback, load_config,
                     public_dict)
from .schema import (Config, HealthConfig, HttpConfig, MqttConfig, PipelineConfig, SOURCE_TYPES, SourceConfig,
                     TlsConfig)

__all__ = [
    "Config", "ConfigError", "ConfigIssue", "HealthConfig", "HttpConfig", "MqttConfig", "PASSWORD_ENV", "PipelineConfig",
    "SOURCE_TYPES", "SourceConfig", "TlsConfig", "check_models", "is_loopback", "load_config", "public_dict",
]
