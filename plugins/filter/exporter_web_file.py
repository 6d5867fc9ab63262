# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: exporter_web_file
author: aiplatform.observability maintainers
version_added: "0.3.0"
short_description: The web config file of an exporter, from the result of exporter_web
description:
  - Returns the exporter-toolkit web config (C(tls_server_config), C(basic_auth_users)) an exporter role writes
    for the result of the filter C(exporter_web), with the users' bcrypt hashes (filter C(web_basic_auth_hashes)).
  - Kept apart from C(exporter_web) so the hashes (bcrypt, deliberately slow) are computed only by the task that
    writes the file.
options:
  _input:
    description: The result of C(exporter_web).
    type: dict
    required: true
  hashes:
    description: User name -> bcrypt hash; required when basic auth is on.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Write the web config
  ansible.builtin.copy:
    content: >-
      {{ web | aiplatform.observability.exporter_web_file(users | aiplatform.observability.web_basic_auth_hashes)
         | to_nice_yaml }}
    dest: /etc/aiplatform-exporters/credentials/web-config.yml
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The web config, a mapping.
  type: dict
"""

from ansible.errors import AnsibleFilterError


def exporter_web_file(web, hashes=None):
    if not isinstance(web, dict) or "tls_server_config" not in web:
        raise AnsibleFilterError("exporter_web_file: the input must be the result of the filter exporter_web")
    out = {}
    if web.get("tls"):
        out["tls_server_config"] = dict(web["tls_server_config"])
    if web.get("auth"):
        if not hashes:
            raise AnsibleFilterError("exporter_web_file: basic auth is on: give the users' hashes (web_basic_auth_hashes)")
        out["basic_auth_users"] = dict(sorted(hashes.items()))
    return out


class FilterModule(object):
    """Filters of aiplatform.observability for the exporters' TLS and basic auth."""

    def filters(self):
        return {"exporter_web_file": exporter_web_file}
