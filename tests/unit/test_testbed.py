"""The test bed's image cache keys (rebuild exactly when an input changes), its alert sink's address and certificate."""

from __future__ import annotations

import json
import shutil
import ssl

import pytest

import testbed


def test_context_hash_is_stable_and_tracks_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    first = testbed.context_hash(tmp_path, "sha256:aaa")
    assert testbed.context_hash(tmp_path, "sha256:aaa") == first
    assert testbed.context_hash(tmp_path, "sha256:bbb") != first  # new base image
    (tmp_path / "extra.conf").write_text("x\n")
    second = testbed.context_hash(tmp_path, "sha256:aaa")
    assert second != first
    (tmp_path / "extra.conf").write_text("y\n")
    assert testbed.context_hash(tmp_path, "sha256:aaa") != second


def test_base_hash_tracks_the_recipe(monkeypatch):
    first = testbed.base_hash()
    monkeypatch.setattr(testbed, "BASE_PACKAGES", [*testbed.BASE_PACKAGES, "curl"])
    assert testbed.base_hash() != first


def test_image_names():
    assert testbed.image_name(testbed.IMAGES_DIR / "server") == "rpa-testbed/server:latest"


# ------------------------------------------------------------------ alert sink
# `docker network inspect bridge` on Docker 20.10 (the CI engine), trimmed.
BRIDGE_20_10 = """[{"Name": "bridge", "Driver": "bridge", "EnableIPv6": false,
  "IPAM": {"Driver": "default", "Options": null, "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
  "Options": {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": "docker0"}}]"""


def test_bridge_gateway():
    assert testbed.bridge_gateway(BRIDGE_20_10) == "172.17.0.1"
    # IPv6 first, a configured bip, and an engine that leaves Gateway out (Docker then uses the first host).
    assert testbed.bridge_gateway(json.dumps([{"IPAM": {"Config": [
        {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"}, {"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.254"}]}}])
    ) == "10.99.0.254"
    assert testbed.bridge_gateway(json.dumps([{"IPAM": {"Config": [{"Subnet": "192.168.5.0/24"}]}}])) == "192.168.5.1"
    with pytest.raises(testbed.TestbedError):
        testbed.bridge_gateway(json.dumps([{"IPAM": {"Config": []}}]))


# `openssl x509 -noout -enddate -ext subjectAltName` (OpenSSL 3.0) of a sink certificate.
X509_TEXT = """notAfter=Mar  4 19:47:11 2029 GMT
X509v3 Subject Alternative Name: \n    IP Address:172.17.0.1, DNS:alert-sink.test
"""


def test_cert_facts():
    sans, not_after = testbed.cert_facts(X509_TEXT)
    assert sans == {"IP:172.17.0.1", "DNS:alert-sink.test"}
    assert not_after == ssl.cert_time_to_seconds("Mar  4 19:47:11 2029 GMT")
    assert testbed.cert_facts("notAfter=Mar  4 19:47:11 2029 GMT\n")[0] == set()


def test_cert_renewal_reason():
    sans, not_after = testbed.cert_facts(X509_TEXT)
    now = not_after - 400 * 86400

    def reason(address="172.17.0.1", *, names=sans, end=not_after, at=now, verified=True, key_matches=True):
        return testbed.cert_renewal_reason(names, end, address, at, verified=verified, key_matches=key_matches)

    assert reason() is None
    assert "172.18.0.1" in reason("172.18.0.1")  # the bridge moved: a new address
    assert reason(names={"IP:172.17.0.1"}) == "alert-sink.test is not among its names"
    assert reason(at=not_after - 29 * 86400) == "it expires soon"
    assert reason(end=None) == "it expires soon"
    assert reason(verified=False) == "not signed by the current CA"
    assert reason(key_matches=False) == "key and certificate do not match"


def _handshake(server_ctx, client_ctx, server_hostname):
    """A TLS handshake in memory; raises what the client's verification raises."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = set()
    for _ in range(10):
        for side, obj, out, peer in (("client", client, c_out, s_in), ("server", server, s_out, c_in)):
            if side not in done:
                try:
                    obj.do_handshake()
                    done.add(side)
                except ssl.SSLWantReadError:
                    pass
            peer.write(out.read())
        if len(done) == 2:
            return
    raise AssertionError("the handshake did not finish")


def test_sink_certs_are_made_once_renewed_on_a_new_address_and_verify_strictly(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed on the controller (testbed.py prereqs installs it)")
    testbed.ensure_sink_certs(tmp_path, "172.17.0.1")
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "sink.key").stat().st_mode & 0o777 == 0o600
    first = {name: (tmp_path / name).read_bytes() for name in ("ca.pem", "ca.key", "sink.pem", "sink.key")}
    testbed.ensure_sink_certs(tmp_path, "172.17.0.1")
    assert {name: (tmp_path / name).read_bytes() for name in first} == first  # current: untouched

    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "sink.pem", tmp_path / "sink.key")
    client = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default, as in the test images
    _handshake(server, client, "172.17.0.1")
    _handshake(server, client, "alert-sink.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "172.18.0.1")

    testbed.ensure_sink_certs(tmp_path, "172.18.0.1")  # the bridge moved
    assert (tmp_path / "ca.pem").read_bytes() == first["ca.pem"]  # same CA, new certificate
    assert (tmp_path / "sink.pem").read_bytes() != first["sink.pem"]
    server.load_cert_chain(tmp_path / "sink.pem", tmp_path / "sink.key")
    _handshake(server, client, "172.18.0.1")
