"""Pages generated at build time (mkdocs-gen-files), so they cannot drift from the code:

- ``reference/cli.md`` from the typer app (every command, argument and option);
- ``reference/config.md`` from the run config's JSON Schema (``subsetsearch schema``);
- ``index.md`` from the README (one text for the repository's front page and the site's), its
  links to repository files turned into links between the site's pages;
- ``benchmarks/results/``: the committed results files (figures and JSON) the benchmark pages show.
"""

from __future__ import annotations

import json
from pathlib import Path

import mkdocs_gen_files
import typer
from typer.cli import get_docs_for_click

from subsetsearch.cli import app
from subsetsearch.pipeline.config import config_schema

ROOT = Path(__file__).resolve().parents[2]


def cli_page() -> str:
    command = typer.main.get_command(app)
    body = get_docs_for_click(obj=command, ctx=typer.Context(command), name="subsetsearch")
    intro = (
        "Generated from the command-line app (`subsetsearch.cli`). Every command prints the same with "
        "`--help`. Bad input ends with one line on stderr and exit code 2; a command whose extra is "
        "not installed, with one line naming the `pip install` that fixes it and exit code 1.\n\n"
    )
    rest = body.partition("\n\n")[2]  # after typer's own title
    return f"# Command line\n\n{intro}{rest.replace('# `subsetsearch', '## `subsetsearch', 1)}"


#: README link targets (repository paths) -> the site's pages.
README_LINKS = {
    "](docs/schemas/run-config.schema.json)": "](reference/config.md)",
    "](docs/": "](",
    "](CHANGELOG.md)": "](changelog.md)",
    "](benchmarks/paper_studies.md)": "](benchmarks/paper-studies.md)",
}


def home_page() -> str:
    text = (ROOT / "README.md").read_text()
    for old, new in README_LINKS.items():
        text = text.replace(old, new)
    return text


def _type_of(node: dict, definitions: dict) -> str:
    if "$ref" in node:
        return "section"
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "anyOf" in node or "oneOf" in node:
        return " or ".join(_type_of(part, definitions) for part in node.get("anyOf", node.get("oneOf", [])))
    kind = node.get("type", "any")
    if kind == "array":
        items = node.get("items") or node.get("prefixItems")
        if isinstance(items, list):
            return f"[{', '.join(_type_of(item, definitions) for item in items)}]"
        return f"list of {_type_of(items or {}, definitions)}"
    if kind == "string" and node.get("format") == "path":
        return "path"
    return kind


def _bounds(node: dict) -> str:
    signs = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<", "multipleOf": "× of"}
    for part in [node, *node.get("anyOf", [])]:
        found = [f"{sign} {part[key]}" for key, sign in signs.items() if key in part]
        if found:
            return ", ".join(found)
    return ""


def _cell(text: str) -> str:
    """Text for one Markdown table cell: one line, no column bars, no HTML tags."""
    return text.replace("\n", " ").replace("|", "\\|").replace("<", "&lt;")


def _section_rows(model: dict, definitions: dict, prefix: str, rows: list[str], seen: set) -> None:
    for key, node in model.get("properties", {}).items():
        path = f"{prefix}{key}"
        target = node.get("$ref") or next((p["$ref"] for p in node.get("anyOf", []) if "$ref" in p), None)
        if target is not None and target not in seen:
            sub = definitions[target.rpartition("/")[2]]
            rows.append(f"| `{path}` | section | | | {_cell(sub.get('description', ''))} |")
            _section_rows(sub, definitions, f"{path}.", rows, seen | {target})
            continue
        if "discriminator" in node or "oneOf" in node:
            kinds = [definitions[part["$ref"].rpartition("/")[2]] for part in node.get("oneOf", [])]
            rows.append(f"| `{path}` | one of the sections below, by `kind` | | | |")
            for kind_model in kinds:
                kind = kind_model["properties"]["kind"].get("const", kind_model["properties"]["kind"].get("default"))
                about = _cell(kind_model.get("description", ""))
                rows.append(f"| `{path}` (kind `{kind}`) | section | | | {about} |")
                _section_rows(kind_model, definitions, f"{path}.", rows, seen)
            continue
        default = f"`{json.dumps(node['default'])}`" if "default" in node else "required"
        description = _cell(node.get("description", ""))
        rows.append(f"| `{path}` | {_type_of(node, definitions)} | {default} | {_bounds(node)} | {description} |")


def config_page() -> str:
    schema = config_schema()
    definitions = schema.get("$defs", {})
    rows: list[str] = []
    _section_rows(schema, definitions, "", rows, set())
    table = "\n".join(["| key | type | default | range | what |", "|---|---|---|---|---|", *rows])
    return f"""# Config schema

Every key of a `subsetsearch run` config, generated from its pydantic models (the same schema
`subsetsearch schema` prints). Every key is optional; [Run a search](../guides/run.md) explains
them by topic.

## In your editor

The JSON Schemas are committed in `docs/schemas/` and served with this site:
[run-config.schema.json](../schemas/run-config.schema.json) and
[study-config.schema.json](../schemas/study-config.schema.json). Editors that use the YAML
language server (VS Code's YAML extension, Neovim, JetBrains IDEs) validate a config and complete
its keys when its first line names the schema, as every config in `configs/` does:

```yaml
# yaml-language-server: $schema=../docs/schemas/run-config.schema.json
```

Or print them: `subsetsearch schema > run-config.schema.json`, and
`subsetsearch schema --study` for study configs (whose `base` and each cell are run configs).

The schema checks each key's type, range and choices. Checks across keys (the ensemble's epochs
within `train.epochs`, budgets that grow, a patience schedule that needs a validation set) run
when the config is loaded, before anything is written, each with one line naming the key.

## Keys

{table}
"""


with mkdocs_gen_files.open("index.md", "w") as page:
    page.write(home_page())
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())
with mkdocs_gen_files.open("reference/config.md", "w") as page:
    page.write(config_page())
RESULTS = ROOT / "benchmarks" / "results"
for path in sorted(RESULTS.rglob("*")):
    if path.suffix in (".png", ".json"):
        with mkdocs_gen_files.open(f"benchmarks/results/{path.relative_to(RESULTS)}", "wb") as copy:
            copy.write(path.read_bytes())
