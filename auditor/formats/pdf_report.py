"""report.pdf: the human report (reportlab), for a compliance officer or a regulator.

Cover with the gate verdict, policy, date and signer; an executive summary; the control coverage matrix
(framework -> control -> checks -> status); one section per check with its thresholds, measurements,
findings (first rows, with counts) and a chart where one helps; the subjects with their sha256; the
environment. Every table has fixed column widths and wrapping cells, so nothing runs off the page.

The PDF is rendered unsigned here; the signing step (``auditor.signing``) adds the PAdES signature. The
signer shown on the cover comes from ``report.run["signer"]``, set before rendering when a key is given.
"""

from __future__ import annotations

import io
from typing import Any, Iterable, Mapping
from xml.sax.saxutils import escape

from auditor.coverage import ATTESTATION
from auditor.formats._common import check_info, headline, sample_note
from auditor.report import CheckResult, Report

STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "error": "#8250df", "skipped": "#6e7781",
                  "waived": "#bc4c00"}
FRAMEWORK_NAMES = {
    "nist-ai-rmf": "NIST AI RMF 1.0",
    "iso-42001": "ISO/IEC 42001:2023 Annex A",
    "eu-ai-act": "EU AI Act (Regulation (EU) 2024/1689)",
    "mitre-atlas": "MITRE ATLAS",
    "nist-aml": "NIST AI 100-2 (adversarial machine learning)",
}
MAX_FINDINGS = 25
MAX_ROWS_SHOWN = 12
MAX_METRIC_ROWS = 40
MAX_CHART_BARS = 25
MAX_DRIFT_ROWS = 15  # non-drifted features listed after every drifted one


# ----------------------------------------------------------------------------- text helpers


def _esc(value: Any) -> str:
    return escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "(none)"
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            shown = ", ".join(_fmt(v) for v in value[:MAX_ROWS_SHOWN])
            more = len(value) - MAX_ROWS_SHOWN
            return shown + (f" ... (+{more} more)" if more > 0 else "")
        return f"[{len(value)} items: see report.json]"
    if isinstance(value, Mapping):
        return f"{{{len(value)} entries: see report.json}}"
    return str(value)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if not value:
                out.append((name, "(none)"))
                continue
            if len(value) > MAX_METRIC_ROWS:
                out.append((name, value))
            else:
                out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _rows_text(rows: Iterable[int] | None) -> str:
    rows = list(rows or ())
    if not rows:
        return "-"
    shown = ", ".join(str(r) for r in rows[:MAX_ROWS_SHOWN])
    more = len(rows) - MAX_ROWS_SHOWN
    return shown + (f" ... (+{more} more)" if more > 0 else "")


def _nice_ticks(vmax: float, n: int = 4) -> list[float]:
    """Round tick values from 0 covering ``vmax`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    import math

    if not vmax or vmax <= 0 or not math.isfinite(vmax):
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    raw = vmax / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    count = max(1, math.ceil(vmax / step - 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def _tick_label(v: float, ticks: list[float]) -> str:
    import math

    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    exponent = math.floor(math.log10(step))
    mantissa = round(step / 10**exponent, 6)
    decimals = max(0, -exponent + (1 if mantissa == 2.5 else 0))
    return f"{v:.{decimals}f}"


# ----------------------------------------------------------------------------- the document


class _Builder:
    def __init__(self, report: Report):
        from reportlab.lib import colors
        from reportlab.lib.enums import TA_CENTER
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
        from reportlab.lib.units import mm

        self.report = report
        self.colors = colors
        self.mm = mm
        self.page_size = A4
        self.margin = 18 * mm
        self.width = A4[0] - 2 * self.margin
        ss = getSampleStyleSheet()
        base = ParagraphStyle("base", parent=ss["Normal"], fontName="Helvetica", fontSize=9, leading=11.5)
        self.s = {
            "body": base,
            "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.2),
            "cell": ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9.2),
            "cellb": ParagraphStyle("cellb", parent=base, fontName="Helvetica-Bold", fontSize=7.5, leading=9.2),
            "mono": ParagraphStyle("mono", parent=base, fontName="Courier", fontSize=7, leading=8.6),
            "h1": ParagraphStyle("h1", parent=ss["Heading1"], fontName="Helvetica-Bold", fontSize=15, leading=19,
                                 spaceBefore=4, spaceAfter=8),
            "h2": ParagraphStyle("h2", parent=ss["Heading2"], fontName="Helvetica-Bold", fontSize=11.5, leading=14,
                                 spaceBefore=10, spaceAfter=4),
            "h3": ParagraphStyle("h3", parent=ss["Heading3"], fontName="Helvetica-Bold", fontSize=9.5, leading=12,
                                 spaceBefore=6, spaceAfter=3),
            "title": ParagraphStyle("title", parent=base, fontName="Helvetica-Bold", fontSize=24, leading=29,
                                    alignment=TA_CENTER, spaceAfter=6),
            "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=11, leading=14, alignment=TA_CENTER,
                                       textColor=colors.HexColor("#57606a")),
            "verdict": ParagraphStyle("verdict", parent=base, fontName="Helvetica-Bold", fontSize=30, leading=36,
                                      alignment=TA_CENTER, textColor=colors.white),
            "verdict_sub": ParagraphStyle("verdict_sub", parent=base, fontSize=10, leading=13, alignment=TA_CENTER,
                                          textColor=colors.white),
        }
        signer = report.run.get("signer") if isinstance(report.run, Mapping) else None
        self.signer = signer if isinstance(signer, Mapping) else None

    # -- primitives

    def p(self, text: str, style: str = "body"):
        from reportlab.platypus import Paragraph

        return Paragraph(text, self.s[style])

    def cell(self, value: Any, style: str = "cell"):
        return self.p(_esc(value), style)

    def status(self, status: str, style: str = "cellb"):
        colour = STATUS_COLOURS.get(status, "#000000")
        return self.p(f'<font color="{colour}">{_esc(status.upper())}</font>', style)

    def table(self, rows: list[list[Any]], widths: list[float], header: bool = True, zebra: bool = True, style=()):
        """A table whose cells wrap (Paragraphs) within fixed column widths that sum to the frame width."""
        from reportlab.platypus import Table, TableStyle

        total = sum(widths)
        widths = [w * self.width / total for w in widths]
        cells = [[c if not isinstance(c, (str, int, float)) and c is not None else self.cell(_fmt(c)) for c in row]
                 for row in rows]
        t = Table(cells, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT", spaceAfter=5)
        cmds = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("GRID", (0, 0), (-1, -1), 0.25, self.colors.HexColor("#d0d7de")),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]
        if header:
            cmds.append(("BACKGROUND", (0, 0), (-1, 0), self.colors.HexColor("#eaeef2")))
        if zebra:
            for i in range(1 if header else 0, len(rows)):
                if i % 2 == 0:
                    cmds.append(("BACKGROUND", (0, i), (-1, i), self.colors.HexColor("#f6f8fa")))
        t.setStyle(TableStyle(cmds + list(style)))
        return t

    def header_row(self, *names: str) -> list:
        return [self.p(f"<b>{_esc(n)}</b>", "cell") for n in names]

    # -- sections

    def cover(self) -> list:
        from reportlab.platypus import PageBreak, Spacer, Table, TableStyle

        r, mm = self.report, self.mm
        s = r.summary
        passed = s.gate == "pass"
        story: list = [Spacer(1, 18 * mm), self.p("AI Governance Audit Report", "title"),
                       self.p(f"Pre-deployment gate under policy {_esc(r.policy.get('name'))} "
                              f"v{_esc(r.policy.get('version'))}", "subtitle"),
                       Spacer(1, 12 * mm)]
        verdict_colour = self.colors.HexColor("#1a7f37" if passed else "#cf222e")
        sub = f"gate {'passed' if passed else 'failed'}: fail on {_esc(s.fail_on)} severity and above"
        box = Table([[self.p(f"GATE: {'PASS' if passed else 'FAIL'}", "verdict")], [self.p(sub, "verdict_sub")]],
                    colWidths=[self.width * 0.7], hAlign="CENTER")
        box.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, -1), verdict_colour),
            ("TOPPADDING", (0, 0), (-1, 0), 12), ("BOTTOMPADDING", (0, -1), (-1, -1), 12),
        ]))
        story += [box, Spacer(1, 6 * mm)]
        if s.blocking:
            story.append(self.p("<b>Blocking:</b> " + "; ".join(_esc(b) for b in s.blocking[:10])
                                + (f" (+{len(s.blocking) - 10} more)" if len(s.blocking) > 10 else ""), "body"))
            story.append(Spacer(1, 4 * mm))
        counts = [[self.p(f"<b>{k}</b>", "cell") for k in s.counts],
                  [self.p(f'<font color="{STATUS_COLOURS.get(k, "#000")}"><b>{v}</b></font>', "body")
                   for k, v in s.counts.items()]]
        story += [self.table(counts, [1] * len(s.counts), zebra=False), Spacer(1, 6 * mm)]
        if self.signer:
            sg = self.signer
            signer = (f"{_esc(sg.get('common_name') or sg.get('subject'))} ({_esc(sg.get('algorithm'))}, keyid "
                      f"{_esc(str(sg.get('keyid', ''))[:16])}...){' (self-signed certificate)' if sg.get('self_signed') else ''}")
        else:
            signer = '<font color="#cf222e"><b>UNSIGNED</b></font>: this report carries no signature'
        run = r.run
        facts = [
            ["Policy", f"{_esc(r.policy.get('name'))} version {_esc(r.policy.get('version'))}"],
            ["Policy sha256", f'<font face="Courier">{_esc(r.policy.get("sha256"))}</font>'],
            ["Date", f"{_esc(run.get('finished_at'))} (started {_esc(run.get('started_at'))})"],
            ["Signer", signer],
            ["Run id", _esc(run.get("id"))],
            ["Seed", _esc(run.get("seed"))],
            ["Engine", _esc(run.get("engine", "pandas"))],
            ["Audited", _esc(", ".join(f"{sj.name} ({sj.kind})" for sj in r.subjects if sj.kind != "policy") or "-")],
            ["Auditor", f"{_esc(r.auditor.get('name'))} {_esc(r.auditor.get('version'))}"],
        ]
        story.append(self.table([[self.p(f"<b>{k}</b>", "cell"), self.p(v, "cell")] for k, v in facts], [1, 4],
                                header=False))
        story += [Spacer(1, 8 * mm), self.p(
            "This report was generated by the auditor. When signed, the signature is embedded in this PDF (PAdES) "
            "and report.dsse.json (a DSSE envelope of an in-toto Statement) binds report.json, this PDF and the "
            "audited inputs by sha256. Check both with <font face='Courier'>auditor verify report.json --cert "
            "CERT</font>, or this PDF with any PAdES validator.", "small"), PageBreak()]
        return story

    def executive_summary(self) -> list:
        r, s = self.report, self.report.summary
        counts = ", ".join(f"{v} {k}" for k, v in s.counts.items() if v) or "no checks"
        verdict = "passed" if s.gate == "pass" else "failed"
        text = (f"{len(r.checks)} checks ran under policy <b>{_esc(r.policy.get('name'))}</b> v{_esc(r.policy.get('version'))} "
                f"({counts}). The gate <b>{verdict}</b>: a check that fails at severity <b>{_esc(s.fail_on)}</b> or above, "
                f"or that errors, fails it.")
        if s.blocking:
            text += " Blocking: " + "; ".join(_esc(b) for b in s.blocking) + "."
        if s.waived:
            text += " Waived: " + "; ".join(_esc(w) for w in s.waived) + "."
        story = [self.p("1. Executive summary", "h1"), self.p(text)]
        if r.waivers:
            rows = [self.header_row("Waived check", "Owner", "Expires", "State", "Justification")]
            for w in r.waivers:
                scope = w["check"] + (f" ({w['dataset']})" if w.get("dataset") else "")
                rows.append([self.cell(scope), self.cell(w["owner"]), self.cell(w["expires"]),
                             self.status("waived" if w["state"] == "active" else "fail"), self.cell(w["justification"])])
            story += [self.p("Waivers", "h2"), self.table(rows, [2.2, 1.6, 1.1, 0.9, 3.7])]
        if r.baseline is not None:
            regs = r.baseline.get("regressions") or []
            story.append(self.p("Baseline comparison", "h2"))
            story.append(self.p(f"Compared with the approved report {_esc(r.baseline.get('path'))} "
                                f"(sha256 {_esc(str(r.baseline.get('sha256'))[:16])}...): {len(regs)} regression(s)"
                                f"{'' if r.baseline.get('gate') else ' (reported, not gated)'}."))
            if regs:
                rows = [self.header_row("Regression", "Before", "After")]
                rows += [[self.cell(g.get("metric") or g["check"]), self.cell(_fmt(g["before"])), self.cell(_fmt(g["after"]))]
                         for g in regs]
                story.append(self.table(rows, [5.5, 2, 2]))
        rows = [self.header_row("#", "Check", "Severity", "Status", "What it found")]
        for i, c in enumerate(r.checks, start=1):
            rows.append([self.cell(i), self.p(f"<b>{_esc(c.id)}</b><br/>{_esc(c.title)}", "cell"), self.cell(c.severity),
                         self.status(c.status), self.cell(headline(c) or "-")])
        story += [self.p("Checks", "h2"), self.table(rows, [0.35, 2.6, 0.9, 0.8, 5.0])]
        return story

    def coverage_matrix(self) -> list:
        r = self.report
        story = [self.p("2. Control coverage", "h1"), self.p(
            "Each control of the policy's frameworks, the checks that provide evidence for it and their status "
            "(the worst status among them; <i>waived</i> when an active waiver covers the failure). "
            "<i>Attestation required</i>: no check gives evidence for the control, so a person must attest to it.")]
        if not r.coverage:
            story.append(self.p("The policy maps no check to a control."))
            return story
        ordered = sorted(r.coverage.items(), key=lambda kv: not kv[1].get("primary"))
        for fw, entry in ordered:
            rows = [self.header_row("Control", "Title", "Checks (status)", "Status")]
            for ctl in entry["controls"]:
                check_text = "<br/>".join(
                    f'{_esc(c["id"])} <font color="{STATUS_COLOURS.get(c["status"], "#000")}">({_esc(c["status"])})</font>'
                    for c in ctl["checks"]
                ) or '<font color="#6e7781">-</font>'
                status = ctl["status"]
                if status == ATTESTATION:
                    status_cell = self.p('<font color="#6e7781"><i>attestation required</i></font>', "cell")
                else:
                    status_cell = self.status(status)
                rows.append([self.p(f"<b>{_esc(ctl['id'])}</b>", "cell"), self.cell(ctl["title"] or "-"),
                             self.p(check_text, "cell"), status_cell])
            name = entry.get("name") or FRAMEWORK_NAMES.get(fw, fw)
            if name == fw:
                name = FRAMEWORK_NAMES.get(fw, fw)
            total = len(entry["controls"])
            story += [self.p(f"{_esc(name)} <font size=8 color='#57606a'>({_esc(fw)}: {entry['covered']} of {total} "
                             f"controls with evidence{', primary framework' if entry.get('primary') else ''})</font>",
                             "h2"),
                      self.table(rows, [1.4, 4.2, 3.0, 0.9])]
        return story

    def check_section(self, n: int, c: CheckResult) -> list:
        from reportlab.platypus import CondPageBreak, KeepTogether, Spacer

        info = check_info(c.id, c.title)
        colour = STATUS_COLOURS.get(c.status, "#000")
        story: list = [CondPageBreak(60 * self.mm), self.p(
            f"3.{n} {_esc(c.id)} <font color='{colour}'>[{_esc(c.status.upper())}]</font>", "h2"),
            self.p(f"<b>{_esc(c.title)}</b>. Severity <b>{_esc(c.severity)}</b>, family {_esc(c.family)}, "
                   f"{c.duration_s:.2f} s. {_esc(info.description)}", "body")]
        if c.reason:
            story.append(self.p(f"<b>Reason:</b> {_esc(c.reason)}"))
        if sample_note(c):
            story.append(self.p(f"<b>Sample:</b> {_esc(sample_note(c))}; rows named below are rows of the files."))
        if c.waiver:
            w = c.waiver
            state = "active: this failure does not fail the gate" if w.get("state") == "active" else \
                "EXPIRED: the gate fails"
            story.append(self.p(
                f"<font color='{STATUS_COLOURS['waived']}'><b>Waiver ({_esc(state)}).</b></font> Owner "
                f"<b>{_esc(w.get('owner'))}</b>, expires {_esc(w.get('expires'))}"
                f"{', dataset ' + _esc(w['dataset']) if w.get('dataset') else ''}: {_esc(w.get('justification'))}"))
        metrics = c.to_dict()["metrics"]
        chart = None
        skip_keys: set[str] = set()
        if c.id == "data.drift" and isinstance(metrics.get("per_feature"), Mapping):
            chart = self.drift_chart(metrics)
            skip_keys.add("per_feature")
        elif c.id == "data.class_balance":
            chart = self.class_chart(metrics)
        elif c.id == "fairness.model" and isinstance(metrics.get("attributes"), Mapping):
            chart = self.fairness_charts(metrics)
            skip_keys.add("attributes")
        thresholds = [(k, v) for k, v in metrics.items() if k in info.params]
        measured = [(k, v) for k, v in metrics.items() if k not in info.params and k not in skip_keys]
        if thresholds:
            rows = [self.header_row("Threshold / parameter", "Value")]
            rows += [[self.cell(k), self.cell(_fmt(v))] for k, v in _flatten(dict(thresholds))]
            story += [self.p("Thresholds", "h3"), self.table(rows, [2, 5])]
        if measured:
            flat = _flatten(dict(measured))
            rows = [self.header_row("Measurement", "Value")]
            rows += [[self.cell(k), self.cell(_fmt(v))] for k, v in flat[:MAX_METRIC_ROWS]]
            if len(flat) > MAX_METRIC_ROWS:
                rows.append([self.cell(f"... {len(flat) - MAX_METRIC_ROWS} more"), self.cell("see report.json")])
            story += [self.p("Measurements", "h3"), self.table(rows, [2, 5])]
        if chart is not None:
            story += [Spacer(1, 2 * self.mm), KeepTogether(chart)]
        if c.id == "data.drift" and isinstance(metrics.get("per_feature"), Mapping):
            story += self.drift_table(metrics)
        if c.findings:
            if any(f.dataset is not None or f.rows is not None for f in c.findings):
                rows = [self.header_row("Finding", "Dataset", "Rows", "First rows (0-based)")]
                for f in c.findings[:MAX_FINDINGS]:
                    rows.append([self.cell(f.message), self.cell(f.dataset or "-"),
                                 self.cell(len(f.rows) if f.rows is not None else "-"), self.cell(_rows_text(f.rows))])
                table = self.table(rows, [5, 1, 0.7, 3])
            else:
                rows = [self.header_row("Finding")] + [[self.cell(f.message)] for f in c.findings[:MAX_FINDINGS]]
                table = self.table(rows, [1])
            story += [self.p(f"Findings ({len(c.findings)})", "h3"), table]
            if len(c.findings) > MAX_FINDINGS:
                story.append(self.p(f"... and {len(c.findings) - MAX_FINDINGS} more findings; report.json lists "
                                    "every finding and every flagged row.", "small"))
        elif c.status not in ("skipped", "error"):
            story.append(self.p("<i>No findings.</i>", "small"))
        if c.controls:
            story.append(self.p("<b>Controls:</b> " + ", ".join(_esc(x) for x in c.controls), "small"))
        if c.traceback:
            tb = "<br/>".join(_esc(line).replace(" ", "&nbsp;") for line in c.traceback.splitlines()[-25:])
            story += [self.p("Traceback", "h3"), self.p(tb, "mono")]
        return story

    # -- charts

    def drift_chart(self, metrics: Mapping[str, Any]):
        per = metrics["per_feature"]
        items = sorted(((k, v) for k, v in per.items() if isinstance(v, Mapping) and v.get("effect") is not None),
                       key=lambda kv: -float(kv[1]["effect"]))
        if not items:
            return None
        shown = items[:MAX_CHART_BARS]
        threshold = metrics.get("min_effect")
        title = (f"Effect size per feature (KS statistic / total variation), largest {len(shown)} of {len(items)}"
                 f"; red = drifted")
        return self.hbar_chart(
            title, [(k, float(v["effect"]), bool(v.get("drifted"))) for k, v in shown],
            threshold=float(threshold) if isinstance(threshold, (int, float)) else None,
            threshold_label=f"min_effect {threshold}" if threshold is not None else "",
        )

    def drift_table(self, metrics: Mapping[str, Any]) -> list:
        per = metrics["per_feature"]
        items = sorted(((k, v) for k, v in per.items() if isinstance(v, Mapping)),
                       key=lambda kv: (not kv[1].get("drifted"), -float(kv[1].get("effect") or 0)))
        drifted = sum(1 for _, v in items if v.get("drifted"))
        limit = min(len(items), drifted + MAX_DRIFT_ROWS, 150)
        rows = [self.header_row("Feature", "Test", "Statistic", "Effect", "p", "Adjusted p", "Drifted")]
        for k, v in items[:limit]:
            rows.append([self.cell(k), self.cell(v.get("test", "-")), self.cell(_fmt(v.get("statistic"))),
                         self.cell(_fmt(v.get("effect"))), self.cell(_fmt(v.get("p_value"))),
                         self.cell(_fmt(v.get("p_adjusted"))),
                         self.p('<font color="#cf222e"><b>YES</b></font>', "cell") if v.get("drifted") else self.cell("no")])
        out = [self.p(f"Per feature ({len(items)} tested, {drifted} drifted; drifted first, then by effect)", "h3"),
               self.table(rows, [3, 0.8, 1, 1, 1.1, 1.1, 0.8])]
        if len(items) > limit:
            out.append(self.p(f"... {len(items) - limit} more features in report.json.", "small"))
        return out

    def fairness_charts(self, metrics: Mapping[str, Any]):
        """Per-group bars with bootstrap intervals: selection rate (four-fifths line) or accuracy, per attribute."""
        from reportlab.platypus import Spacer

        charts: list = []
        for attr, entry in metrics["attributes"].items():
            groups = entry.get("groups") if isinstance(entry, Mapping) else None
            if not isinstance(groups, Mapping) or not groups:
                continue
            metric = "selection_rate" if all(g.get("selection_rate") is not None for g in groups.values()) else "accuracy"
            values = {g: float(v[metric]) for g, v in groups.items() if v.get(metric) is not None}
            if not values:
                continue
            top = max(values.values())
            limit = metrics.get("min_selection_rate_ratio") if metric == "selection_rate" else None
            floor = top * float(limit) if isinstance(limit, (int, float)) else None
            bars = [(f"{attr}={g}", v, floor is not None and v < floor) for g, v in values.items()][:MAX_CHART_BARS]
            intervals = [tuple(groups[g].get(f"{metric}_ci") or (None, None)) for g in values][:MAX_CHART_BARS]
            title = (f"{metric.replace('_', ' ')} per group of {attr}, with bootstrap intervals"
                     + ("; red = below the four-fifths line" if floor is not None else ""))
            charts += [self.hbar_chart(title, bars, threshold=floor,
                                       threshold_label=f"{limit} x highest" if floor is not None else "",
                                       intervals=intervals), Spacer(1, 2 * self.mm)]
        return charts or None

    def class_chart(self, metrics: Mapping[str, Any]):
        series = {name: metrics[name]["counts"] for name in ("train", "test")
                  if isinstance(metrics.get(name), Mapping) and isinstance(metrics[name].get("counts"), Mapping)}
        if not series:
            return None
        classes = list(dict.fromkeys(k for counts in series.values() for k in counts))[:30]
        total = {n: sum(c.values()) or 1 for n, c in series.items()}
        bars = [(cls, [float(series[n].get(cls, 0)) / total[n] for n in series]) for cls in classes]
        return self.vbar_chart("Class frequency per dataset (share of rows)", list(series), bars)

    def hbar_chart(self, title: str, bars: list[tuple[str, float, bool]], threshold: float | None = None,
                   threshold_label: str = "", intervals: list | None = None):
        from reportlab.graphics.shapes import Drawing, Line, Rect, String

        bar_h, gap, label_w, top, bottom = 9, 3, 120, 22, 22
        width = self.width
        height = top + bottom + len(bars) * (bar_h + gap)
        d = Drawing(width, height)
        d.add(String(0, height - 12, title, fontName="Helvetica-Bold", fontSize=8))
        plot_x, plot_w = label_w + 4, width - label_w - 44
        highs = [iv[1] for iv in (intervals or []) if iv and iv[1] is not None]
        ticks = _nice_ticks(max([b[1] for b in bars] + [threshold or 0] + highs) * 1.05)
        vmax = ticks[-1]
        y = height - top
        for i, (name, value, flagged) in enumerate(bars):
            y -= bar_h + gap
            label = name if len(name) <= 26 else name[:12] + "..." + name[-11:]
            d.add(String(label_w, y + 1.5, label, fontName="Helvetica", fontSize=7, textAnchor="end"))
            w = plot_w * value / vmax
            d.add(Rect(plot_x, y, max(w, 0.5), bar_h, fillColor=self.colors.HexColor("#cf222e" if flagged else "#8c959f"),
                       strokeColor=None))
            label_x = plot_x + w + 3
            interval = intervals[i] if intervals and i < len(intervals) else None
            if interval and interval[0] is not None and interval[1] is not None:
                x0, x1 = plot_x + plot_w * interval[0] / vmax, plot_x + plot_w * interval[1] / vmax
                mid = y + bar_h / 2
                d.add(Line(x0, mid, x1, mid, strokeWidth=0.8))
                d.add(Line(x0, mid - 2.5, x0, mid + 2.5, strokeWidth=0.8))
                d.add(Line(x1, mid - 2.5, x1, mid + 2.5, strokeWidth=0.8))
                label_x = max(label_x, x1 + 3)
            d.add(String(label_x, y + 1.5, f"{value:.3f}", fontName="Helvetica", fontSize=6.5))
        axis_y = y - 4
        d.add(Line(plot_x, axis_y, plot_x + plot_w, axis_y, strokeWidth=0.5))
        for v in ticks:
            x = plot_x + plot_w * v / vmax
            d.add(Line(x, axis_y, x, axis_y - 2, strokeWidth=0.5))
            d.add(String(x, axis_y - 9, _tick_label(v, ticks), fontName="Helvetica", fontSize=6.5, textAnchor="middle"))
        if threshold is not None:
            x = plot_x + plot_w * threshold / vmax
            d.add(Line(x, axis_y, x, height - top, strokeColor=self.colors.HexColor("#0969da"), strokeWidth=0.8,
                       strokeDashArray=[3, 2]))
            d.add(String(x + 2, height - top + 2, threshold_label, fontName="Helvetica", fontSize=6.5,
                         fillColor=self.colors.HexColor("#0969da")))
        return d

    def vbar_chart(self, title: str, series: list[str], bars: list[tuple[str, list[float]]]):
        from reportlab.graphics.shapes import Drawing, Line, Rect, String

        palette = ["#0969da", "#bf8700", "#8250df", "#1a7f37"]
        width, height = self.width, 150
        left, bottom, top = 30, 28, 24
        d = Drawing(width, height)
        d.add(String(0, height - 12, title, fontName="Helvetica-Bold", fontSize=8))
        for i, name in enumerate(series):
            x = width - 120 + i * 60
            d.add(Rect(x, height - 13, 8, 8, fillColor=self.colors.HexColor(palette[i % 4]), strokeColor=None))
            d.add(String(x + 11, height - 12, name, fontName="Helvetica", fontSize=7))
        plot_w, plot_h = width - left - 4, height - bottom - top
        ticks = _nice_ticks(max((v for _, vals in bars for v in vals), default=1.0) * 1.05)
        vmax = ticks[-1]
        group_w = plot_w / max(len(bars), 1)
        bw = min(group_w * 0.8 / max(len(series), 1), 18)
        d.add(Line(left, bottom, left + plot_w, bottom, strokeWidth=0.5))
        d.add(Line(left, bottom, left, bottom + plot_h, strokeWidth=0.5))
        for v in ticks:
            y = bottom + plot_h * v / vmax
            d.add(Line(left - 2, y, left, y, strokeWidth=0.5))
            d.add(String(left - 3, y - 2, _tick_label(v, ticks), fontName="Helvetica", fontSize=6, textAnchor="end"))
        for gi, (name, vals) in enumerate(bars):
            gx = left + gi * group_w + (group_w - bw * len(vals)) / 2
            for si, v in enumerate(vals):
                h = plot_h * v / vmax
                d.add(Rect(gx + si * bw, bottom, bw, h, fillColor=self.colors.HexColor(palette[si % 4]), strokeColor=None))
            label = name if len(name) <= 8 else name[:7] + "."
            d.add(String(left + gi * group_w + group_w / 2, bottom - 9, label, fontName="Helvetica", fontSize=6.5,
                         textAnchor="middle"))
        return d

    # -- appendices

    def subjects(self) -> list:
        rows = [self.header_row("Name", "Kind", "Path", "sha256")]
        for sj in self.report.subjects:
            rows.append([self.cell(sj.name), self.cell(sj.kind), self.cell(sj.path), self.cell(sj.sha256, "mono")])
        return [self.p("4. Subjects", "h1"), self.p(
            "The inputs this report is about, by content digest. The signed envelope (report.dsse.json) lists the "
            "same digests, so a changed input no longer matches its report."),
            self.table(rows, [1.2, 0.8, 3.6, 3.6])]

    def environment(self) -> list:
        env = self.report.environment
        rows = [self.header_row("Component", "Version")]
        rows.append([self.cell("python"), self.cell(env.get("python", "-"))])
        rows.append([self.cell("platform"), self.cell(env.get("platform", "-"))])
        rows.append([self.cell(self.report.auditor.get("name", "auditor")), self.cell(self.report.auditor.get("version", "-"))])
        for name, version in sorted((env.get("packages") or {}).items()):
            rows.append([self.cell(name), self.cell(version)])
        story = [self.p("5. Environment", "h1"), self.table(rows, [2, 5])]
        argv = self.report.run.get("argv")
        if argv:
            story += [self.p("Command line", "h3"), self.p(_esc("auditor " + " ".join(str(a) for a in argv)), "mono")]
        return story

    # -- page furniture

    def decorate(self, canvas, doc) -> None:
        r = self.report
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(self.colors.HexColor("#57606a"))
        w, h = self.page_size
        if doc.page > 1:
            canvas.drawString(self.margin, h - self.margin + 8,
                              f"Audit report - policy {r.policy.get('name')} v{r.policy.get('version')} - "
                              f"gate {r.summary.gate.upper()}")
            canvas.line(self.margin, h - self.margin + 5, w - self.margin, h - self.margin + 5)
        signer = self.signer.get("common_name") if self.signer else None
        canvas.drawString(self.margin, self.margin - 14,
                          f"run {r.run.get('id')} - {r.run.get('finished_at')} - "
                          + (f"signed by {signer}" if signer else "UNSIGNED"))
        canvas.restoreState()

    def build(self) -> bytes:
        from reportlab.platypus import PageBreak, SimpleDocTemplate

        buf = io.BytesIO()
        r = self.report
        doc = SimpleDocTemplate(
            buf, pagesize=self.page_size, leftMargin=self.margin, rightMargin=self.margin, topMargin=self.margin,
            bottomMargin=self.margin, title=f"Audit report: policy {r.policy.get('name')} v{r.policy.get('version')}",
            author=(self.signer or {}).get("common_name") or "auditor",
            subject=f"gate {r.summary.gate}", creator=f"auditor {r.auditor.get('version')}",
        )
        story = self.cover() + self.executive_summary() + [PageBreak()] + self.coverage_matrix() + [PageBreak()]
        story.append(self.p("3. Checks", "h1"))
        for n, c in enumerate(r.checks, start=1):
            story += self.check_section(n, c)
        story += [PageBreak()] + self.subjects() + self.environment()
        doc.build(story, onFirstPage=self.decorate, onLaterPages=self.decorate, canvasmaker=_numbered_canvas(self))
        return buf.getvalue()


def _numbered_canvas(builder: _Builder):
    from reportlab.pdfgen import canvas as rl_canvas

    class NumberedCanvas(rl_canvas.Canvas):
        """Two-pass page numbers: 'page N of M' needs the page count."""

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("invariant", 0)
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont("Helvetica", 7)
                self.setFillColor(builder.colors.HexColor("#57606a"))
                w, _h = builder.page_size
                self.drawRightString(w - builder.margin, builder.margin - 14, f"page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def render(report: Report) -> bytes:
    return _Builder(report).build()
