"""The router's example bank: labelled utterances, embedded once and cached on disk.

Examples come from the templates' own `examples` and from labelled datasets named in config
(for instance Bitext's `train.csv`, whose intents a mapping file sends to templates). Each
example keeps its fine label (the dataset intent) and its template, so a bank can drop one
intent for a leave-intents-out check without touching the rest.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog
import yaml
from pydantic import BaseModel, ValidationError

from agent.settings import REPO_ROOT, ExampleSetSettings
from plans.catalogue import Catalogue
from plans.models import canonical_json
from tools.embeddings import Embedder
from tools.safe_parse import load_yaml, read_text_file, yaml_error_text

log = structlog.get_logger(__name__)

EVALDATA_ENV = "CASEPLAN_EVALDATA_DIR"


class BankError(ValueError):
    """An example set or mapping file that cannot be used; the message names the file."""


class IntentMapping(BaseModel):
    """Dataset intent -> template; `always_escalate` intents escalate whatever the bank says."""

    intents: dict[str, str]
    always_escalate: list[str] = []
    dataset: str = ""


class Example(BaseModel):
    text: str
    label: str      # the dataset intent, or the template name for a template's own examples
    template: str


def evaldata_dir() -> Path:
    """The shared evaluation data: $CASEPLAN_EVALDATA_DIR, else `../shared/evaldata` beside the repo."""
    configured = os.environ.get(EVALDATA_ENV)
    return Path(configured).expanduser() if configured else REPO_ROOT.parent / "shared" / "evaldata"


def resolve(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def load_mapping(path: Path) -> IntentMapping:
    try:
        data = load_yaml(read_text_file(path))
        return IntentMapping.model_validate(data)
    except OSError as exc:
        raise BankError(f"{path}: cannot read intent mapping ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise BankError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise BankError(f"{path}: invalid intent mapping ({yaml_error_text(exc)})") from None
    except ValidationError as exc:
        raise BankError(f"{path}: invalid intent mapping ({exc})") from exc


def read_labelled_csv(path: Path, text_column: str = "utterance", label_column: str = "intent") -> list[tuple[str, str]]:
    """(text, label) rows of a CSV file; a missing column is a clear error."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or text_column not in reader.fieldnames or label_column not in reader.fieldnames:
                raise BankError(f"{path}: needs columns {text_column!r} and {label_column!r}")
            return [(row[text_column], row[label_column]) for row in reader if row[text_column].strip()]
    except OSError as exc:
        raise BankError(f"{path}: cannot read examples ({exc.strerror})") from exc


def dataset_examples(spec: ExampleSetSettings, known_templates: Sequence[str]) -> tuple[list[Example], IntentMapping]:
    """Examples of one configured dataset, labelled with their template through the mapping file."""
    mapping = load_mapping(resolve(spec.mapping, REPO_ROOT))
    rows = read_labelled_csv(resolve(spec.path, evaldata_dir()))
    unknown = sorted({t for t in mapping.intents.values() if t not in known_templates})
    if unknown:
        raise BankError(f"{spec.mapping}: maps intents to unknown templates {unknown}")
    unmapped = sorted({label for _, label in rows if label not in mapping.intents})
    if unmapped:
        raise BankError(f"{spec.mapping}: intents {unmapped} of {spec.path} have no template (map them to escalate)")
    return [Example(text=text, label=label, template=mapping.intents[label]) for text, label in rows], mapping


def catalogue_examples(catalogue: Catalogue) -> list[Example]:
    return [Example(text=text, label=t.name, template=t.name) for t in catalogue.routable() for text in t.examples]


class ExampleBank:
    """Unit vectors of every example, cached under `cache_dir` by a hash of model + examples."""

    def __init__(
        self, examples: Sequence[Example], embedder: Embedder, cache_dir: Path | None, person_labels: set[str] | None = None
    ) -> None:
        self.examples = list(examples)
        self.person_labels = person_labels or set()  # labels whose customers asked for a person
        self.labels = np.array([e.label for e in self.examples])
        self.templates = np.array([e.template for e in self.examples])
        texts = [e.text for e in self.examples]
        self.digest = hashlib.sha256(
            canonical_json([embedder.model_id, texts, self.labels.tolist(), self.templates.tolist()]).encode()
        ).hexdigest()[:16]
        cache = cache_dir / f"examples-{self.digest}.npy" if cache_dir else None
        if cache is not None and cache.exists():
            self.vectors = np.load(cache)
        else:
            self.vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), dtype=np.float32)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, self.vectors)
        log.info("example bank ready", examples=len(texts), digest=self.digest, cached=cache is not None)

    def without(self, labels: set[str]) -> ExampleBank:
        """The same bank minus every example of `labels` (leave-intents-out), without re-embedding."""
        keep = ~np.isin(self.labels, list(labels))
        clone = object.__new__(ExampleBank)
        clone.person_labels = self.person_labels
        clone.examples = [e for e, k in zip(self.examples, keep, strict=True) if k]
        clone.labels, clone.templates, clone.vectors = self.labels[keep], self.templates[keep], self.vectors[keep]
        clone.digest = f"{self.digest}-minus-{hashlib.sha256(canonical_json(sorted(labels)).encode()).hexdigest()[:8]}"
        return clone


def build_bank(catalogue: Catalogue, embedder: Embedder, sets: Sequence[ExampleSetSettings], cache_dir: Path | None) -> ExampleBank:
    """Template examples plus every configured dataset; a dataset that is not there is skipped with a warning."""
    examples = catalogue_examples(catalogue)
    person_labels: set[str] = set()
    for spec in sets:
        if not resolve(spec.path, evaldata_dir()).exists() and spec.optional:
            log.warning("example set not found, skipped", path=spec.path, evaldata=str(evaldata_dir()))
            continue
        found, mapping = dataset_examples(spec, catalogue.names())
        examples.extend(found)
        person_labels.update(mapping.always_escalate)
    return ExampleBank(examples, embedder, cache_dir, person_labels)
