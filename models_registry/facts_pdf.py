"""The Model Facts label as a PDF (fpdf2, pure Python: no browser at request time). It prints the
same dict as the HTML page (facts.model_facts)."""

from __future__ import annotations

from fpdf import FPDF
from fpdf.fonts import FontFace

# fpdf2's core fonts are Latin-1: typographic characters the card uses are written plainly.
_PLAIN = str.maketrans({"–": "-", "—": "-", "≥": ">=", "≤": "<=", "’": "'", "“": '"', "”": '"', "ρ": "rho"})


def _plain(text: object) -> str:
    return str(text).translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


class _Label(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self._title = title
        self.set_auto_page_break(auto=True, margin=14)
        self.set_margins(14, 14, 14)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", size=7)
        self.cell(0, 5, _plain(f"{self._title} - page {self.page_no()}"), align="C")

    def heading(self, text: str) -> None:
        self.ln(2)
        self.set_font("Helvetica", "B", 11)
        self.multi_cell(0, 6, _plain(text), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", size=9)

    def para(self, text: str, *, bold_label: str | None = None) -> None:
        self.set_font("Helvetica", size=9)
        body = f"**{_plain(bold_label)}** {_plain(text)}" if bold_label else _plain(text)
        self.multi_cell(0, 4.6, body, markdown=bool(bold_label), new_x="LMARGIN", new_y="NEXT")

    def grid(self, headings: list[str], rows: list[list[str]], widths: tuple[int, ...] | None = None) -> None:
        self.set_font("Helvetica", size=8)
        with self.table(
            col_widths=widths, headings_style=FontFace(emphasis="BOLD"), line_height=4.4, text_align="LEFT"
        ) as table:
            table.row([_plain(h) for h in headings])
            for row in rows:
                table.row([_plain(c) for c in row])
        self.set_font("Helvetica", size=9)


def model_facts_pdf(facts: dict) -> bytes:
    title = f"Model Facts: {facts['name']} v{facts['version']}"
    pdf = _Label(title)
    pdf.set_title(_plain(title))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, _plain(title), new_x="LMARGIN", new_y="NEXT")
    pdf.para(
        f"{facts['outcome']} (horizon {facts['horizon_hours']} h). Status: {facts['status']}.",
        bold_label="Predicts",
    )
    for warning in facts["warnings"]:
        pdf.para(warning, bold_label="Warning:")
    pdf.heading("Use")
    pdf.para(facts["intended_use"], bold_label="Intended use:")
    pdf.para(facts["when_not_to_use"], bold_label="When not to use:")
    pdf.heading("Cohorts")
    pdf.para(facts["training_cohort"], bold_label="Training cohort:")
    pdf.para(facts["reference_cohort"], bold_label="Reference cohort:")
    pdf.heading("Inputs and their sources")
    pdf.grid(
        ["Input", "Unit", "Source", "Code"],
        [[f["label"], f["unit"] or "-", f["source"] or "-", f["code"] or "-"] for f in facts["inputs"]],
        (60, 25, 30, 40),
    )
    if facts["protected"]:
        pdf.para(
            "; ".join(
                f"{p['label']} ({'model input' if p['model_input'] else 'not an input'})"
                for p in facts["protected"]
            ),
            bold_label="Protected characteristics:",
        )
    pdf.heading("Performance and calibration on the reference set (95% bootstrap intervals)")
    pdf.grid(
        ["Measure", "Value (95% CI)"],
        [[line["label"], line["text"]] for line in facts["performance"]],
        (60, 60),
    )
    _subgroups(pdf, facts["subgroups"])
    pdf.heading("Tier thresholds and alert burden")
    pdf.grid(
        ["Tier", "Risk at or above", "Alerts per 100 patients (95% CI)"],
        [[t["tier"], f"{t['threshold']}", t["alerts_per_100"]] for t in facts["tiers"]],
        (30, 40, 70),
    )
    pdf.heading("Warnings and known failure modes")
    pdf.para(facts["known_failure_modes"])
    pdf.heading("Explanation method")
    pdf.para(f"{facts['explanation_method']} Background: {facts['background']}")
    pdf.heading("Registration checks")
    pdf.grid(["Check", "Result"], [[c["title"], c["status"]] for c in facts["checks"]], (140, 30))
    pdf.heading("Registration and promotion")
    pdf.para(f"Registered {facts['registered_at']} by {facts['registered_by'] or 'the command line'}.")
    pdf.para(
        f"Promoted {facts['promoted_at']} by {facts['promoted_by'] or 'the command line'}."
        if facts["promoted_at"]
        else "Not promoted to production."
    )
    return bytes(pdf.output())


def _subgroups(pdf: _Label, summary: dict) -> None:
    pdf.heading("Subgroups")
    if summary["status"] != "ready":
        pdf.para(f"Subgroup figures: {summary['status']}.")
        return
    rows = [
        [
            r["subgroup"],
            r["group"],
            str(r["n"]),
            str(r["events"]),
            *(["too few to judge", *[""] * (len(summary["headings"]) - 1)] if r["too_few"] else r["cells"]),
        ]
        for r in summary["rows"]
    ]
    pdf.grid(["Subgroup", "Group", "n", "Events", *summary["headings"]], rows)
    for flag in summary["flags"]:
        pdf.para(flag, bold_label="Flag:")
