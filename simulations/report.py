r"""One report of every claim: the Appendix B statements, every simulation's verdicts, the oracle-LM claims.

``python -m simulations.report [--quick]`` runs every experiment (``--quick``: their quick settings),
or reuses a results folder when its ``config.json`` matches what would run now: the same script, the
same ``finitepref`` version, the same git commit (a tree with uncommitted changes carries a hash of
its diff, so an edit forces a rerun) and the same config hash (:func:`simulations._runner.config_hash`).
It then writes, atomically like every script, into ``--out`` (default ``results/report``):

- ``REPORT.md`` and ``index.html``: one row per claim with its verdict (AGREES / DISAGREES /
  INCONCLUSIVE), the evidence numbers and a link to its figure; the HTML embeds the figures;
- ``report.csv`` (the same rows), ``verdicts.csv``, ``summary.json``, ``config.json``, ``figures/``.

Rows: the Appendix B statements of ``bounds/FINDINGS.md`` (its table "Statement | How tested |
Examples | Verdict", parsed; bold **False** or **Slip** is DISAGREES), every script's
``verdicts.csv``, and the oracle-LM claims from ``<results>/oracle_lm[_quick]/verdicts.csv`` when
present (the report does not train the oracle LM; a row says "not run" otherwise).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import finitepref
from simulations import _launch, _runner
from simulations.verdicts import AGREES, DISAGREES, INCONCLUSIVE, Verdict, from_frame, sig

NAME = "report"
SCRIPTS = ("kl_vs_n", "bound_check", "scaling", "finite_vs_net", "coverage_gap", "degeneracy", "asymptotics",
           "coverage_single", "log_class_size")
"""The experiments the report runs or reuses (``benchmark`` measures timings only; ``oracle_lm`` is read, not run)."""
ROOT = Path(__file__).resolve().parent.parent
FINDINGS = ROOT / "bounds" / "FINDINGS.md"


@dataclass(frozen=True)
class Config(_runner.ScriptConfig):
    """Configuration of the claims report. Every field is a command-line flag (``--field-name``).

    scripts: the experiments to run or reuse
    results_dir: where the experiments' results folders live (<results_dir>/<script>[_quick])
    quick_runs: use the experiments' --quick settings (set by --quick)
    rerun: run every experiment even when a matching results folder exists
    """

    scripts: tuple[str, ...] = SCRIPTS
    results_dir: Path = Path("results")
    quick_runs: bool = False
    rerun: bool = False

    NAME = NAME
    AT_LEAST_ONE = ()

    @classmethod
    def quick(cls):
        """``--quick``: every experiment with its quick settings; the report still goes to ``results/report``."""
        return cls(quick_runs=True)

    def check(self) -> None:
        unknown = sorted(set(self.scripts) - set(SCRIPTS))
        if unknown or not self.scripts:
            raise ValueError(f"scripts: unknown {unknown}; choose from {', '.join(SCRIPTS)}")


# ---------------------------------------------------------------------- run or reuse
def folder_of(script: str, cfg: Config) -> Path:
    """The results folder of ``script``: ``<results_dir>/<script>`` or ``<results_dir>/<script>_quick``."""
    return Path(cfg.results_dir) / (f"{script}_quick" if cfg.quick_runs else script)


def expected_config(script: str, cfg: Config):
    """The config the report would run ``script`` with."""
    cls = importlib.import_module(f"simulations.{script}").Config
    base = cls.quick() if cfg.quick_runs else cls()
    return dataclasses.replace(base, out=folder_of(script, cfg))


def matches(folder: Path, script: str, cfg: Config) -> tuple[bool, str]:
    """Whether ``folder`` holds a run of ``script`` that the report may reuse, and why not."""
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False, "no results"
    wanted = {"script": f"simulations.{script}", "config_hash": _runner.config_hash(expected_config(script, cfg)),
              "git_commit": _runner.git_commit(), "finitepref": finitepref.__version__}
    found = {**meta, "finitepref": meta.get("versions", {}).get("finitepref")}
    stale = [k for k, v in wanted.items() if found.get(k) != v]
    if not (folder / "verdicts.csv").is_file():
        stale.append("verdicts.csv")
    return not stale, ("differs in " + ", ".join(stale)) if stale else "matches"


def run_or_reuse(script: str, cfg: Config) -> tuple[Path, str]:
    """Run ``script`` unless a matching results folder exists (or ``rerun``); returns the folder and what happened.

    Under torchrun, rank 0 decides (it holds the results folders) and every rank runs the script with it.
    """
    folder = folder_of(script, cfg)
    ok, why = _launch.on_rank0(matches, folder, script, cfg)
    if ok and not cfg.rerun:
        return folder, "reused"
    if _launch.is_main():
        print(f"report: running simulations.{script}{' --quick' if cfg.quick_runs else ''} ({why})", flush=True)
    argv = (["--quick"] if cfg.quick_runs else []) + ["--out", str(folder)]
    importlib.import_module(f"simulations.{script}").main(argv)
    return folder, "ran"


# ---------------------------------------------------------------------- rows
def appendix_b(path: Path = FINDINGS) -> list[Verdict]:
    """The statements table of ``bounds/FINDINGS.md`` as verdicts (bold False/Slip: DISAGREES; Holds: AGREES)."""
    rows, inside = [], False
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["Statement", "How tested"]:
            inside = True
            continue
        if not inside or not line.startswith("|") or set(line) <= set("|- "):
            if inside and not line.startswith("|"):
                break
            continue
        cells += [""] * (4 - len(cells))
        statement, how, examples, verdict = *cells[:3], "|".join(cells[3:])  # a verdict may hold "|R|"
        text = re.sub(r"\*\*(.+?)\*\*", r"\1", verdict)
        outcome = (DISAGREES if re.search(r"\*\*(False|Slip)\*\*", verdict) else
                   AGREES if re.search(r"Holds|correct|≤|No NaN", verdict) else INCONCLUSIVE)
        rows.append(Verdict(f"Appendix B: {statement}", None, None, None, None, outcome,
                            f"{text}; tested by {how} ({examples})"))
    return rows


def oracle_rows(cfg: Config) -> tuple[list[Verdict], Path | None]:
    """The oracle-LM claims from its ``verdicts.csv``, or one row saying it was not run."""
    folder = Path(cfg.results_dir) / ("oracle_lm_quick" if cfg.quick_runs else "oracle_lm")
    if (folder / "verdicts.csv").is_file():
        frame = pd.read_csv(folder / "verdicts.csv")
        if "reward_model" in frame:  # one claim per reward model: name it in the claim
            frame["claim"] = frame["claim"] + " [reward model: " + frame["reward_model"].astype(str) + "]"
        return from_frame(frame), folder
    return [Verdict("oracle LM (Section 6 / Table 2): the claims of simulations.oracle_lm", None, None, None, None,
                    INCONCLUSIVE, f"not run: no {folder / 'verdicts.csv'}; run python -m simulations.oracle_lm"
                    f"{' --quick' if cfg.quick_runs else ''} (it trains language models; the report does not)")], None


def collect(cfg: Config, ran: dict[str, tuple[Path, str]]) -> tuple[pd.DataFrame, dict[str, Path], dict]:
    """Every claim row (source, claim, verdict, evidence, figure), the figures, what ran and what was reused.

    ``ran`` maps each experiment to its results folder and whether it ran or was reused (:func:`run_or_reuse`).
    """
    rows, figures, provenance = [], {}, {}

    def add(source: str, verdicts: list[Verdict], figure: str | None) -> None:
        for v in verdicts:
            rows.append({"source": source, **dataclasses.asdict(v), "evidence": evidence(v), "figure": figure})

    add("bounds/FINDINGS.md", appendix_b(), None)
    for script in cfg.scripts:
        folder, how = ran[script]
        provenance[script] = {"folder": str(folder), "how": how}
        png = folder / f"{script}.png"
        if png.is_file():
            figures[script] = png
        add(f"simulations.{script}", from_frame(pd.read_csv(folder / "verdicts.csv")),
            f"figures/{script}.png" if png.is_file() else None)
    verdicts, folder = oracle_rows(cfg)
    provenance["oracle_lm"] = {"folder": str(folder) if folder else None, "how": "read" if folder else "not run"}
    if folder is not None and (folder / "oracle_lm.png").is_file():
        figures["oracle_lm"] = folder / "oracle_lm.png"
    add("simulations.oracle_lm", verdicts, "figures/oracle_lm.png" if "oracle_lm" in figures else None)
    return pd.DataFrame(rows), figures, provenance


def evidence(v: Verdict) -> str:
    """The numbers behind a verdict: measured [CI] vs reference; note."""
    parts = []
    if v.measured is not None:
        ci = f" [{sig(v.ci_low)}, {sig(v.ci_high)}]" if v.ci_low is not None and v.ci_high is not None else ""
        parts.append(f"{sig(v.measured)}{ci}")
    if v.reference is not None:
        parts.append(f"vs {v.reference if isinstance(v.reference, str) else sig(v.reference)}")
    return "; ".join(p for p in (" ".join(parts), v.note) if p)


# ---------------------------------------------------------------------- documents
def _md_cell(text) -> str:
    return "" if text is None or (isinstance(text, float) and text != text) else str(text).replace("|", "\\|").replace("\n", " ")


def markdown(table: pd.DataFrame, provenance: dict, cfg: Config) -> str:
    """``REPORT.md``: counts, the claim table, and where each experiment's results came from."""
    counts = table.outcome.value_counts().to_dict()
    lines = ["# Claims of \"Alignment as Distribution Learning\", checked by finitepref", "",
             f"Mode: {'quick' if cfg.quick_runs else 'full'}; finitepref {finitepref.__version__}; git commit "
             f"{_runner.git_commit()}. Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".", "",
             "| # | Source | Claim | Verdict | Evidence | Figure |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(table.itertuples(), 1):
        fig = f"[{Path(r.figure).stem}]({r.figure})" if isinstance(r.figure, str) else ""
        lines.append(f"| {i} | {_md_cell(r.source)} | {_md_cell(r.claim)} | **{r.outcome}** | {_md_cell(r.evidence)} "
                     f"| {fig} |")
    lines += ["", "## Provenance", ""]
    lines += [f"- {k}: {v['how']} ({v['folder']})" for k, v in provenance.items()]
    return "\n".join(lines) + "\n"


_COLOURS = {AGREES: "#d9f2d9", DISAGREES: "#f8d0d0", INCONCLUSIVE: "#fff2c2"}


def page(table: pd.DataFrame, figures: dict[str, Path], provenance: dict, cfg: Config) -> str:
    """``index.html``: the claim table (verdict cells coloured) and every figure embedded (base64 PNG)."""
    rows = []
    for i, r in enumerate(table.itertuples(), 1):
        fig = f'<a href="#{Path(r.figure).stem}">{Path(r.figure).stem}</a>' if isinstance(r.figure, str) else ""
        rows.append(f"<tr><td>{i}</td><td>{html.escape(r.source)}</td><td>{html.escape(r.claim)}</td>"
                    f'<td style="background:{_COLOURS[r.outcome]}"><b>{r.outcome}</b></td>'
                    f"<td>{html.escape(_md_cell(r.evidence))}</td><td>{fig}</td></tr>")
    images = [f'<h2 id="{name}">{name}</h2><img alt="{name}" style="max-width:100%" '
              f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
              for name, path in figures.items()]
    prov = "".join(f"<li>{html.escape(k)}: {v['how']} ({html.escape(str(v['folder']))})</li>" for k, v in provenance.items())
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>finitepref: claims report</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto}td,th{border:1px solid #ccc;padding:4px;"
            "vertical-align:top;font-size:13px}table{border-collapse:collapse}</style></head><body>"
            f"<h1>Claims of \"Alignment as Distribution Learning\", checked by finitepref</h1><p>Mode: "
            f"{'quick' if cfg.quick_runs else 'full'}; finitepref {finitepref.__version__}; git commit "
            f"{html.escape(str(_runner.git_commit()))}</p><table><tr><th>#</th><th>Source</th><th>Claim</th>"
            f"<th>Verdict</th><th>Evidence</th><th>Figure</th></tr>{''.join(rows)}</table><h2>Provenance</h2>"
            f"<ul>{prov}</ul>{''.join(images)}</body></html>\n")


def run(cfg: Config) -> _runner.Outcome:
    """Run or reuse every experiment, collect every claim, then build both documents (figures copied into ``figures/``).

    Under torchrun every rank runs the experiments (each split over the ranks as it would be alone);
    rank 0 reads their results and builds the documents.
    """
    ran = {script: run_or_reuse(script, cfg) for script in cfg.scripts}
    return _launch.on_rank0(documents, cfg, ran)


def documents(cfg: Config, ran: dict[str, tuple[Path, str]]) -> _runner.Outcome:
    """The report's outcome from the experiments' results folders: its table, both documents and the figures."""
    table, figures, provenance = collect(cfg, ran)
    staging = Path(tempfile.mkdtemp(prefix="finitepref-report-figures-"))
    for name, path in figures.items():
        shutil.copyfile(path, staging / f"{name}.png")
    summary = {"counts": table.outcome.value_counts().to_dict(), "rows": len(table), "provenance": provenance}
    files = {"REPORT.md": markdown(table, provenance, cfg), "index.html": page(table, figures, provenance, cfg),
             "figures": staging}
    return _runner.Outcome(table, summary, files=files, data={"table": table})


def verdicts(outcome: _runner.Outcome, cfg: Config) -> list:
    """Every claim row as a verdict (the whole table), then the counts."""
    table = outcome.data["table"]
    rows = from_frame(table.assign(claim="[" + table.source + "] " + table.claim))
    return [*rows, "report: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.summary["counts"].items()))]


main = _runner.entry(Config, __doc__, run=run, plot=None, verdicts=verdicts)


if __name__ == "__main__":
    main()
