"""`_url` fetching refuses internal addresses (SSRF), on the first hop and on every redirect."""
from __future__ import annotations

import http.server
import threading

import pytest

from lookalike.errors import BadRequest
from lookalike.ingest.fetch import UrlPolicy, fetch_url

pytestmark = pytest.mark.no_url_allow


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.jpg", "http://localhost:8000/a.jpg", "http://10.1.2.3/a.jpg", "http://192.168.0.10/x.png",
    "http://172.16.5.5/x.png", "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.jpg",
    "http://[fe80::1]/a.jpg", "http://0.0.0.0/a.jpg", "http://[::ffff:127.0.0.1]/a.jpg", "http://224.0.0.1/a.jpg",
])
def test_internal_addresses_are_refused(url):
    with pytest.raises(BadRequest, match="non-public address"):
        fetch_url(url, retries=0)


@pytest.mark.parametrize("url,needle", [
    ("ftp://example.com/a.jpg", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("http://no-such-host.invalid/a.jpg", "cannot resolve host"),
])
def test_other_schemes_and_unknown_hosts(url, needle):
    with pytest.raises(BadRequest, match=needle):
        fetch_url(url, retries=0)


def test_allow_list():
    policy = UrlPolicy("127.0.0.0/8, images.internal")
    assert policy.resolve("http://127.0.0.1:9/a.jpg")[1] == "127.0.0.1"
    assert not UrlPolicy("").allowed("x", __import__("ipaddress").ip_address("10.0.0.1"))
    assert UrlPolicy("images.internal").allowed("images.internal", __import__("ipaddress").ip_address("10.0.0.1"))
    assert UrlPolicy("*").allowed("x", __import__("ipaddress").ip_address("127.0.0.1"))


def test_redirect_to_internal_address_is_refused():
    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        # the first hop is allowed explicitly; the redirect target must still be refused
        with pytest.raises(BadRequest, match="169.254.169.254"):
            fetch_url(f"http://127.0.0.1:{httpd.server_port}/img.jpg", policy=UrlPolicy("127.0.0.1"), retries=0)
    finally:
        httpd.shutdown()


def test_record_with_internal_url_fails_alone(db):
    col = db.collection("u", create=True)
    res = col.upsert([{"_id": "meta", "_url": "http://169.254.169.254/latest/meta-data/iam"}])
    assert res[0]["status"] == "error" and "non-public address" in res[0]["error"]
    assert col.count() == 0


@pytest.mark.parametrize("address", [
    "2002:7f00:1::1",            # 6to4 wrapping 127.0.0.1
    "2002:a00:1::1",             # 6to4 wrapping 10.0.0.1
    "2002:a9fe:a9fe::1",         # 6to4 wrapping 169.254.169.254
    "fec0::1",                   # site-local
    "::ffff:10.0.0.1",           # IPv4-mapped
    "::10.0.0.1",                # IPv4-compatible
    "::127.0.0.1",
    "64:ff9b::a9fe:a9fe",        # NAT64 wrapping 169.254.169.254
    "64:ff9b::7f00:1",           # NAT64 wrapping 127.0.0.1
    "64:ff9b:1::a00:1",          # local-use NAT64
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1 (obfuscated)
    "fc00::1", "fd12:3456::1",   # unique local
])
def test_ipv6_forms_of_internal_addresses_are_refused(address):
    import ipaddress
    assert not UrlPolicy("").allowed("x", ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b::808:808", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_and_their_ipv6_forms_pass(address):
    import ipaddress
    assert UrlPolicy("").allowed("x", ipaddress.ip_address(address))


def test_refusals_read_the_same_and_do_not_name_the_resolved_address(monkeypatch):
    """A host name that resolves inside must not tell the caller which internal address it got."""
    import socket

    def fake(host, port, *a, **k):
        table = {"a.example": "10.1.2.3", "b.example": "192.168.7.7"}
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    messages = []
    for host in ("a.example", "b.example"):
        with pytest.raises(BadRequest) as info:
            fetch_url(f"http://{host}/x.jpg", retries=0, policy=UrlPolicy(""))
        messages.append(info.value.message.replace(host, "HOST"))
    assert messages[0] == messages[1]
    assert "10.1.2.3" not in messages[0] and "192.168" not in messages[1]
