"""Prometheus exporters and instrumentation for the AI platform.

Importing the package itself is cheap: it pulls in neither numpy, psycopg nor
pynvml, so the GPU exporter and the instrumentation library run with only
prometheus-client installed.
"""

__version__ = "0.1.0"
