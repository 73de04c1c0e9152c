"""The report a clinician reads: one HTML page (images inlined) and its PDF (WeasyPrint), built from a
segmentation summary, key images, lesion measurements and, when there are earlier visits, the timeline.

"Research use only" is printed on every page; every number is the summary's own (nothing is recomputed here).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..export import atomic_write
from ..labels import VOLUME_KEYS
from ..longitudinal import PRINTED_COLUMNS
from ..support import VOLUME_NEEDS
from ..volume import PathLike

__all__ = ["ReportContent", "render_html", "write_report", "RESEARCH_ONLY"]

RESEARCH_ONLY = "Research use only. Not for clinical diagnosis or treatment decisions."
_VOLUME_NAMES = {"NCR": "Necrotic / non-enhancing core", "ED": "Peritumoral edema", "ET": "Enhancing tumor",
                 "TC": "Tumor core (NCR + ET)", "WT": "Whole tumor (NCR + ED + ET)"}


@dataclass
class ReportContent:
    """What goes into a report.

    Attributes:
        summary: the segmentation summary (as written to the summary JSON, provenance included).
        key_images_png: the key-image figure (``report.images.key_images_png``).
        lesions: bidimensional measurements of the enhancing lesions (``LesionMeasurement.to_dict()``).
        timeline_rows: the longitudinal table rows when there are earlier visits (``timeline_rows``).
        timeline_plot_png: the volume plot of the timeline.
        study: patient and study identity (DICOM), or ``None`` for files.
    """

    summary: Mapping
    key_images_png: bytes | None = None
    lesions: Sequence[Mapping] = ()
    timeline_rows: Sequence[Mapping] | None = None
    timeline_plot_png: bytes | None = None
    study: Mapping | None = None
    title: str = "TumorSeg brain tumour segmentation report"
    extra_findings: list[str] = field(default_factory=list)


def _volume_rows(summary: Mapping) -> list[dict]:
    uncertainty = summary.get("uncertainty") or {}
    intervals = uncertainty.get("volumes_ml", {})
    flagged = set(uncertainty.get("flagged", []))
    rows = []
    for key in VOLUME_KEYS:
        value = summary["volumes_ml"].get(key)
        interval = intervals.get(key, {})
        bounds = interval.get("interval") or ([interval["p5"], interval["p95"]] if "p5" in interval else None)
        rows.append({"key": key, "name": _VOLUME_NAMES[key], "value": value,
                     "interval": bounds, "calibrated": "interval" in interval,
                     "flagged": key in flagged, "not_assessed": key in summary.get("not_assessed", []),
                     "why": VOLUME_NEEDS.get(key, ((), ""))[1]})
    return rows


def _review_flags(content: ReportContent) -> list[str]:
    summary = content.summary
    flags = list(content.extra_findings)
    uncertainty = summary.get("uncertainty") or {}
    for key in uncertainty.get("flagged", []):
        score = uncertainty.get("regions", {}).get(key, {}).get("score")
        flags.append(f"{_VOLUME_NAMES.get(key, key)}: uncertain contour"
                     + (f" ({100 * score:.0f}% of the region in doubt)" if score is not None else "")
                     + "; review it first.")
    for key in uncertainty.get("estimate_outside_interval", []):
        flags.append(f"{_VOLUME_NAMES.get(key, key)}: the volume lies outside its own interval; treat it with care.")
    if "ET" in summary.get("not_assessed", []):
        flags.append("No T1c (contrast) series: enhancing tumor and necrosis are not assessed; the tumor core is "
                     "reported as one region.")
    if "ED" in summary.get("not_assessed", []):
        flags.append("No T2 or FLAIR series: edema and the whole tumor's extent are not assessed; only the tumor "
                     "core is reported.")
    if any(finding.get("forced") for finding in summary.get("qa", [])):
        flags.append("Input-check errors were overridden (--force): the result may be wrong.")
    return flags


def _png(data: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(data).decode() if data else None


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
@page { size: A4; margin: 16mm 13mm 16mm 13mm;
  @top-center { content: "{{ research_only }}"; font: bold 8.5pt sans-serif; color: #a00; }
  @bottom-right { content: "page " counter(page) " of " counter(pages); font: 8pt sans-serif; color: #555; } }
body { font: 10pt/1.35 "DejaVu Sans", Arial, sans-serif; color: #111; max-width: 190mm; margin: auto; }
h1 { font-size: 16pt; margin: 0 0 4pt; } h2 { font-size: 12pt; margin: 14pt 0 4pt; border-bottom: 1px solid #999; }
.banner { color: #a00; font-weight: bold; border: 1px solid #a00; padding: 3pt 6pt; margin: 4pt 0 8pt; }
table { border-collapse: collapse; width: 100%; margin: 4pt 0; } td, th { border: 1px solid #bbb; padding: 2pt 4pt; }
th { background: #eee; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.flag { color: #a00; font-weight: bold; } .small { font-size: 8pt; color: #444; }
.hash { font-size: 8pt; color: #444; word-break: break-all; } table.follow td, table.follow th { font-size: 8pt; }
img { width: 100%; } .keep { break-inside: avoid; }
</style></head><body>
<h1>{{ title }}</h1>
<div class="banner">{{ research_only }}</div>
<table>
{% if study %}<tr><th>Patient</th><td>{{ study.PatientName }} (ID {{ study.PatientID }})</td>
<th>Study date</th><td>{{ study.StudyDate }}</td></tr>
<tr><th>Study</th><td>{{ study.StudyDescription }}</td><th>Accession</th><td>{{ study.AccessionNumber }}</td></tr>{% endif %}
<tr><th>Model</th><td>{{ summary.model }}</td>
<th>Device</th><td>{{ summary.device }}{% if summary.precision %} ({{ summary.precision }}){% endif %}</td></tr>
<tr><th>Sequences used</th><td>{{ summary.sequences_used | join(", ") | upper }}</td>
<th>Missing</th><td>{{ (summary.sequences_missing | join(", ") | upper) or "none" }}</td></tr>
</table>

<h2>Tumor volumes</h2>
<table><tr><th>Region</th><th>Volume (mL)</th><th>Interval (mL)</th><th>Review</th></tr>
{% for row in volumes %}<tr><td>{{ row.name }}</td>
{% if row.not_assessed %}<td class="n">not assessed</td><td>{{ row.why }}</td><td></td>
{% else %}<td class="n">{{ "%.1f" | format(row.value) }}</td>
<td class="n">{% if row.interval %}{{ "%.1f" | format(row.interval[0]) }} to {{ "%.1f" | format(row.interval[1]) }}{% if row.calibrated %}*{% endif %}{% else %}not estimated{% endif %}</td>
<td>{% if row.flagged %}<span class="flag">uncertain: review</span>{% endif %}</td>{% endif %}</tr>
{% endfor %}</table>
<p class="small">{% if calibrated %}* calibrated interval: in cross-validation it held the expert's volume for about
{{ coverage }}% of cases. {% endif %}Volumes are of the AI segmentation; they are as good as its contours.</p>

<h2>Review flags</h2>
{% if flags %}<ul>{% for flag in flags %}<li class="flag">{{ flag }}</li>{% endfor %}</ul>
{% else %}<p>None: no region was flagged as uncertain.</p>{% endif %}

<div class="keep"><h2>Key images</h2>
{% if images %}<img src="{{ images }}" alt="Axial, coronal and sagittal slices through the tumor with contours">
<p class="small">Contours: red necrotic / non-enhancing core, green edema, yellow enhancing tumor. Bottom row:
voxel uncertainty (darker = surer). Radiological convention (R = patient's right).</p>
{% else %}<p>No images.</p>{% endif %}</div>

<h2>Enhancing lesions (bidimensional, RANO 2.0)</h2>
{% if lesions %}<table><tr><th>Lesion</th><th>Longest (mm)</th><th>Perpendicular (mm)</th><th>Product (mm²)</th>
<th>Volume (mL)</th><th>Measurable</th></tr>
{% for lesion in lesions %}<tr><td>{{ lesion.index }}</td><td class="n">{{ "%.1f" | format(lesion.longest_diameter_mm) }}</td>
<td class="n">{{ "%.1f" | format(lesion.perpendicular_diameter_mm) }}</td>
<td class="n">{{ "%.0f" | format(lesion.longest_diameter_mm * lesion.perpendicular_diameter_mm) }}</td>
<td class="n">{{ "%.2f" | format(lesion.volume_ml) }}</td>
<td>{{ "yes" if lesion.measurable else "no: " ~ lesion.reason }}</td></tr>{% endfor %}</table>
{% else %}<p>No enhancing lesion{% if "ET" in summary.not_assessed %} (not assessed without T1c){% endif %}.</p>{% endif %}

{% if timeline %}<div class="keep"><h2>Follow-up (RANO 2.0, imaging only)</h2>
<table class="follow"><tr>{% for column in timeline_columns %}<th>{{ headers.get(column, column) }}</th>{% endfor %}</tr>
{% for row in timeline %}<tr>{% for column in timeline_columns %}{% set value = row.get(column) %}
{% if value is integer %}<td class="n">{{ value }}</td>{% elif value is number %}<td class="n">{{ "%.1f" | format(value) }}</td>{% else %}<td>{{ value if value is not none else "" }}</td>{% endif %}{% endfor %}</tr>{% endfor %}
</table>
{% if timeline_plot %}<img src="{{ timeline_plot }}" alt="Tumor volumes over time">{% endif %}</div>{% endif %}

<h2>Input checks</h2>
{% if qa %}<table><tr><th>Severity</th><th>Check</th><th>Finding</th></tr>
{% for finding in qa %}<tr><td>{{ finding.severity }}{% if finding.forced %} (forced){% endif %}</td><td>{{ finding.code }}</td>
<td>{{ finding.message }}</td></tr>{% endfor %}</table>{% else %}<p>All input checks passed.</p>{% endif %}

<h2>Provenance</h2>
<table>
<tr><th>Software</th><td>TumorSeg {{ provenance.versions.tumorseg }} (PyTorch {{ provenance.versions.torch }},
MONAI {{ provenance.versions.monai }})</td></tr>
<tr><th>Created</th><td>{{ provenance.created_utc }}</td></tr>
<tr><th>Model weights SHA-256</th><td class="hash">{{ summary.model_sha256 | join(" ") }}</td></tr>
{% for key, item in provenance.inputs.items() %}<tr><th>Input {{ key | upper }}</th><td class="hash">
{% if item.SeriesInstanceUID %}series {{ item.SeriesNumber }} '{{ item.SeriesDescription }}' UID {{ item.SeriesInstanceUID }}<br>{% endif %}
{% if item.path %}{{ item.path }}<br>{% endif %}SHA-256 {{ item.sha256 }}</td></tr>{% endfor %}
{% if provenance.command %}<tr><th>Command</th><td class="hash">{{ provenance.command | join(" ") }}</td></tr>{% endif %}
</table>
<p class="small">{{ research_only }} TumorSeg segments gliomas in adult brain MRI; it was trained on 28 BraTS 2018
cases and has not been validated for clinical use.</p>
</body></html>
"""


# Column titles of the follow-up table (the CSV keeps the machine names).
_TIMELINE_HEADERS = {"timepoint": "Visit", "date": "Date", "ET_ml": "ET (mL)", "TC_ml": "TC (mL)", "WT_ml": "WT (mL)",
                     "not_assessed": "Not assessed",
                     "ET_change_vs_baseline_pct": "ET vs baseline (%)", "spd_mm2": "SPD (mm²)",
                     "spd_change_vs_baseline_pct": "SPD vs baseline (%)", "spd_change_vs_nadir_pct": "SPD vs nadir (%)",
                     "new_lesions": "New lesions", "rano_bidimensional": "RANO (2D)",
                     "rano_volumetric": "RANO (volumetric)", "confirmation": "Confirmation"}


def render_html(content: ReportContent) -> str:
    """The report as one self-contained HTML page."""
    import jinja2

    summary = content.summary
    uncertainty = summary.get("uncertainty") or {}
    coverages = [v.get("interval_coverage") for v in uncertainty.get("volumes_ml", {}).values()
                 if v.get("interval_coverage")]
    shown = {column for row in content.timeline_rows or [] for column in row}
    columns = [column for column in PRINTED_COLUMNS if column in shown]
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return environment.from_string(_TEMPLATE).render(
        title=content.title, research_only=RESEARCH_ONLY, summary=summary, study=content.study,
        volumes=_volume_rows(summary), flags=_review_flags(content), images=_png(content.key_images_png),
        lesions=list(content.lesions), timeline=list(content.timeline_rows or []), timeline_columns=columns,
        timeline_plot=_png(content.timeline_plot_png), headers=_TIMELINE_HEADERS, qa=summary.get("qa", []),
        provenance=summary.get("provenance") or {}, calibrated=bool(coverages),
        coverage=round(100 * min(coverages)) if coverages else None)


def write_report(content: ReportContent, html_path: PathLike, pdf_path: PathLike | None = None) -> list[Path]:
    """Write the HTML report and, when ``pdf_path`` is given, its PDF (each through a temporary name)."""
    html = render_html(content)
    written = [atomic_write(html_path, lambda partial: partial.write_text(html, encoding="utf-8"))]
    if pdf_path is not None:
        from weasyprint import HTML

        pdf = HTML(string=html).write_pdf()
        written.append(atomic_write(pdf_path, lambda partial: partial.write_bytes(pdf)))
    return written
