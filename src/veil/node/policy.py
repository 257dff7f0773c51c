"""A node's approval policy: does a proposal match one of its ``[[policy.approve]]`` rules?

The default policy (no rules) approves nothing: every proposal waits for an approver.
A rule approves only when all its conditions hold; otherwise the reason of the
closest rule is kept, one line, so the approver sees why a person is needed.
"""

from __future__ import annotations

from veil.node.config import Rule
from veil.node.jobfile import NodeJob
from veil.node.model import Dataset

NO_RULES = "the policy has no approve rules (the default approves nothing)"


def _why_not(rule: Rule, job: NodeJob, partner: str, me: str, ds: Dataset) -> str | None:
    if partner not in rule.partners and "*" not in rule.partners:
        return f"partner '{partner}' is not allowed by policy"
    for kind, _ in job.steps:
        if kind not in rule.steps and "*" not in rule.steps:
            return f"step '{kind}' is not allowed by policy for partner '{partner}'"
    if ds.name not in rule.datasets:
        return f"dataset '{ds.name}' is not allowed by policy for partner '{partner}'"
    if rule.columns is not None:
        used = [c for c in ds.columns if c not in (ds.id_col, ds.label_col)]
        for c in used:
            if c not in rule.columns:
                return f"column '{c}' of dataset '{ds.name}' is not allowed by policy"
    if rule.recipients is not None:
        for r in sorted(job.recipients()):
            if r not in rule.recipients and r != me:
                return f"recipient '{r}' is not allowed by policy to receive outputs"
    return None


def evaluate(
    rules: tuple[Rule, ...], job: NodeJob, partner: str, me: str, ds: Dataset
) -> str | None:
    """None when a rule approves the job; else the one-line reason it needs a person."""
    if not rules:
        return NO_RULES
    reasons = []
    for rule in rules:
        why = _why_not(rule, job, partner, me, ds)
        if why is None:
            return None
        reasons.append(why)
    return reasons[0] if len(reasons) == 1 else "; ".join(dict.fromkeys(reasons))
