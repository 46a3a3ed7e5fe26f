"""The README's quick start, run verbatim through the `lookalike` command in a temporary
folder with relative paths: every line exits 0 and prints what it promises."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.sample import COLORS, draw_item
from lookalike.testing.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("stripes", "dots")


def code_blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def quick_start_lines() -> list[str]:
    lines = [line.strip() for line in code_blocks("bash")[0].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]



@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """What the quick start assumes: ./photos, catalog.jsonl (with sku-123), query.jpg, a.jpg,
    and a `lookalike` command on the PATH that runs this checkout's console entry point."""
    root = tmp_path_factory.mktemp("readme")
    (root / "photos" / "shirts").mkdir(parents=True)
    (root / "img").mkdir()
    lines = []
    seed = 7
    for p, pattern in enumerate(PATTERNS):
        for i, color in enumerate(["red", "blue", "green", "orange"]):
            for shape in ("square", "circle"):
                seed += 1
                image = draw_item(pattern, COLORS[color], seed=seed, size=224, shape=shape)
                sku = f"sku-{100 + len(lines)}" if lines or (pattern, color) != ("stripes", "red") else "sku-123"
                image.save(root / "img" / f"{sku}.jpg", quality=90)
                lines.append({"_id": sku, "_file": f"img/{sku}.jpg", "product_id": f"{pattern}-{color}",
                              "price": 20 + 10 * i + p, "pattern": pattern})
                if shape == "square":
                    image.save(root / "photos" / ("shirts" if i % 2 else ".") / f"{pattern}-{color}.jpg")
    (root / "catalog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    draw_item("stripes", COLORS["red"], seed=999, size=300, shape="circle").save(root / "query.jpg")
    draw_item("dots", COLORS["blue"], seed=998, size=224, shape="square").save(root / "a.jpg")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    script = bin_dir / "lookalike"  # what `pip install` writes for [project.scripts], for this checkout
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom lookalike.cli import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return root


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_DATA"}
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["COLUMNS"] = "100"
    return env


def check_output(command: str, out: str) -> None:
    """What each kind of line must print (real results, not just exit 0)."""
    argv = shlex.split(command, comments=True)
    verb = argv[1]
    if verb == "ingest":
        assert re.search(r"^\d+ records in .*: [1-9]\d* inserted, 0 updated, 0 unchanged, 0 error", out, re.M), out
    elif verb in ("search", "recommend") and "--json" in argv:
        hits = json.loads(out)["hits"]
        assert hits and all(h["_id"] != "sku-123" for h in hits) and len({h["_group"] for h in hits}) == len(hits)
    elif verb in ("search", "recommend"):
        assert re.search(r"^[1-9]\d* hits in [\d.]+ ms$", out, re.M) and "sku-123" not in out, out
        if "--filter" in argv:
            assert "price=" in out and not re.search(r"price=([5-9]\d|\d{3,})", out), out
    elif verb == "info":
        assert re.search(r"^records\s+16$", out, re.M), out
    elif verb == "export":
        assert out == ""  # the records went to the file; the count went to stderr
    elif verb == "get":
        assert json.loads(out)["_id"] == "sku-123"
    elif verb == "delete":
        assert out.strip() == "deleted 1"
    else:
        raise AssertionError(f"no check for {command!r}")


def test_quick_start_verbatim(workdir):
    env = env_for(workdir)
    lines = quick_start_lines()
    assert len(lines) >= 7
    served = [line for line in lines if shlex.split(line, comments=True)[1] == "serve"]
    assert len(served) == 1
    for line in lines:
        if line in served:
            continue
        for command in line.split(" ; "):
            proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr, (command, proc.stderr)
            check_output(command, proc.stdout)
    exported = [json.loads(x) for x in (workdir / "shoes-export.jsonl").read_text().splitlines()]
    assert len(exported) == 16 and all(len(r["_vector"]) > 100 for r in exported)

    # serve: the same line, in the background on a free port (the only substitution), then stopped
    port = free_port()
    command = shlex.split(served[0], comments=True) + ["--port", str(port)]
    server = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/v1/collections", timeout=5).json()
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.5)
        counts = {c["name"]: c["count"] for c in body["collections"]}
        assert counts == {"photos": 8, "shoes": 15}  # 16 ingested, sku-123 deleted
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_python_quick_start_verbatim(workdir):
    env = env_for(workdir)
    code = code_blocks("python")[0]
    check = "\nimport json\nprint(json.dumps({'count': col.count(), 'a': col.get('a')['_id'], "\
            "'hits': len(col.search({'id': 'a'}, k=10, filter={'price': {'$lt': 20}})['hits'])}))\n"
    proc = subprocess.run([sys.executable, "-c", code + check], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["a"] == "a" and result["count"] >= 1
