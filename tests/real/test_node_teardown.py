"""Teardown of the real node leaves nothing behind, also when its start fails halfway.

Runs before test_real_node.py (file order) because one real node per machine can run:
this test brings up its own cluster, before the session's `real_cluster` exists."""

from __future__ import annotations

import pytest

from tests.cluster import harness, realnode

pytestmark = pytest.mark.real


def test_a_start_that_fails_halfway_leaves_nothing_behind(tmp_path):
    bin = harness.ensure_binaries()
    try:
        realnode.preflight(bin)
    except realnode.RealNodeMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    # The image import fails after the netns, veth, routes, cgroups and containerd exist.
    missing = tmp_path / "no-such-image.tar"
    cluster = harness.Cluster(tmp_path / "cluster", bin, real_node=True, images=[missing])
    with pytest.raises(RuntimeError) as failed:
        cluster.up(timeout=300)
    assert str(missing) in str(failed.value), failed.value  # the import, not the teardown
    assert cluster.node.leftovers() == []
    assert not cluster.workdir.exists()
