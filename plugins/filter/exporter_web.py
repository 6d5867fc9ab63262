# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
name: exporter_web
author: aiplatform.observability maintainers
version_added: "0.3.0"
short_description: TLS and basic auth of an exporter role, from its web variables
description:
  - Takes the prefix of an exporter role (C(platform_exporters), C(gpu_exporter)) and that role's web variables
    (C(<prefix>_web_basic_auth_users), C(<prefix>_web_tls_cert_file), C(<prefix>_web_tls_key_file),
    C(<prefix>_web_scrape_user), C(<prefix>_web_scrape_tls_config)) and returns what the role's tasks and
    templates need; a wrong value is an error naming the variable and the rule.
  - The service reads its web config (exporter-toolkit format) and the TLS certificate and key as systemd
    credentials (C(LoadCredential=)), so every file can stay root-only on disk; the web config names the
    certificate and key by their credential names, which exporter-toolkit and the collection's exporters read
    relative to the web config's directory, the service's credentials directory (C(%d)).
  - The registration (C(scheme), C(client)) tells Prometheus how to scrape the exporter; it holds the scrape user
    name, never a password (the prometheus role keeps that in C(prometheus_scrape_basic_auth_passwords)).
options:
  _input:
    description: The role's variable prefix.
    type: str
    required: true
  users:
    description: User name -> password.
    type: dict
    default: {}
  cert_file:
    description: TLS certificate on the exporter's host; empty for plain HTTP.
    type: str
    default: ''
  key_file:
    description: TLS private key on the exporter's host.
    type: str
    default: ''
  scrape_user:
    description: The user Prometheus scrapes with; empty for the first user by name.
    type: str
    default: ''
  scrape_tls_config:
    description: Prometheus' tls_config for the exporter (paths on the Prometheus host).
    type: dict
    default: {}
  config_file:
    description: Where the role writes the web config on the exporter's host (root-only).
    type: str
    default: ''
"""

EXAMPLES = r"""
- name: The web settings of the platform exporters
  ansible.builtin.debug:
    msg: >-
      {{ 'platform_exporters' | aiplatform.observability.exporter_web(users=platform_exporters_web_basic_auth_users,
         cert_file=platform_exporters_web_tls_cert_file, key_file=platform_exporters_web_tls_key_file) }}
"""

RETURN = r"""
_value:
  description:
    - C(enabled), C(tls), C(auth) (booleans), C(cert_file), C(key_file), C(scheme) (http or https), C(client) (Prometheus' scrape settings
      without secrets), C(scrape_user), C(scrape_password) (for the role's own probe; do not log it),
      C(load_credentials) (the C(LoadCredential=) values of the unit) and C(flag) (the command-line option naming
      the web config in the credentials directory), C(tls_server_config) (that part of the web config; the filter
      C(exporter_web_file) gives the whole file).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_string

# The names the web config gives the certificate and key: the credential names in the unit.
CERT_CREDENTIAL = "web_tls_cert"
KEY_CREDENTIAL = "web_tls_key"
CONFIG_CREDENTIAL = "web_config"


def _text(value):
    return "" if value is None else value


def exporter_web(prefix, users=None, cert_file="", key_file="", scrape_user="", scrape_tls_config=None,
                 config_file=""):
    users = users if users is not None else {}
    cert_file, key_file, scrape_user = _text(cert_file), _text(key_file), _text(scrape_user)
    scrape_tls_config = scrape_tls_config if scrape_tls_config is not None else {}
    if not isinstance(users, dict):
        raise AnsibleFilterError("%s_web_basic_auth_users: must be a mapping of user name to password" % prefix)
    for name, password in users.items():
        if not is_string(name) or not name or ":" in name:
            raise AnsibleFilterError("%s_web_basic_auth_users: user %r: must be a non-empty string without ':'"
                                     % (prefix, name))
        if not is_string(password) or not password:
            # never echo the value: it is a password
            raise AnsibleFilterError("%s_web_basic_auth_users: user %s has no password (empty or not a string)"
                                     % (prefix, name))
    for var, value in (("tls_cert_file", cert_file), ("tls_key_file", key_file), ("scrape_user", scrape_user)):
        if not is_string(value):
            raise AnsibleFilterError("%s_web_%s: must be a string" % (prefix, var))
    if bool(cert_file) != bool(key_file):
        raise AnsibleFilterError("%s_web_tls_cert_file and %s_web_tls_key_file: give both or neither"
                                 % (prefix, prefix))
    for var, value in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        if value and not value.startswith("/"):
            raise AnsibleFilterError("%s_web_%s: must be an absolute path on the exporter's host, got %s"
                                     % (prefix, var, value))
    if not isinstance(scrape_tls_config, dict):
        raise AnsibleFilterError("%s_web_scrape_tls_config: must be a mapping (Prometheus' tls_config)" % prefix)
    if scrape_tls_config and not cert_file:
        raise AnsibleFilterError("%s_web_scrape_tls_config: set only with %s_web_tls_cert_file (the exporter serves "
                                 "plain HTTP without it)" % (prefix, prefix))
    if scrape_user and scrape_user not in users:
        raise AnsibleFilterError("%s_web_scrape_user: %s is not a user of %s_web_basic_auth_users"
                                 % (prefix, scrape_user, prefix))
    tls, auth = bool(cert_file), bool(users)
    user = (scrape_user or sorted(users)[0]) if auth else ""
    client = {}
    if tls and scrape_tls_config:
        client["tls_config"] = dict(scrape_tls_config)
    if auth:
        client["basic_auth"] = {"username": user}
    credentials = []
    if tls or auth:
        if not config_file:
            raise AnsibleFilterError("exporter_web: config_file is required when %s has TLS or basic auth" % prefix)
        credentials.append("%s:%s" % (CONFIG_CREDENTIAL, config_file))
    if tls:
        credentials += ["%s:%s" % (CERT_CREDENTIAL, cert_file), "%s:%s" % (KEY_CREDENTIAL, key_file)]
    return {
        "enabled": tls or auth,
        "tls": tls,
        "auth": auth,
        "cert_file": cert_file,
        "key_file": key_file,
        "scheme": "https" if tls else "http",
        "client": client,
        "scrape_user": user,
        "scrape_password": users.get(user, "") if auth else "",
        "load_credentials": credentials,
        "flag": "--web-config-file=%%d/%s" % CONFIG_CREDENTIAL if tls or auth else "",
        "tls_server_config": ({"cert_file": CERT_CREDENTIAL, "key_file": KEY_CREDENTIAL, "min_version": "TLS12"}
                              if tls else {}),
    }


class FilterModule(object):
    """Filters of aiplatform.observability for the exporters' TLS and basic auth."""

    def filters(self):
        return {"exporter_web": exporter_web}
