"""Inspection rules: per class and zone, area and blob limits → an OK/NG verdict per frame.

``Rules.from_file("rules.yaml", classes=segmenter.classes).evaluate(result)`` returns a
:class:`Verdict`; see docs/reference/rules.md for the file format.
"""

from edgeseg.rules.rules import Rules
from edgeseg.rules.schema import Rule
from edgeseg.rules.verdict import Verdict
from edgeseg.rules.zones import FRAME_ZONE, Zone

__all__ = ["FRAME_ZONE", "Rule", "Rules", "Verdict", "Zone"]
