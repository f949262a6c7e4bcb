"""The template catalogue: one YAML file per support workflow, loaded and validated together."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from plans.models import Template, canonical_json
from plans.validator import Problem, validate_template
from tools.registry import ToolRegistry
from tools.safe_parse import load_yaml, read_text_file, yaml_error_text

PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"


class CatalogueError(ValueError):
    """One or more templates are broken; `problems` says where and how."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class UnknownTemplateError(KeyError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(name)
        self.message = f"unknown template {name!r} (known: {', '.join(sorted(known))})"

    def __str__(self) -> str:
        return self.message


def load_template_file(path: Path) -> Template:
    """Parse one template file; errors name the file and the field."""
    source = str(path)
    try:
        data = load_yaml(read_text_file(path))
    except UnicodeDecodeError:
        raise CatalogueError([Problem(source, None, "not UTF-8 text")]) from None
    except OSError as exc:
        raise CatalogueError([Problem(source, None, f"cannot read ({exc.strerror})")]) from None
    except yaml.YAMLError as exc:
        raise CatalogueError([Problem(source, None, f"invalid YAML ({yaml_error_text(exc)})")]) from None
    if not isinstance(data, dict):
        raise CatalogueError([Problem(source, None, "a template must be a YAML mapping")])
    try:
        template = Template.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(
            [_schema_problem(source, data, error) for error in exc.errors()]
        ) from None
    template._source = source
    return template


def _schema_problem(source: str, data: dict, error: dict) -> Problem:
    location = list(error["loc"])
    step = None
    if len(location) >= 2 and location[0] == "steps" and isinstance(location[1], int):
        steps = data.get("steps") or []
        if location[1] < len(steps) and isinstance(steps[location[1]], dict):
            step = steps[location[1]].get("id") or f"#{location[1] + 1}"
        location = location[2:]
    field = ".".join(str(part) for part in location) or "template"
    return Problem(source, step, f"{field}: {error['msg']}")


def template_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


class Catalogue:
    """Validated templates by name, with a version hash over all of them."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self.templates = {template.name: template for template in templates}
        digest = hashlib.sha256(
            canonical_json([self.templates[name].model_dump(mode="json") for name in sorted(self.templates)]).encode()
        )
        self.version = digest.hexdigest()[:16]

    def get(self, name: str) -> Template:
        try:
            return self.templates[name]
        except KeyError:
            raise UnknownTemplateError(name, self.templates) from None

    def names(self) -> list[str]:
        return sorted(self.templates)

    def routable(self) -> list[Template]:
        return [self.templates[name] for name in self.names() if self.templates[name].routable]


def check_files(paths: Iterable[Path], registry: ToolRegistry) -> tuple[list[Template], list[Problem]]:
    """Load and validate template files; a later file with the same name overrides an earlier one."""
    templates: dict[str, Template] = {}
    problems: list[Problem] = []
    for path in template_files(paths):
        try:
            template = load_template_file(path)
        except CatalogueError as exc:
            problems.extend(exc.problems)
            continue
        found = validate_template(template, registry)
        problems.extend(found)
        if not found:
            templates[template.name] = template
    return list(templates.values()), problems


def load_catalogue(extra_paths: Iterable[Path], registry: ToolRegistry) -> Catalogue:
    """The packaged templates plus extra folders; any problem stops the load."""
    templates, problems = check_files([PACKAGED_TEMPLATES, *extra_paths], registry)
    if problems:
        raise CatalogueError(problems)
    return Catalogue(templates)
