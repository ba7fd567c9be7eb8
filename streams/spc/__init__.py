"""Statistical process control: control charts of quality characteristics, Western
Electric and Nelson run rules, and Cp/Cpk per shift. Pure logic (no Kafka, no clock);
:mod:`streams.spc_stage` runs it inside the stream worker."""

from streams.spc.capability import Capability, Shift, ShiftTally, capability
from streams.spc.chart import Chart, ChartOutput
from streams.spc.constants import ChartConstants, constants
from streams.spc.engine import SpcEngine
from streams.spc.limits import Baseline, Limits, individuals_limits, xbar_r_limits
from streams.spc.rules import RULE_SETS, RULES, Rule, RuleChecker

__all__ = [
    "RULES",
    "RULE_SETS",
    "Baseline",
    "Capability",
    "Chart",
    "ChartConstants",
    "ChartOutput",
    "Limits",
    "Rule",
    "RuleChecker",
    "Shift",
    "ShiftTally",
    "SpcEngine",
    "capability",
    "constants",
    "individuals_limits",
    "xbar_r_limits",
]
