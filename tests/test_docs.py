"""The docs: the site builds strictly, a broken link fails it in one line, and docs state what the code does."""

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import REPO_DIR

import rq_gevent
from rq_gevent.integrations import metrics

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the docs' text and mkdocs.
pytestmark = pytest.mark.once

DOCS = REPO_DIR / "docs"


def build(project: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(project),
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )


def test_the_site_builds_strictly_and_a_broken_link_is_one_clear_line(tmp_path):
    built = build(REPO_DIR, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    # The same docs with one broken page link and one broken anchor: the build fails, naming both.
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(REPO_DIR / "mkdocs.yml", copy)
    shutil.copytree(DOCS, copy / "docs")
    (copy / "scripts").mkdir()
    shutil.copy(REPO_DIR / "scripts" / "docs_hooks.py", copy / "scripts")
    with open(copy / "docs" / "limits.md", "a") as page:
        page.write("\nSee [nowhere](no-such-page.md) and [here](cli.md#no-such-anchor).\n")
    broken = build(copy, tmp_path / "broken-site")
    assert broken.returncode != 0
    warnings = [line for line in broken.stderr.splitlines() if line.startswith("WARNING")]
    assert any("'limits.md'" in line and "'no-such-page.md'" in line for line in warnings), broken.stderr
    assert any("'cli.md#no-such-anchor'" in line for line in warnings), broken.stderr


def test_the_cli_reference_lists_every_option_of_the_command(tmp_path):
    built = build(REPO_DIR, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    page = (tmp_path / "site" / "cli" / "index.html").read_text()
    from rq_gevent.cli import worker

    options = [name for param in worker.params if isinstance(param, click.Option) for name in param.opts]
    assert len(options) > 40
    missing = [name for name in options if name not in page]
    assert not missing, missing
    assert "Sentinel" not in page  # click 8.2+'s UNSET default, which mkdocs-click's table style prints


def test_docs_list_the_mysql_errors_the_database_backend_retries():
    from jobs.discuz.mysql_errors import TRANSIENT_ERRORS

    text = (DOCS / "jobs.md").read_text()
    listed = re.search(r"MySQL ([\d, ]+) or a PHP timeout are retried", text)
    assert listed, "docs/jobs.md no longer lists the retried MySQL errors"
    assert {int(code) for code in listed.group(1).split(",")} == TRANSIENT_ERRORS


def test_docs_list_every_metric_the_worker_exports():
    source = Path(metrics.__file__).read_text()
    defined = set(re.findall(r'"(rq_gevent_[a-z_]+)"', source))
    documented = set(re.findall(r"`(rq_gevent_[a-z_]+?)(?:_total)?`", (DOCS / "metrics.md").read_text()))
    counters = set(re.findall(r'Counter\(\s*"(rq_gevent_[a-z_]+)"', source))
    assert defined and counters <= defined
    assert defined == documented, defined ^ documented


def test_readme_is_short_and_gives_the_two_commands():
    readme = (REPO_DIR / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    assert ".venv/bin/python scripts/demo.py" in readme
    assert "python3 -m pip install nox && python3 -m nox" in readme
    assert "python3 -m pip install nox && python3 -m nox" in (REPO_DIR / ".ci" / "run").read_text()
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO_DIR / link).exists(), link


def test_the_grafana_dashboard_queries_only_metrics_the_worker_exports():
    import json

    dashboard = json.loads((DOCS / "grafana" / "rq-gevent-dashboard.json").read_text())
    source = Path(metrics.__file__).read_text()
    families = set(re.findall(r'"(rq_gevent_[a-z_]+)"', source))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"rq_gevent_[a-z_]+", expr)}
    suffixes = ("_total", "_bucket", "_sum", "_count")
    unknown = {name for name in used if name not in families and not name.endswith(suffixes)}
    unknown |= {name for name in used if name.endswith(suffixes) and name.rsplit("_", 1)[0] not in families}
    assert used and not unknown, unknown
    assert families <= {name.rsplit("_", 1)[0] if name.endswith(suffixes) else name for name in used}


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``rq-gevent worker ...`` command line in the README's and the docs' code blocks (shell
    lines, with their ``\\`` continuations), and the Dockerfile's and Kubernetes' argument lists."""
    import json
    import shlex

    found = []
    for page in [REPO_DIR / "README.md", *sorted(DOCS.glob("*.md"))]:
        blocks = re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), flags=re.S)
        for block in blocks:
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                if "rq-gevent worker " in line:
                    words = shlex.split(line.split("rq-gevent worker ", 1)[1], comments=True)
                    found.append((page.name, words))
            for listed in re.findall(r'(?:CMD|args:) (\[".*?\])', text):
                found.append((page.name, json.loads(listed)))
    for shipped in (REPO_DIR / "scripts" / "rq-gevent.service", REPO_DIR / "scripts" / "supervisord.conf"):
        # systemd continues a line after "\", supervisord on an indented line.
        text = re.sub(r"\n[ \t]+", " ", shipped.read_text().replace("\\\n", " "))
        for line in text.splitlines():
            if "rq-gevent worker " in line and not line.lstrip().startswith(("#", ";")):
                found.append((shipped.name, shlex.split(line.split("rq-gevent worker ", 1)[1])))
    return found


def test_every_documented_command_line_parses_with_the_real_command():
    from rq_gevent.cli import worker

    commands = documented_commands()
    assert len(commands) >= 8, commands
    for page, args in commands:
        try:
            worker.make_context("worker", list(args))
        except click.ClickException as error:
            raise AssertionError(f"{page}: rq-gevent worker {' '.join(args)}: {error.format_message()}") from None


def test_systemd_lines_in_the_docs_carry_no_inline_comments():
    """systemd reads ``Key=value  # note`` as part of the value."""
    text = (DOCS / "deployment.md").read_text()
    ini = "".join(re.findall(r"```ini\n(.*?)```", text, flags=re.S))
    assert "ExecStart=" in ini
    assert not [line for line in ini.splitlines() if "=" in line and "#" in line.split("=", 1)[1]]


def test_kubernetes_grace_period_outlasts_the_graceful_timeout():
    import yaml

    text = (DOCS / "deployment.md").read_text()
    (manifest,) = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)]
    pod = manifest["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    graceful = float(args[args.index("--graceful-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > graceful


def test_contributing_lists_every_module_that_runs_once():
    """docs/contributing.md's table of tests that run once names exactly the modules marked once."""
    marked = sorted(
        path.name
        for path in (REPO_DIR / "tests").glob("test_*.py")
        if re.search(r"^pytestmark = pytest\.mark\.once$", path.read_text(), re.MULTILINE)
    )
    assert "test_docs.py" in marked  # this module is marked: the scan finds what it should
    text = (DOCS / "contributing.md").read_text()
    table = text.split("**Tests that run once.**", 1)[1].split("\n\n**", 1)[0]
    listed = sorted(set(re.findall(r"^\| `(test_\w+\.py)`", table, re.MULTILINE)))
    assert listed == marked


def modules_in_the_table(page: str) -> set[str]:
    """The ``x.py`` names in the first column of the "## Modules" table of ``page``."""
    table = page.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`((?:\w+/)*[\w.]+\.py|(?:\w+/)+)`", row)}


def test_the_architecture_pages_module_table_names_every_module():
    page = (DOCS / "architecture.md").read_text()
    sample = "x\n## Modules\n| `a.py`, `p/b.py`, `p/q/` | x `c.py` |\n## Next\n| `d.py` | |"
    assert modules_in_the_table(sample) == {"a.py", "p/b.py", "p/q/"}
    package = Path(rq_gevent.__file__).parent  # the installed package, in the package session
    modules = {path.relative_to(package).as_posix() for path in package.rglob("*.py")}
    # a subpackage's __init__ is named by its directory ("core/")
    files = {name.removesuffix("__init__.py") if name.endswith("/__init__.py") else name for name in modules}
    listed = modules_in_the_table(page)
    assert {"missing from the table": files - listed, "no such module": listed - files} == {
        "missing from the table": set(),
        "no such module": set(),
    }


# The docs speak to users about the software, not about how it was made: no "issue 20", "the
# issue's ...", "this session" or "the red team".  A nox session or a test session is the software's.
PROCESS_TALK = re.compile(
    r"\bissues? #?\d+\b|\bthe issue(?:'s)?\b|\b(?:this|our|(?:a|the|one) work(?:ing)?|coding) sessions?\b"
    r"|\bred[- ]team",
    re.IGNORECASE,
)


def test_the_docs_describe_the_software_not_the_work_on_it():
    talk = "after Issue 20's changes, issue #32, the issue's address, in this session, the red team's finding"
    assert len(PROCESS_TALK.findall(talk)) == 5
    legitimate = "each nox session, a test session, the installed wheel's session, rq/rq#2445, a known issue"
    assert not PROCESS_TALK.findall(legitimate)
    found = [
        f"{page.relative_to(REPO_DIR)}:{number}: {line.strip()}"
        for page in [REPO_DIR / "README.md", *sorted(DOCS.glob("*.md"))]
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if PROCESS_TALK.search(line)
    ]
    assert not found, "\n".join(found)


# The widths readers' windows have: a laptop's, and a tablet's upright or a narrow window.
WINDOWS = [(1280, 800), (768, 1024)]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Headless Chromium, installed by apt when missing (as the suite installs its servers)."""
    from peers.system_packages import ensure_command

    return ensure_command("/usr/bin/chromium", ["chromium"])


def layout_of_the_site(chromium: str, site: Path, oneline_pages: list[str]) -> list[dict]:
    """What does not fit on each page of the built ``site`` in each of WINDOWS, as measured by
    tests/docs_layout.js in a real browser: one page shows every docs page in a frame of each size,
    and measures them all once they have loaded."""
    import json

    pages = sorted(path.relative_to(site).as_posix() for path in site.glob("**/index.html"))
    frames = "".join(
        f'<iframe src="{page}" data-page="{page}" data-window="{width}x{height}"'
        f' style="border: 0; width: {width}px; height: {height}px"></iframe>'
        for width, height in WINDOWS
        for page in pages
    )
    script = (REPO_DIR / "tests" / "docs_layout.js").read_text()
    measure = f"report.textContent = JSON.stringify(measureFrames({json.dumps(oneline_pages)}))"
    (site / "layout.html").write_text(
        f'<!doctype html><html><body><pre id="report">not measured</pre>{frames}<script>{script}\n'
        f'addEventListener("load", () => {{ {measure}; }});</script></body></html>'
    )
    # No network: the theme's web fonts are asked of Google, which a test must not wait for (each
    # frame would wait out a DNS timeout); the pages fall back to the machine's fonts.
    browser = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--allow-file-access-from-files", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--dump-dom", (site / "layout.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = re.search(r'<pre id="report">(.*?)</pre>', browser.stdout, flags=re.S)
    assert report and report.group(1).startswith("["), (browser.stdout[-2000:], browser.stderr[-2000:])
    return json.loads(html.unescape(report.group(1)))


def test_tables_and_code_blocks_fit_the_window_in_a_real_browser(chromium, tmp_path):
    """In Chromium, at a laptop's and a narrow window's width: no page scrolls sideways, no table or
    code block hides a part of itself, no word in a table is broken over two lines, each command of
    the home page's code blocks is on one line, and a code block's copy button copies its text."""
    site = tmp_path / "site"
    built = build(REPO_DIR, site)
    assert built.returncode == 0, built.stderr
    results = layout_of_the_site(chromium, site, oneline_pages=["index.html"])
    assert len(results) == len(WINDOWS) * len(list(site.glob("**/index.html")))
    performance = [result for result in results if result["page"] == "performance/index.html"]
    assert all(result["tables"] >= 8 and result["words"] > 1000 for result in performance), performance
    assert sum(result["blocks"] for result in results) >= len(WINDOWS) * 20
    problems = [
        f"{result['window']} {result['page']}: {problem}"
        for result in results
        for problem in result["overflow"] + [f"broken word {word}" for word in result["broken"]]
        + [f"wrapped line in {code}" for code in result["wrapped"]]
        + [f"the copy button copies other text than {code} shows" for code in result["copied"]]
    ]  # fmt: skip
    assert not problems, "\n".join(problems)
