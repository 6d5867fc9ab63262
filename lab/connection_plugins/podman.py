# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see galaxy.yml)
"""The lab's and molecule's connection to their podman containers, with pipelining.

Found through connection_plugins in ansible.cfg (the lab and molecule use it; it is not part of the
collection). It takes the name `podman`, the name molecule's podman driver writes into its
inventory and testinfra understands, so that Ansible runs each module with one `podman exec -i`
(the module on stdin) instead of the five commands of containers.podman.podman, which cannot
pipeline (mount, mkdir, chmod, run, rm). Files are copied with `podman cp`.
"""
from __future__ import annotations

DOCUMENTATION = """
name: podman
short_description: Run tasks in podman containers, one podman exec per module (pipelining)
description:
  - Runs commands in an existing podman container with C(podman exec -i), so that Ansible pipelines
    modules over stdin, and copies files with C(podman cp).
  - Used by the collection's podman lab and molecule scenarios through ansible.cfg.
author: aiplatform.observability maintainers
options:
  remote_addr:
    description: The container's name or ID.
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  remote_user:
    description: The user commands run as inside the container (default the image's).
    vars:
      - name: ansible_user
  podman_executable:
    description: The podman binary.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
"""

import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.process import get_bin_path
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = "podman"
    has_pipelining = True

    def _podman(self, args, in_data=None):
        try:
            binary = get_bin_path(self.get_option("podman_executable"))
        except ValueError as exc:
            raise AnsibleError("podman: %s" % exc)
        argv = [to_bytes(a, errors="surrogate_or_strict") for a in [binary] + list(args)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def _connect(self):
        super(Connection, self)._connect()
        self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec"]
        if in_data is not None:
            args.append("-i")
        user = self.get_option("remote_user")
        if user:
            args.extend(["--user", user])
        args.append(self.get_option("remote_addr"))
        args.extend(shlex.split(to_native(cmd, errors="surrogate_or_strict")))
        return self._podman(args, in_data)

    def _copy(self, source, destination, what):
        rc, stdout, stderr = self._podman(["cp", source, destination])
        if rc != 0:
            raise AnsibleConnectionFailure("podman cp %s (%s -> %s): %s" % (
                what, source, destination, to_native(stderr).strip()))

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        self._copy(in_path, "%s:%s" % (self.get_option("remote_addr"), out_path), "to the container")

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        self._copy("%s:%s" % (self.get_option("remote_addr"), in_path), out_path, "from the container")

    def close(self):
        super(Connection, self).close()
        self._connected = False
