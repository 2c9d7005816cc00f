"""The project's HTML pages as Jinja2 templates sharing ``base.html``.

Every value is escaped, so run ids, reasons, file names and
URL prefixes from S3 or the request cannot inject markup; a name missing from a page's
context fails the render instead of leaving a silent blank. The templates are loaded through
the package, so they are found in the ``--py-files`` zip the Spark jobs import as well as in a
checkout.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


def metric(value: float | None) -> str:
    """A metric to four decimals; a dash where it is undefined (e.g. ROC AUC of one class)."""
    return "–" if value is None else f"{value:.4f}"


@cache
def environment() -> Environment:
    # HTML is escaped; Markdown (the model card) is text for people and tools, written as recorded
    env = Environment(loader=PackageLoader("numtaflow", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["metric"] = metric
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)
