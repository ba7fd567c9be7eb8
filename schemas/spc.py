"""The catalog's statistical process control section: which quality characteristics get a
control chart, with which rules and specification limits. Cp/Cpk are computed per shift of
the catalog's shift calendar (``kpis.shifts``, :mod:`schemas.catalog_kpis`).

```yaml
spc:
  min_capability_points: 30        # a shift with fewer points reports that instead of Cp/Cpk
  characteristics:
    - tag: cnc-01/cycle_time         # machine/tag of an analog tag
      chart: individuals             # or xbar_r (then subgroup_size: 2..10)
      baseline_points: 50            # limits from the first 50 values (xbar_r: subgroups)
      rules: [western_electric, nelson, range]   # range: rule 1 on the R/MR chart
      lsl: 30                        # either limit may be left out (one-sided Cpk, no Cp)
      usl: 42
      baseline_id: "2026-11"         # change it to learn new limits (a re-base)
```
Every error names the entry, the value and what to write instead.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

__all__ = ["CHARTS", "RULE_SETS", "CharacteristicSpec", "SpcSection", "SpcSpec"]

CHARTS = ("individuals", "xbar_r")
RULE_SETS = ("western_electric", "nelson", "range")  # range: rule 1 on the R/MR chart


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CharacteristicSpec(_Frozen):
    """One charted quality characteristic (see the module docstring)."""

    tag: str  # machine/tag
    chart: Literal["individuals", "xbar_r"] = "individuals"
    subgroup_size: int | None = None
    baseline_points: int = Field(default=30, ge=2, le=100_000)
    rules: list[Literal["western_electric", "nelson", "range"]] = ["western_electric"]
    lsl: float | None = None
    usl: float | None = None
    description: str = ""
    # any change of this entry re-bases the chart at the worker's next start (its saved
    # limits are not restored); baseline_id is a label to change for just that
    baseline_id: str = ""

    @model_validator(mode="after")
    def _coherent(self) -> CharacteristicSpec:
        what = f"spc characteristic {self.tag!r}"
        if self.chart == "xbar_r":
            if self.subgroup_size is None or not 2 <= self.subgroup_size <= 10:
                raise ValueError(f"{what}: chart xbar_r needs subgroup_size 2 to 10, got "
                                 f"{self.subgroup_size}; set e.g. subgroup_size: 5, or use "
                                 "chart: individuals for one value at a time")
        elif self.subgroup_size not in (None, 1):
            raise ValueError(f"{what}: chart individuals plots single values, but "
                             f"subgroup_size is {self.subgroup_size}; remove subgroup_size or "
                             "use chart: xbar_r")
        if not self.rules:
            raise ValueError(f"{what}: rules is empty; list western_electric, nelson and/or "
                             "range")
        if len(set(self.rules)) != len(self.rules):
            raise ValueError(f"{what}: rules {self.rules} name a rule set twice; list each once")
        if self.lsl is not None and self.usl is not None and not self.lsl < self.usl:
            raise ValueError(f"{what}: lsl ({self.lsl:g}) must be below usl ({self.usl:g}); "
                             "swap them or fix the specification")
        return self

    @property
    def n(self) -> int:
        """Points per plotted point: 1 for individuals."""
        return (self.subgroup_size or 1) if self.chart == "xbar_r" else 1


class SpcSpec(_Frozen):
    min_capability_points: int = Field(default=30, ge=2)
    characteristics: list[CharacteristicSpec] = []

    @model_validator(mode="after")
    def _once(self) -> SpcSpec:
        tags = [c.tag for c in self.characteristics]
        twice = sorted({t for t in tags if tags.count(t) > 1})
        if twice:
            raise ValueError(f"spc.characteristics: {', '.join(twice)} appear more than once; "
                             "chart each tag once")
        return self


def _check_tags(spec: SpcSpec, info: ValidationInfo) -> SpcSpec:
    """Each characteristic names a numeric tag of the catalog (``machines`` is validated
    before ``spc``; when it failed, its own error is reported instead)."""
    machines: list[Any] | None = info.data.get("machines")
    if machines is None:
        return spec
    kinds = {f"{m.name}/{t.name}": t.kind for m in machines for t in m.tags}
    for i, c in enumerate(spec.characteristics):
        where = f"spc.characteristics[{i}].tag = {c.tag!r}"
        short = "/".join(c.tag.split("/")[-2:])
        kind = kinds.get(c.tag, kinds.get(short))
        if kind is None:
            near = sorted(k for k in kinds if k.endswith("/" + c.tag.split("/")[-1]))[:5]
            hint = f" (tags of that name: {', '.join(near)})" if near else ""
            raise ValueError(f"{where} is not a tag in the catalog{hint}; name it as "
                             "'machine/tag'")
        if kind != "analog":
            raise ValueError(f"{where} is a {kind} tag; a control chart needs a measured "
                             "value (kind analog), e.g. a cycle time or a dimension")
    return spec


SpcSection = Annotated[SpcSpec, AfterValidator(_check_tags)]
