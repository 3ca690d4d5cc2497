"""oslo.policy behind one call: ``authorize(ctx, rule, target)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from oslo_config import cfg
from oslo_policy import policy

from glimpse.domain.errors import Forbidden
from glimpse.policy.context import RequestContext
from glimpse.policy.defaults import RULES

_MAX_DECISIONS = 65536


class PolicyEnforcer:
    """Checks Glance's rules; an operator's policy.yaml overrides the defaults."""

    def __init__(self, policy_file: str | None, config_dir: Path | None = None) -> None:
        conf = cfg.ConfigOpts()
        conf(args=[], default_config_files=[], project="glimpse")
        resolved = _resolve_policy_file(policy_file, config_dir)
        # A path that does not exist keeps oslo.policy from searching its default
        # locations, so only the operator's named file can override the defaults.
        self._enforcer = policy.Enforcer(
            conf, policy_file=str(resolved) if resolved else "/nonexistent/glimpse-policy.yaml"
        )
        self._enforcer.register_defaults(RULES)
        self._enforcer.load_rules()

        self._decisions: dict[tuple[object, ...], bool] = {}

    def check(self, ctx: RequestContext, rule: str, target: Mapping[str, object]) -> bool:
        # oslo.policy costs ~0.5 ms a check (it introspects every check function); a
        # decision depends only on the rule, the credentials and the target, and rules
        # are read once at start-up, so decisions are memoised.
        key = (rule, ctx.roles, ctx.project_id, ctx.user_id, ctx.system_scope,
               ctx.domain_id, tuple(sorted(target.items(), key=lambda kv: kv[0])))
        try:
            return self._decisions[key]
        except (KeyError, TypeError):
            pass
        decision = bool(self._enforcer.enforce(rule, dict(target), ctx.credentials()))
        try:
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        except TypeError:  # an unhashable target value: decide without memoising
            pass
        return decision

    def with_admin(self, ctx: RequestContext) -> RequestContext:
        """The context with ``is_admin`` decided by the ``context_is_admin`` rule, as
        Glance's context does, so an overridden rule changes who sees every project."""
        target = {"project_id": ctx.project_id, "user_id": ctx.user_id,
                  "domain_id": ctx.domain_id}
        return replace(ctx, admin=self.check(ctx, "context_is_admin", target))

    def authorize(self, ctx: RequestContext, rule: str, target: Mapping[str, object]) -> None:
        if not self.check(ctx, rule, target):
            raise Forbidden(f"You are not authorized to complete {rule} action.")


def _resolve_policy_file(policy_file: str | None, config_dir: Path | None) -> Path | None:
    if not policy_file:
        return None
    path = Path(policy_file)
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    return path if path.exists() else None
