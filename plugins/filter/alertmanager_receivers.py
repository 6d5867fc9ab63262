# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: alertmanager_receivers
author: aiplatform.observability maintainers
version_added: "0.1.0"
short_description: Alertmanager receivers and routes from the alertmanager role's typed receiver list
description:
  - Takes C(alertmanager_receivers) and returns a mapping with C(receivers) and C(routes), in Alertmanager's
    configuration syntax.
  - Each entry has a C(name) and any of the typed keys C(webhook), C(email), C(slack), C(pagerduty) (a mapping, or
    a list of mappings for several destinations of one type). They become C(<type>_configs) with the collection's
    message templates (C(aiplatform.title) and C(aiplatform.text) from the role's C(aiplatform.tmpl)), and with
    C(send_resolved) on unless the entry turns it off. Alertmanager's own C(<type>_configs) keys are passed
    through as given.
  - "C(match) (label -> value or list of values, for example C({severity: critical, team: [ml, data]})) adds a child
    route to this receiver, in list order; C(continue: true) lets later routes see the alert too."
  - Every mistake raises an error that names the entry, the key and the rule, before anything is written; no
    message contains a value (values may be secrets).
options:
  _input:
    description: The list C(alertmanager_receivers).
    type: list
    elements: dict
    required: true
  global_config:
    description: C(alertmanager_global), where C(slack_api_url), C(smtp_smarthost) and C(smtp_from) can be set once.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Receivers and routes
  ansible.builtin.debug:
    msg: "{{ alertmanager_receivers | aiplatform.observability.alertmanager_receivers(global_config=alertmanager_global) }}"
"""

RETURN = r"""
_value:
  description: C(receivers) (list, Alertmanager syntax) and C(routes) (list of child routes).
  type: dict
"""

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence, is_string

TITLE = '{{ template "aiplatform.title" . }}'
TEXT = '{{ template "aiplatform.text" . }}'
PD_SEVERITY = '{{ if .CommonLabels.severity }}{{ .CommonLabels.severity }}{{ else }}error{{ end }}'
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ENTRY_KEYS = {"name", "match", "continue", "webhook", "email", "slack", "pagerduty"}
RAW_KEYS = {"webhook_configs", "email_configs", "slack_configs", "pagerduty_configs", "opsgenie_configs",
            "pushover_configs", "victorops_configs", "wechat_configs", "telegram_configs", "sns_configs",
            "webex_configs", "discord_configs", "msteams_configs", "msteamsv2_configs", "jira_configs",
            "rocketchat_configs"}
# type -> (required keys (one of each tuple), optional keys)
TYPES = {
    "webhook": ([("url",)], {"send_resolved", "max_alerts", "bearer_token", "basic_auth", "tls_config",
                             "http_config"}),
    "email": ([("to",)], {"from", "smarthost", "hello", "auth_username", "auth_password", "auth_identity",
                          "require_tls", "tls_config", "headers", "send_resolved"}),
    "slack": ([], {"api_url", "channel", "username", "icon_emoji", "title_link", "send_resolved", "http_config"}),
    "pagerduty": ([("routing_key", "service_key")], {"url", "client", "client_url", "severity", "class",
                                                     "component", "group", "send_resolved", "http_config"}),
}


class _Error(AnsibleFilterError):
    pass


def _where(index, entry, key=None):
    name = entry.get("name") if isinstance(entry, dict) else None
    where = "alertmanager_receivers[%d]%s" % (index, " (%s)" % name if is_string(name) and name else "")
    return where + ("." + key if key else "")


def _string(value, where, required=True):
    if not is_string(value) or (required and not value.strip()):
        raise _Error("%s: must be a non-empty string" % where)
    return value


def _bool(value, where):
    if not isinstance(value, bool):
        raise _Error("%s: must be true or false, got %r" % (where, value))
    return value


def _items(value, where):
    items = [value] if isinstance(value, dict) else value
    if not is_sequence(items) or not items or not all(isinstance(i, dict) for i in items):
        raise _Error("%s: must be a mapping, or a non-empty list of mappings" % where)
    return items


def _check_keys(item, kind, where, global_config):
    required, optional = TYPES[kind]
    unknown = sorted(set(item) - optional - set(k for group in required for k in group))
    if unknown:
        raise _Error("%s: unknown key(s) %s; a %s destination takes %s" % (
            where, ", ".join(unknown), kind, ", ".join(sorted(optional | set(k for g in required for k in g)))))
    for group in required:
        if not any(k in item for k in group):
            raise _Error("%s: needs %s" % (where, " or ".join(group)))
    if kind == "slack" and "api_url" not in item and not global_config.get("slack_api_url"):
        raise _Error("%s: needs api_url (or slack_api_url in alertmanager_global)" % where)
    if kind == "email":
        for key, global_key in (("smarthost", "smtp_smarthost"), ("from", "smtp_from")):
            if key not in item and not global_config.get(global_key):
                raise _Error("%s: needs %s (or %s in alertmanager_global)" % (where, key, global_key))
    if "send_resolved" in item:
        _bool(item["send_resolved"], where + ".send_resolved")


def _webhook(item, where):
    url = _string(item["url"], where + ".url")
    if not re.match(r"^https?://", url):
        raise _Error("%s.url: must start with http:// or https://" % where)
    out = {"url": url, "send_resolved": item.get("send_resolved", True)}
    if "max_alerts" in item:
        if isinstance(item["max_alerts"], bool) or not isinstance(item["max_alerts"], int) or item["max_alerts"] < 0:
            raise _Error("%s.max_alerts: must be an integer >= 0" % where)
        out["max_alerts"] = item["max_alerts"]
    http_config = dict(item.get("http_config") or {})
    if "bearer_token" in item:
        token = _string(item["bearer_token"], where + ".bearer_token")
        http_config["authorization"] = {"type": "Bearer", "credentials": token}
    if "basic_auth" in item:
        auth = item["basic_auth"]
        if not isinstance(auth, dict) or not auth.get("username") or not (auth.get("password") or auth.get("password_file")):
            raise _Error("%s.basic_auth: needs username and password (or password_file)" % where)
        http_config["basic_auth"] = dict(auth)
    if "tls_config" in item:
        http_config["tls_config"] = dict(item["tls_config"])
    if http_config:
        out["http_config"] = http_config
    return out


def _email(item, where):
    out = {"to": _string(item["to"], where + ".to"), "send_resolved": item.get("send_resolved", True)}
    for key in ("from", "smarthost", "hello", "auth_username", "auth_password", "auth_identity", "require_tls",
                "tls_config"):
        if key in item:
            out[key] = item[key]
    headers = item.get("headers") or {}
    if not isinstance(headers, dict):
        raise _Error("%s.headers: must be a mapping" % where)
    out["headers"] = dict({"Subject": '{{ template "aiplatform.email.subject" . }}'}, **headers)
    out["text"] = '{{ template "aiplatform.email.text" . }}'
    return out


def _slack(item, where):
    out = {"send_resolved": item.get("send_resolved", True), "title": TITLE, "text": TEXT}
    for key in ("api_url", "channel", "username", "icon_emoji", "title_link", "http_config"):
        if key in item:
            out[key] = item[key]
    return out


def _pagerduty(item, where):
    if "routing_key" in item and "service_key" in item:
        raise _Error("%s: routing_key (Events API v2) or service_key (v1), not both" % where)
    out = {"send_resolved": item.get("send_resolved", True), "description": TITLE,
           "severity": item.get("severity", PD_SEVERITY), "details": {"alerts": TEXT}}
    for key in ("routing_key", "service_key", "url", "client", "client_url", "class", "component", "group",
                "http_config"):
        if key in item:
            out[key] = item[key]
    return out


BUILDERS = {"webhook": _webhook, "email": _email, "slack": _slack, "pagerduty": _pagerduty}


def _matcher(label, value, where):
    if not LABEL_RE.match(str(label)):
        raise _Error("%s: %r is not a label name" % (where, label))
    values = value if is_sequence(value) else [value]
    if not values or not all(is_string(v) and v for v in values):
        raise _Error("%s.%s: must be a label value or a non-empty list of label values" % (where, label))

    def quoted(text):
        return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')

    if len(values) == 1:
        return "%s=%s" % (label, quoted(values[0]))
    return "%s=~%s" % (label, quoted("|".join(re.escape(v) for v in values)))


def alertmanager_receivers(entries, global_config=None):
    """{receivers, routes} in Alertmanager syntax from alertmanager_receivers."""
    global_config = global_config or {}
    if not isinstance(global_config, dict):
        raise _Error("alertmanager_global: must be a mapping")
    if not is_sequence(entries):
        raise _Error("alertmanager_receivers: must be a list of receivers")
    receivers, routes, names = [], [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _Error("alertmanager_receivers[%d]: must be a mapping with a name" % index)
        name = _string(entry.get("name"), _where(index, entry, "name"))
        if name == "null":
            raise _Error("%s: the name null is the built-in receiver that sends nothing" % _where(index, entry))
        if name in names:
            raise _Error("%s: the name %s is used twice" % (_where(index, entry), name))
        names.add(name)
        unknown = sorted(set(entry) - ENTRY_KEYS - RAW_KEYS)
        if unknown:
            raise _Error("%s: unknown key(s) %s; a receiver takes name, match, continue, webhook, email, slack, "
                         "pagerduty, or Alertmanager's own *_configs" % (_where(index, entry), ", ".join(unknown)))
        receiver = {"name": name}
        for kind, build in BUILDERS.items():
            if kind not in entry:
                continue
            configs = []
            for n, item in enumerate(_items(entry[kind], _where(index, entry, kind))):
                where = _where(index, entry, kind) + ("[%d]" % n if is_sequence(entry[kind]) else "")
                _check_keys(item, kind, where, global_config)
                configs.append(build(item, where))
            receiver[kind + "_configs"] = configs
        for key in sorted(set(entry) & RAW_KEYS):
            raw = entry[key]
            if not is_sequence(raw) or not all(isinstance(i, dict) for i in raw):
                raise _Error("%s: must be a list of mappings (Alertmanager syntax)" % _where(index, entry, key))
            receiver[key] = receiver.get(key, []) + list(raw)
        receivers.append(receiver)
        if "match" in entry:
            match = entry["match"]
            if not isinstance(match, dict) or not match:
                raise _Error("%s: must be a mapping label -> value(s), e.g. {severity: critical, team: [ml]}"
                             % _where(index, entry, "match"))
            route = {"receiver": name,
                     "matchers": [_matcher(k, match[k], _where(index, entry, "match")) for k in sorted(match)]}
            if "continue" in entry:
                route["continue"] = _bool(entry["continue"], _where(index, entry, "continue"))
            routes.append(route)
        elif "continue" in entry:
            raise _Error("%s: continue applies to the route that match creates; add match" % _where(index, entry))
    return {"receivers": receivers, "routes": routes}


class FilterModule(object):
    """Filters of aiplatform.observability for Alertmanager."""

    def filters(self):
        return {"alertmanager_receivers": alertmanager_receivers}
