# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: scrape_configs
author: aiplatform.observability maintainers
version_added: "0.2.0"
short_description: Prometheus scrape_configs from the scrape targets the roles registered
description:
  - Takes the output of the filter C(scrape_registrations) and returns one Prometheus scrape job per registered
    job name, sorted by name, with one static target group per host (C(instance) is the inventory host name).
  - A job's C(scheme), C(metrics_path) and client settings (C(tls_config), C(basic_auth), ...) are job-wide in
    Prometheus, so hosts that register the same job with different ones are an error naming the job and the hosts.
  - O(client) adds the settings Prometheus itself holds for the jobs of one role (for example the credentials
    Prometheus sends to the Alertmanagers); a role's own C(client) entries come first, O(client) wins.
  - O(reserved) names the jobs the user defines elsewhere (prometheus_platform_services); one that is also a
    registered job is an error naming the variable and the role that owns the job.
options:
  _input:
    description: The list that C(scrape_registrations) returns (with addresses).
    type: list
    elements: dict
    required: true
  client:
    description: Role name -> scrape settings added to that role's jobs.
    type: dict
    default: {}
  reserved:
    description: Variable name -> the job names the user defines in it.
    type: dict
    default: {}
  password_dir:
    description:
      - Directory on the Prometheus host holding one password file per job, C(<password_dir>/<job>.password).
        A job registered with C(basic_auth) (a user name only, registrations hold no secret) gets
        C(password_file) there; empty leaves such jobs as they are.
    type: str
    default: ''
  keep:
    description: The scrape_configs of the configuration in place (C(prometheus.yml) read from the host).
    type: list
    elements: dict
    default: []
  keep_hosts:
    description:
      - Hosts whose registrations could not be read in this run (unreachable). Their target groups in O(keep)
        are kept as they are, so a node that is down stays a target (and C(TargetDown) fires) instead of
        disappearing from the configuration.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: The registered jobs
  ansible.builtin.debug:
    msg: "{{ groups['all'] | aiplatform.observability.scrape_registrations(hostvars)
             | aiplatform.observability.scrape_configs }}"
"""

RETURN = r"""
_value:
  description: Prometheus scrape_configs entries.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

DEFAULTS = {"scheme": "http", "metrics_path": "/metrics"}


def _kept(keep, keep_hosts, registered_hosts):
    """(job, target group) of `keep` whose instance is an unreachable host without a registration now."""
    hosts = set(keep_hosts or ()) - registered_hosts
    for job in keep or ():
        for group in (job or {}).get("static_configs") or ():
            if ((group or {}).get("labels") or {}).get("instance") in hosts:
                yield job, group


def _with_password_file(settings, job, password_dir):
    auth = settings.get("basic_auth")
    if password_dir and isinstance(auth, dict) and "password" not in auth and "password_file" not in auth:
        settings["basic_auth"] = dict(auth, password_file="%s/%s.password" % (password_dir.rstrip("/"), job))
    return settings


def scrape_configs(registrations, client=None, reserved=None, keep=None, keep_hosts=None, password_dir=""):
    client = client or {}
    reserved = reserved or {}
    jobs, owners = {}, {}
    registrations = list(registrations)
    for entry in registrations:
        try:
            job, host, address = entry["job"], entry["host"], entry["address"]
        except (KeyError, TypeError):
            raise AnsibleFilterError("scrape_configs: the input must come from scrape_registrations (with addresses)")
        settings = {"scheme": entry.get("scheme", "http"), "metrics_path": entry.get("metrics_path", "/metrics")}
        settings.update(entry.get("client") or {})
        settings.update(client.get(entry.get("role"), {}) or {})
        settings = _with_password_file(settings, job, password_dir)
        if job in jobs:
            first_host, first = owners[job]
            if settings != first:
                differ = sorted(k for k in set(first) | set(settings) if first.get(k) != settings.get(k))
                raise AnsibleFilterError(
                    "job %s: hosts %s and %s register it with different %s; Prometheus scrapes a job with one "
                    "scheme and one set of client settings: give every host of the job the same ones."
                    % (job, first_host, host, ", ".join(differ)))
        else:
            owners[job] = (host, settings)
            jobs[job] = {"job_name": job, "role": entry.get("role"), "settings": settings, "static_configs": []}
        jobs[job]["static_configs"].append({"targets": [address], "labels": {"instance": host}})
    for job, group in _kept(keep, keep_hosts, set(e["host"] for e in registrations)):
        name = job.get("job_name")
        if name in jobs:
            jobs[name]["static_configs"].append(group)
        elif name:
            settings = dict((k, v) for k, v in job.items() if k not in ("job_name", "static_configs"))
            jobs[name] = {"job_name": name, "role": "(kept)", "settings": settings, "static_configs": [group]}
    for variable, names in sorted(reserved.items()):
        for name in names or ():
            if name in jobs:
                raise AnsibleFilterError(
                    "%s: job name %r is the job of role %s (registered on %s); choose another name."
                    % (variable, name, jobs[name]["role"], ", ".join(
                        sc["labels"]["instance"] for sc in jobs[name]["static_configs"])))
    out = []
    for name in sorted(jobs):
        job = {"job_name": name}
        for key, value in sorted(jobs[name]["settings"].items()):
            if DEFAULTS.get(key) != value:
                job[key] = value
        job["static_configs"] = sorted(jobs[name]["static_configs"], key=lambda g: g["labels"]["instance"])
        out.append(job)
    return out


class FilterModule(object):
    """Filters of aiplatform.observability for Prometheus' configuration."""

    def filters(self):
        return {"scrape_configs": scrape_configs}
