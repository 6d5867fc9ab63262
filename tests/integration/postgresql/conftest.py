import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pgcluster import Cluster  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.fixture(scope="module")
def cluster():
    import psycopg2  # noqa: F401  (pip install psycopg2-binary; a missing driver is a failure, not a skip)
    pg = Cluster()
    try:
        pg.start()
    except Exception as err:  # show the server's own words
        pg.stop()
        raise RuntimeError("could not start the throwaway cluster: %s\n%s" % (err, pg.logtail())) from err
    yield pg
    pg.stop()


@pytest.fixture
def new_db(cluster, request):
    """A fresh database per test, named after the test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    cluster.query('CREATE DATABASE "%s"' % name)
    return name
