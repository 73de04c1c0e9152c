"""The clinician's report: key images (:mod:`.images`) and the HTML/PDF page (:mod:`.html`)."""

from .html import RESEARCH_ONLY, ReportContent, render_html, write_report
from .images import key_images_png, tumour_slices

__all__ = ["RESEARCH_ONLY", "ReportContent", "render_html", "write_report", "key_images_png", "tumour_slices"]
