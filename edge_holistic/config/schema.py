"""The config sections as typed dataclasses.

Each field's ``metadata`` carries what the loader needs to validate it (allowed
choices, numeric range, regex) and a one-line ``doc``. Keeping the rules next to
the field means the loader, ``check-config`` and the docs all read one source of
truth instead of three hand-kept lists drifting apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

# Safe in an MQTT topic level and in a client id: no '/', '+', '#', '$', spaces, NUL.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Levels separated by '/'; no wildcard ('+', '#'), no NUL or white space, no empty level
# at either end, and no leading '$' (topics starting with '$' are the broker's, e.g. $SYS:
# subscribers using '#' would never see ours).
TOPIC_PREFIX_DOC = ("a topic prefix must not start with '$' (broker topics) or '/', end with '/', "
                    "or contain the wildcards '+' or '#', white space or NUL")
ID_DOC = ("1-64 letters, digits, '_', '.' or '-', starting with a letter or digit (it becomes a topic "
          "level and the client id: no '$', '+', '#', '/', white space or NUL)")
TOPIC_PREFIX_PATTERN = r"^[^/+#$\s\x00][^+#\s\x00]*(?<!/)$"


def opt(default: Any, doc: str, **rules: Any) -> Any:
    """A dataclass field with a default, a doc line and validation rules.

    Rules understood by the loader: ``choices`` (tuple), ``min``/``max`` (inclusive),
    ``gt`` (exclusive lower bound), ``pattern`` (regex for strings), ``auto`` (the
    string 'auto' is also accepted), ``as_str`` (scalars are turned into strings
    first, for values YAML would read as numbers, like MQTT protocol ``5``).
    """
    if isinstance(default, (list, dict)) or hasattr(default, "__dataclass_fields__"):
        factory = default if callable(default) else (lambda d=default: d)
        return field(default_factory=factory, metadata={"doc": doc, **rules})
    return field(default=default, metadata={"doc": doc, **rules})


SOURCE_TYPES = ("v4l2", "picamera2", "gstreamer", "file", "images")


@dataclass
class SourceConfig:
    """Where frames come from. Keys that do not apply to ``type`` are ignored."""

    type: str = opt("v4l2", "v4l2 | picamera2 | gstreamer | file | images", choices=SOURCE_TYPES)
    device: str = opt("/dev/video0", "v4l2: device path (/dev/videoN) or index", as_str=True)
    camera_num: int = opt(0, "picamera2: camera index (Picamera2.global_camera_info())", min=0, max=16)
    pipeline: str = opt("", "gstreamer: pipeline string ending in 'appsink drop=true max-buffers=1'")
    path: str = opt("", "file: video file; images: folder of .jpg/.png (re-listed on every pass)")
    width: int = opt(640, "requested frame width (v4l2, picamera2); 0 = driver default", min=0, max=8192)
    height: int = opt(480, "requested frame height (v4l2, picamera2); 0 = driver default", min=0, max=8192)
    fps: float = opt(30.0, "requested camera fps; images: pacing rate; file: used when the file has none",
                     gt=0, max=240)
    fourcc: str = opt("MJPG", "v4l2 pixel format (4 characters); MJPG gives full fps on USB 2", pattern=r"^.{4}$")
    loop: bool = opt(True, "file/images: start again at the end (run --once sets false)")
    realtime: bool = opt(True, "file/images: pace frames at their fps; false = as fast as processed, no drops")


def setting(name: str) -> Any:
    """A config field defined by the pipeline settings table (default, help, range, choices).

    Why: the config section, MQTT ``cmd`` validation and the engine used to keep their own
    copies of these rules and drifted (issue 9, item 4). Model names keep no fixed choice
    list here: the installed manifest decides (``check_models``), and its error lists what
    is installed.
    """
    from ..pipeline.settings import SETTINGS

    s = SETTINGS[name]
    rules: dict = {}
    if s.kind == "choice":
        rules = {"as_str": True} if s.installed else {"choices": s.choices}
    elif s.kind in ("int", "float"):
        rules = {"min": s.minimum, "max": s.maximum}
        if s.also == "auto":
            rules["auto"] = True
    return opt(s.daemon_default, s.help, **rules)


@dataclass
class PipelineConfig:
    """Which models run and how (every key is a row of ``pipeline/settings.py``)."""

    task: str = setting("task")
    pose_model: str = setting("pose_model")
    hand_model: str = setting("hand_model")
    precision: str = setting("precision")
    threads: Union[int, str] = setting("threads")
    max_fps: float = setting("max_fps")
    min_detection_confidence: float = setting("min_detection_confidence")
    min_tracking_confidence: float = setting("min_tracking_confidence")
    smooth: bool = setting("smooth")


@dataclass
class TlsConfig:
    """TLS to the broker (mqtts, usually port 8883)."""

    enabled: bool = opt(False, "use TLS")
    ca_certs: str = opt("", "CA bundle file; empty = system trust store")
    certfile: str = opt("", "client certificate (mutual TLS)")
    keyfile: str = opt("", "client key (mutual TLS)")
    insecure: bool = opt(False, "skip hostname verification (testing only)")


@dataclass
class MqttConfig:
    """The broker session and what is published."""

    enabled: bool = opt(True, "false = process frames without publishing (console status only)")
    host: str = opt("localhost", "broker host name or address", pattern=r"^\S+$")
    port: int = opt(1883, "broker port", min=1, max=65535)
    topic_prefix: str = opt("edge_holistic", "topics are {topic_prefix}/{device_id}/...",
                            pattern=TOPIC_PREFIX_PATTERN, pattern_doc=TOPIC_PREFIX_DOC)
    client_id: str = opt("", "MQTT client id; empty = edge-holistic-{device_id}. Must be unique per broker",
                         pattern=r"^$|" + ID_PATTERN)
    protocol: str = opt("3.1.1", "MQTT protocol version: 5 | 3.1.1", choices=("5", "3.1.1"), as_str=True)
    keepalive: int = opt(30, "seconds; short enough to notice a dead Wi-Fi link", min=5, max=3600)
    qos: int = opt(0, "QoS of landmarks messages (0 recommended; 1/2 go through the bounded queue)",
                   min=0, max=2)
    username: str = opt("", "user name; empty = anonymous")
    password_file: str = opt("", "file holding the password (first line). The env var "
                             "EDGE_HOLISTIC_MQTT_PASSWORD or a systemd credential 'mqtt_password' win")
    max_rate: float = opt(0.0, "cap on landmarks messages per second; 0 = one per processed frame",
                          min=0, max=1000)
    only_with_person: bool = opt(False, "publish landmarks only for frames where a person was found")
    max_unsent_kb: int = opt(1024, "QoS 0 bytes handed to the MQTT client but not yet written to the "
                             "network; above this landmarks are dropped and counted (slow uplink)",
                             min=16, max=1048576)
    queue_size: int = opt(100, "bound of the QoS>=1 outgoing queue (oldest dropped and counted)",
                          min=1, max=100000)
    reconnect_min_delay: float = opt(1.0, "first reconnect delay, seconds (doubles up to the max)",
                                     gt=0, max=600)
    reconnect_max_delay: float = opt(60.0, "longest reconnect delay, seconds", gt=0, max=3600)
    tls: TlsConfig = opt(TlsConfig, "TLS settings")


@dataclass
class HealthConfig:
    """Self-checks: stalls, watchdog, memory, stats cadence."""

    stall_timeout: float = opt(10.0, "no frame for this long -> reopen the source (with backoff)",
                               gt=0, max=3600)
    unhealthy_after: float = opt(60.0, "frames arrive but none processed (or the frame loop stuck) this long -> "
                                 "stop systemd watchdog pings so systemd restarts us; a source that is down "
                                 "is reported, not restarted for", gt=0, max=86400)
    stats_interval: float = opt(15.0, "seconds between 'stats' messages", min=1, max=86400)
    memory_check_interval: float = opt(5.0, "seconds between RSS checks", min=0.5, max=3600)
    memory_soft_mb: float = opt(0.0, "RSS above this -> shed load (lower fps, lite models); "
                                "0 = 85% of the cgroup memory.high (else memory.max) when set, else off", min=0)
    memory_hard_mb: float = opt(0.0, "RSS above this -> exit non-zero so systemd restarts us; "
                                "0 = 95% of the cgroup memory.max when one is set, else off", min=0)
    shed_max_fps: float = opt(5.0, "max_fps while shedding load", gt=0, max=240)


@dataclass
class HttpConfig:
    """The web page and HTTP API inside the daemon (live view, analyze, /healthz, /metrics)."""

    enabled: bool = opt(True, "serve the web page and HTTP API")
    host: str = opt("127.0.0.1", "address to bind; beyond loopback needs token_file or allow_anonymous",
                    pattern=r"^\S+$")
    port: int = opt(8080, "TCP port", min=1, max=65535)
    token_file: str = opt("", "file whose first line is the Bearer token; then every path but /healthz "
                          "and /metrics needs it")
    allow_anonymous: bool = opt(False, "allow a non-loopback bind without a token (trusted networks only)")
    max_upload_mb: float = opt(10.0, "largest accepted upload, MB (refused while it streams in)", gt=0, max=200)
    max_side: int = opt(1920, "uploads with a longer side are scaled down before inference", min=64, max=8192)
    timeout_s: float = opt(10.0, "analyze: longest wait to start, and longest upload time, seconds",
                           gt=0, max=600)


@dataclass
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (docs/homeassistant.md)."""

    enabled: bool = opt(True, "announce this device to Home Assistant (MQTT discovery) on every connect")
    discovery_prefix: str = opt("homeassistant", "Home Assistant's discovery prefix (its MQTT integration setting)",
                                pattern=TOPIC_PREFIX_PATTERN)
    snapshot: bool = opt(False, "also announce an image entity: an annotated JPEG snapshot, at most one a second")


@dataclass
class Config:
    """The whole file. ``device_id`` names this device in topics and the client id."""

    device_id: str = opt("edge-holistic", "this device's name in topics and the MQTT client id",
                         pattern=ID_PATTERN, pattern_doc=ID_DOC)
    log_level: str = opt("info", "debug | info | warning | error",
                         choices=("debug", "info", "warning", "error"))
    source: SourceConfig = opt(SourceConfig, "frame source")
    pipeline: PipelineConfig = opt(PipelineConfig, "models and inference")
    mqtt: MqttConfig = opt(MqttConfig, "broker and topics")
    health: HealthConfig = opt(HealthConfig, "self-checks")
    http: HttpConfig = opt(HttpConfig, "web page and HTTP API")
    homeassistant: HomeAssistantConfig = opt(HomeAssistantConfig, "Home Assistant discovery")

    # Filled by the loader, never from the file.
    path: Optional[str] = field(default=None, metadata={"internal": True})
    digest: str = field(default="", metadata={"internal": True})
    mqtt_password: Optional[str] = field(default=None, repr=False, metadata={"internal": True})

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-holistic-{self.device_id}"

    @property
    def topic_base(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.device_id}"
