"""TumorSeg in the browser (trame-slicer): the clinician's workflow on Slicer's own scene and logic.

:mod:`.session` holds what the app does (tests drive it without a browser); :mod:`.ui` binds it to the page;
:mod:`.server` starts it (127.0.0.1 by default; a token when bound to another interface). trame is imported
only by :mod:`.ui` and :mod:`.server`.
"""

from .session import WebSession

__all__ = ["WebSession"]
