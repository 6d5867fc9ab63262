# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: scrape_registrations
author: aiplatform.observability maintainers
version_added: "0.2.0"
short_description: The scrape targets that the collection's roles registered on a list of hosts
description:
  - Every role that runs a service Prometheus scrapes registers it on its own host through
    C(roles/common/tasks/scrape_target.yml), one entry per job, C({role, port, scheme, metrics_path, unit, info}).
    The entry is kept for the run in the host fact C(aiplatform_scrape_targets) (a mapping job -> entry, C(null) for
    a job the role no longer serves) and on the host in C(/etc/ansible/facts.d/aiplatform_scrape_<job>.fact), which
    later runs read back as local facts.
  - This filter reads both for each host of the input (the fact of this run wins over the file) and returns one
    item per registered (host, job), sorted by job, then host. It is how the prometheus role builds its jobs and
    its Alertmanager list, how the health gate knows the targets it expects, and how the dashboard truth check
    finds the GPU exporters; no role reads another role's variables for it. See docs/scrape-targets.md.
options:
  _input:
    description: Inventory host names.
    type: list
    elements: str
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
  role:
    description: Only the entries registered by this role (for example C(gpu_exporter)).
    type: str
  address:
    description: Add C(address) (the host's address from the filter C(scrape_address), with the port).
    type: bool
    default: true
  render:
    description: Rendering without facts (passed to C(scrape_address)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Where the GPU exporters run
  ansible.builtin.debug:
    msg: "{{ groups['all'] | aiplatform.observability.scrape_registrations(hostvars, role='gpu_exporter') }}"
"""

RETURN = r"""
_value:
  description: C([{host, job, role, port, scheme, metrics_path, unit, info, address}]).
  type: list
  elements: dict
"""

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_string
from ansible.module_utils.six import integer_types

from ansible_collections.aiplatform.observability.plugins.filter.scrape_address import scrape_address

FACT_PREFIX = "aiplatform_scrape_"
RUN_FACT = "aiplatform_scrape_targets"
JOB_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]*$")
SCHEMES = ("http", "https")


def _get(mapping, key, default=None):
    try:
        value = mapping[key]
    except Exception:  # missing, or an undefined variable inside a templated value
        return default
    return default if value is None else value


def _local_facts(hostvars):
    facts = _get(hostvars, "ansible_facts", {}) or {}
    local = _get(facts, "local", None) if hasattr(facts, "get") else None
    if local is None:
        local = _get(hostvars, "ansible_local", {})
    return local if hasattr(local, "items") else {}


def normalize(host, job, entry):
    """One registration, checked: the error names the host, the job and the file or fact it came from."""
    where = "scrape target of job %r on %s" % (job, host)
    if not is_string(job) or not JOB_NAME.match(job):
        raise AnsibleFilterError("%s: a job name must match %s" % (where, JOB_NAME.pattern))
    if not hasattr(entry, "items"):
        raise AnsibleFilterError("%s: must be a mapping, got %s" % (where, type(entry).__name__))
    port = entry.get("port")
    if isinstance(port, bool) or not isinstance(port, integer_types) and not (is_string(port) and port.isdigit()):
        raise AnsibleFilterError("%s: port must be an integer 1-65535, got %r" % (where, port))
    port = int(port)
    if not 0 < port < 65536:
        raise AnsibleFilterError("%s: port must be an integer 1-65535, got %r" % (where, port))
    scheme = entry.get("scheme") or "http"
    if scheme not in SCHEMES:
        raise AnsibleFilterError("%s: scheme must be http or https, got %r" % (where, scheme))
    path = entry.get("metrics_path") or "/metrics"
    if not is_string(path) or not path.startswith("/"):
        raise AnsibleFilterError("%s: metrics_path must start with /, got %r" % (where, path))
    role = entry.get("role")
    if not is_string(role) or not role:
        raise AnsibleFilterError("%s: role (the role that owns the job) must be a non-empty string" % where)
    client = entry.get("client") or {}
    if not hasattr(client, "items"):
        raise AnsibleFilterError("%s: client (the scrape settings Prometheus needs) must be a mapping" % where)
    for section, secrets in SECRET_KEYS.items():
        value = client.get(section)
        if value is not None and (not hasattr(value, "items") or set(value) & secrets):
            raise AnsibleFilterError(
                "%s: client.%s: a registration holds no secret (it is kept in a local fact file anyone on the host "
                "can read); register the user name only: the prometheus role keeps the password "
                "(prometheus_scrape_basic_auth_passwords)" % (where, section))
    return {"host": host, "job": job, "role": role, "port": port, "scheme": scheme, "metrics_path": path,
            "unit": entry.get("unit") or "", "info": dict(entry.get("info") or {}), "client": dict(client)}


# Client settings that must never be registered (the registration is a world-readable fact file).
SECRET_KEYS = {"basic_auth": {"password"}, "authorization": {"credentials"}, "oauth2": {"client_secret"}}


def host_registrations(host, hostvars):
    """job -> entry for one host: the local fact files, then this run's fact on top (null removes)."""
    out = {}
    for key, value in sorted(_local_facts(hostvars).items()):
        if is_string(key) and key.startswith(FACT_PREFIX) and value:
            out[key[len(FACT_PREFIX):]] = value
    run = _get(hostvars, RUN_FACT, {})
    if not hasattr(run, "items"):
        raise AnsibleFilterError("%s of %s must be a mapping job -> scrape target" % (RUN_FACT, host))
    for job, value in run.items():
        if value:
            out[job] = value
        else:
            out.pop(job, None)
    return dict((job, normalize(host, job, entry)) for job, entry in out.items())


def scrape_registrations(hosts, hostvars, role=None, address=True, render=False):
    if is_string(hosts) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError("scrape_registrations: the input must be a list of inventory host names")
    items = []
    for host in sorted(set(hosts)):
        try:
            hv = hostvars[host]
        except Exception:
            raise AnsibleFilterError("scrape_registrations: %s is not an inventory host" % host)
        for job, entry in host_registrations(host, hv).items():
            if role and entry["role"] != role:
                continue
            if address:
                a = scrape_address(hv, render=render)
                entry["address"] = "%s:%d" % ("[%s]" % a if ":" in a else a, entry["port"])
            items.append(entry)
    return sorted(items, key=lambda e: (e["job"], e["host"]))


class FilterModule(object):
    """Filters of aiplatform.observability for the scrape targets the roles register."""

    def filters(self):
        return {"scrape_registrations": scrape_registrations}
