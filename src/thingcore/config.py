"""One settings object for the whole server: TOML file < THINGCORE_* environment < CLI flags.

Nested sections (``[tls]``, ``[auth]``, ``[limits]``) map to environment variables with a double
underscore, e.g. ``THINGCORE_TLS__CERTFILE`` or ``THINGCORE_LIMITS__MAX_QUEUED_MESSAGES``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _word_of_bool(value: Any) -> Any:
    """TOML's true/false for a setting whose values are words: "true" / "false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


_WORDS = BeforeValidator(_word_of_bool)
#: who may come in without credentials: "loopback" addresses only, "true" anyone, "false" nobody
LoopbackSwitch = Annotated[Literal["loopback", "true", "false"], _WORDS]


class _Section(BaseModel):
    """A config table: a misspelt key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TLSSettings(_Section):
    certfile: Path | None = Field(None, description="PEM server certificate (chain); enables the MQTTS listener")
    keyfile: Path | None = Field(None, description="PEM private key of the server certificate")
    cafile: Path | None = Field(None, description="PEM CA bundle used to verify client certificates")
    require_client_cert: bool = Field(False, description="Refuse TLS clients without a certificate from cafile")

    @property
    def enabled(self) -> bool:
        return self.certfile is not None


class AccessRule(_Section):
    effect: Literal["allow", "deny"] = "deny"
    action: str | list[str] = "all"
    topic: str | None = Field(
        None, description="MQTT topic filter the rule covers (%c client id, %u user name); without it the rule "
        "covers every topic, $ topics included, and connecting"
    )
    username: str | None = None
    client_id: str | None = None
    principal: str | None = None
    anonymous: bool | None = Field(None, description="Match only anonymous (true) or only authenticated (false)")
    reason_code: int | None = Field(None, description="MQTT reason code sent when this rule refuses")


class AuthSettings(_Section):
    allow_anonymous: LoopbackSwitch = Field(
        "loopback", description="Anonymous MQTT clients: only from loopback addresses (default), always, or never "
        "(HTTP callers: see http.allow_anonymous)"
    )
    password_file: Path | None = Field(None, description="Password file managed with `thingcore passwd`")
    acl: list[AccessRule] = Field(default_factory=list, description="Access rules, first match wins")


class LimitSettings(_Section):
    max_packet_size: int = Field(1024 * 1024, ge=64, le=268_435_460, description="Largest MQTT packet accepted")
    receive_maximum: int = Field(100, ge=1, le=65535, description="Unacknowledged inbound QoS 1/2 per client")
    max_inflight: int = Field(100, ge=1, le=65535, description="Unacknowledged outbound QoS 1/2 per client")
    max_queued_messages: int = Field(1000, ge=0, description="Messages queued per session beyond in-flight")
    max_queued_bytes: int = Field(
        256 * 1024 * 1024, ge=0,
        description="Payload bytes stored for persistent sessions across the broker, each message counted once"
                    " however many sessions it waits for; past it new messages for offline sessions are dropped"
                    " (counted in messages_dropped, logged at most every 10 s). 0: no limit",
    )
    persistent_session_expiry: int = Field(
        3600, ge=0,
        description="Seconds an MQTT 3.1.1 persistent session (clean session 0) is kept after its client"
                    " disconnects, as AWS IoT's 1 hour default. 0: never expires",
    )
    queue_qos0: bool = Field(False, description="Queue QoS 0 messages for offline persistent sessions")
    topic_alias_maximum: int = Field(10, ge=0, le=65535, description="Topic aliases a v5 client may use")
    max_keepalive: int = Field(65535, ge=0, le=65535, description="Largest keep-alive a client may ask for")
    session_expiry_max: int | None = Field(None, ge=0, description="Cap on session expiry seconds (none: no cap)")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds a new connection has to send CONNECT")
    max_output_buffer: int = Field(
        8 * 1024 * 1024, ge=65536,
        description="Bytes buffered for a slow reader; past a quarter of it QoS 0 messages to it are dropped",
    )
    slow_consumer_timeout: float = Field(
        10.0, gt=0,
        description="Seconds a client may leave its output buffer full, or acknowledge no QoS 1/2 message while "
        "its receive window is full or messages wait for it, before it is disconnected (0x97, THROTTLED)",
    )
    backpressure_timeout: float = Field(
        2.0, gt=0,
        description="Longest pause of a QoS 1/2 publisher while a subscriber's queue drains; a subscriber that "
        "acknowledges nothing for this long, or does not drain within it, no longer pauses publishers",
    )
    backpressure_first_ack: float = Field(
        0.15, gt=0,
        description="Seconds a subscriber whose queue began to fill has to acknowledge its first message; until "
        "then a publish its full queue cannot take waits (at most backpressure_timeout), after it the subscriber "
        "is stuck until it acknowledges. Raise it for subscribers with a long round trip",
    )
    max_connections: int = Field(0, ge=0, description="Connection limit (0: unlimited)")
    max_sessions: int = Field(
        100_000, ge=0,
        description="Sessions, connected or persistent and offline (0: unlimited); past it a CONNECT that would "
        "start a new session is refused with CONNACK 0x97 (v5) / 0x03 (3.1.1)",
    )
    max_subscriptions: int | None = Field(
        None, ge=0,
        description="Subscriptions per client (0: unlimited; default 1000, 50 in the aws profile); past it "
        "SUBACK 0x97 (v5) / 0x80 (3.1.1) for each filter beyond",
    )
    max_retained_messages: int = Field(
        100_000, ge=0,
        description="Retained topics (0: unlimited); past it a retained publish to a new topic is refused "
        "(PUBACK 0x97, HTTP 429); replacing or deleting a retained message always works",
    )
    max_retained_bytes: int = Field(
        256 * 1024 * 1024, ge=0,
        description="Total payload bytes of retained messages (0: unlimited); a retained publish that would "
        "grow the total past it is refused like one past max_retained_messages",
    )
    max_client_id_length: int = Field(65535, ge=1, le=65535)


class AWSSettings(_Section):
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]+$", description="Region written into ARNs")
    account_id: str = Field("000000000000", pattern=r"^[0-9]{12}$", description="Account id written into ARNs")


class RegistrySettings(_Section):
    thing_type_delete_delay: float = Field(
        300.0, ge=0, description="Seconds a thing type must stay deprecated before it can be deleted (AWS: 300)"
    )


class AdminSettings(_Section):
    token: str | None = Field(None, min_length=16, description="Bearer token required by the /api/v1 admin API")
    allow_unauthenticated: LoopbackSwitch = Field(
        "loopback", description="Without a token: admin API from loopback addresses only (default), always, never"
    )


class RulesSettings(_Section):
    principal: str = Field(
        "thingcore-rules", min_length=1,
        description="Principal rule actions act as: a republish passes the same gate as a client's publish, so "
        "access rules with `principal = \"thingcore-rules\"` confine what rules may write",
    )
    directory: Path | None = Field(
        None, description="Directory of AWS topicRulePayload JSON files applied at start-up (file name = rule name)"
    )
    action_queue_size: int = Field(10_000, ge=1, description="Jobs queued per rule action; beyond it: dropped")
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per action and message before the error action")
    retry_delay: float = Field(0.2, ge=0, description="First back-off between tries in seconds; doubles each try")
    evaluation_workers: int = Field(4, ge=1, description="Threads evaluating statements that call external functions")
    evaluation_queue_size: int = Field(10_000, ge=1, description="Such evaluations waiting; beyond it: dropped")
    http_timeout: float = Field(3.0, gt=0, description="HTTP action request timeout in seconds (AWS: 3)")
    http_concurrency: int = Field(8, ge=1, description="Requests in flight per HTTP action")
    function_timeout: float = Field(3.0, gt=0, description="Lambda handler timeout in seconds (aws_lambda(): 2)")
    function_workers: int = Field(4, ge=1, description="Threads running lambda handlers (the concurrency limit)")
    allowed_destination_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks (CIDR, e.g. \"127.0.0.0/8\") that http, openSearch/elasticsearch and "
        "salesforce actions and destination confirmations may connect to; public addresses are always allowed",
    )
    allow_private_destinations: bool = Field(
        False, description="Let rule actions connect to any address: loopback, link-local (cloud metadata), private"
    )
    max_value_size: int = Field(
        2 * 1024 * 1024, ge=1024, description="Largest string, array or object (serialized) a rule's SQL may build "
        "while evaluating one message, in characters; past it that evaluation fails (error action). Keep it above "
        "4/3 of [mqtt] max_packet_size so encode(*, 'base64') of any payload fits")
    max_evaluation_cost: int = Field(
        5_000_000, ge=10_000, description="Work one rule may spend on one message, in units of about 10 ns "
        "(characters handled by functions, nested SELECT elements, regexp matches); past it that evaluation fails")

    @field_validator("allowed_destination_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"allowed_destination_networks: {net!r} is not a network: {exc}") from None
        return value


class TableKeys(_Section):
    hash: str = Field(..., min_length=1, description="Hash (partition) key attribute of the table")
    range: str | None = Field(None, description="Range (sort) key attribute, if the table has one")


class TableDestinations(_Section):
    dsn: str | None = Field(None, description="PostgreSQL DSN for dynamoDB/dynamoDBv2 tables (default: embedded)")
    keys: dict[str, TableKeys] = Field(
        default_factory=dict, description="Key attributes per table name, for dynamoDBv2 (dynamoDB names its own)"
    )


class StreamDestination(_Section):
    redis: str | None = Field(None, description="Redis URL: records are XADDed to a stream of that name")
    nats: str | None = Field(None, description="NATS URL: records are published to a JetStream stream")
    key: str | None = Field(None, description="Redis key or NATS subject (default: the stream name)")


class QueueDestination(_Section):
    redis: str | None = Field(None, description="Redis URL: messages are RPUSHed to a list of that name")
    key: str | None = Field(None, description="Redis list key (default: the queue name)")


class DestinationSettings(_Section):
    tables: TableDestinations = Field(default_factory=TableDestinations)
    streams: dict[str, StreamDestination] = Field(
        default_factory=dict, description="kinesis/firehose stream name -> Redis or NATS (default: embedded file)"
    )
    queues: dict[str, QueueDestination] = Field(
        default_factory=dict, description="SQS queue name -> Redis list (default: embedded queue)"
    )


class ObjectStorageSettings(_Section):
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint for the s3 rule action (none: a directory per bucket in the data dir)"
    )
    region: str = Field("us-east-1", description="Region the S3 client signs for")
    access_key_id: str | None = Field(None, description="Access key of the S3-compatible endpoint")
    secret_access_key: str | None = Field(None, description="Its secret (redacted in the admin API)")


class CloudwatchSettings(_Section):
    max_metric_series: int = Field(1000, ge=1, description="cloudwatchMetric series kept on /metrics; beyond: refused")
    logs_stdout: bool = Field(False, description="cloudwatchLogs also writes each line to standard output")


class NotificationSettings(_Section):
    topics: dict[str, list[str]] = Field(
        default_factory=dict, description="sns rule action: topic ARN -> Apprise URLs (mailto://, json://, ...)"
    )


class SearchSettings(_Section):
    endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="elasticsearch/openSearch rule actions: AWS domain endpoint -> URL of the real cluster; "
        "unmapped *.amazonaws.com endpoints use the embedded SQLite full-text index",
    )


class AccessKey(_Section):
    access_key_id: str = Field(..., min_length=1, description="The AWS access key id clients sign with")
    secret_access_key: str = Field(..., min_length=1, description="Its secret (redacted in the admin API)")
    principal: str | None = Field(None, description="Principal for access rules (default: the access key id)")


class HTTPSettings(_Section):
    certfile: Path | None = Field(None, description="PEM certificate (chain): the HTTP port serves HTTPS and wss")
    keyfile: Path | None = Field(None, description="PEM private key of that certificate")
    verify_signatures: Annotated[Literal["true", "false", "non-loopback"], _WORDS] = Field(
        "non-loopback",
        description="AWS SigV4 checks: `true` every request and WebSocket upgrade must be signed with an access key; "
        "`non-loopback` (default) signatures are checked except from loopback clients signing with an unknown key; "
        "`false` signatures are ignored. Unsigned callers are anonymous (see http.allow_anonymous)",
    )
    access_keys: list[AccessKey] = Field(default_factory=list, description="Access keys accepted in signatures")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (`https://app.example.com:8443`) besides the server's own whose pages may open "
        "/mqtt WebSockets and send POST/PUT/PATCH/DELETE requests; any other Origin is refused with 403",
    )
    hostnames: list[str] = Field(
        default_factory=list,
        description="Names this server is reached by (`iot.example.com`, `*.example.com`). Besides IP literals and "
        "localhost, only these are accepted in the Host header of management requests and of loopback callers "
        "(a defence against DNS rebinding)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For/Forwarded and X-Forwarded-Proto "
        "headers are believed; from anyone else those headers are ignored (default: none)",
    )
    max_body_size: int | None = Field(
        None, ge=1, description="Largest request body in bytes on every route, refused with 413 before or while it "
        "is read (default: limits.max_packet_size + 64 KiB)",
    )
    idle_timeout: float = Field(
        10.0, gt=0, description="Seconds a connection may take to send a request's headers, from its opening and "
        "after each response; then it is closed",
    )
    max_connections: int = Field(
        1000, ge=0, description="Open HTTP connections (not counting upgraded WebSockets); one more gets 503 and is "
        "closed at once (0: unlimited)",
    )
    allow_anonymous: LoopbackSwitch = Field(
        "loopback",
        description="Unsigned HTTP callers of the data plane (publish, retained messages, shadows): from loopback "
        "addresses only (default), always, or never. Independent of auth.allow_anonymous (MQTT only); "
        "managing (rules, things, /api/v1) is never open to them (see [admin])",
    )


    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            parts = urlsplit(value.strip().lower())
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
                raise ValueError(f"{value!r} is not an origin: scheme://host[:port], e.g. https://app.example.com")
            out.append(f"{parts.scheme}://{parts.netloc}")
        return out

    @field_validator("hostnames")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        return [v.strip().lower().rstrip(".") for v in values if v.strip()]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR") from None
        return [v.strip() for v in values]

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def body_limit(self, max_packet_size: int) -> int:
        """The effective max_body_size: a full MQTT packet fits in an HTTP publish, with room for JSON around it."""
        return self.max_body_size if self.max_body_size is not None else max_packet_size + 64 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="THINGCORE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = Field("0.0.0.0", description="Address every listener binds to")
    mqtt_port: int = Field(1883, ge=0, le=65535)
    mqtts_port: int = Field(8883, ge=0, le=65535)
    http_port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Field(Path("thingcore-data"), description="SQLite database and other state")
    persistence: bool = Field(True, description="Keep state in the data dir (false: memory only)")
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="NORMAL survives a process crash; FULL also a power cut, at a cost"
    )
    profile: Literal["standard", "aws"] = Field("standard", description="`aws` applies AWS IoT Core's limits")
    log_level: str = "INFO"
    shutdown_grace: float = Field(2.0, ge=0)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    aws: AWSSettings = Field(default_factory=AWSSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    functions: dict[str, str] = Field(
        default_factory=dict, description="Lambda-style handlers by name: `module:function` or `path/file.py:function`"
    )
    secrets: dict[str, str] = Field(default_factory=dict, description="Secrets served to the SQL get_secret()")
    object_storage: ObjectStorageSettings = Field(default_factory=ObjectStorageSettings)
    cloudwatch: CloudwatchSettings = Field(default_factory=CloudwatchSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    destinations: DestinationSettings = Field(
        default_factory=DestinationSettings, description="Where dynamoDB, kinesis, firehose and sqs actions write"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


class ConfigError(Exception):
    """A configuration mistake, reported to the user without a stack trace."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings: defaults, then the TOML file, then THINGCORE_* variables, then overrides."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {config_file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file} is not valid TOML: {exc}") from exc
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        env_only = Settings()  # environment over defaults
        merged = _deep_merge(file_values, env_only.model_dump(exclude_unset=True))
        return Settings(**_deep_merge(merged, clean))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {where}: {err['msg']}")
        source = f" in {config_file}" if config_file else ""
        raise ConfigError("invalid configuration" + source + ":\n" + "\n".join(lines)) from exc


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as a JSON-able dict with secrets hidden (for logs and the admin API)."""
    data = settings.model_dump(mode="json")
    if data["tls"].get("keyfile"):
        data["tls"]["keyfile"] = "***"
    if data["http"].get("keyfile"):
        data["http"]["keyfile"] = "***"
    for key in data["http"]["access_keys"]:
        key["secret_access_key"] = "***"
    if data["admin"].get("token"):
        data["admin"]["token"] = "***"
    data["secrets"] = {name: "***" for name in data["secrets"]}
    if data["object_storage"].get("secret_access_key"):
        data["object_storage"]["secret_access_key"] = "***"
    topics = data["notifications"]["topics"]
    data["notifications"]["topics"] = {arn: ["***"] * len(urls) for arn, urls in topics.items()}
    dest = data["destinations"]
    if dest["tables"].get("dsn"):
        dest["tables"]["dsn"] = _hide_password(dest["tables"]["dsn"])
    for conf in [*dest["streams"].values(), *dest["queues"].values()]:
        for engine in ("redis", "nats"):
            if conf.get(engine):
                conf[engine] = _hide_password(conf[engine])
    return data


def _hide_password(url: str) -> str:
    """``scheme://user:***@host/...``: a destination URL without its password."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{parts.netloc.rsplit('@', 1)[1]}"))
