"""Hostile and malformed requests, by group, each with the answer modelport documents for it."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}]}


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    method: str
    path: str
    status: int
    code: str | set[str] | None = None  # management error code(s); None for V2 ``{"error": "..."}``
    body: bytes | Callable[[dict[str, Any]], bytes] | None = None
    json: Any = None
    headers: dict[str, str] | Callable[[dict[str, Any]], dict[str, str]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    repeat: int = 1  # send this many times; the last answer is checked


def v2(name: str, body: bytes | None = None, status: int = 400, **kw: Any) -> Case:
    return Case("api input", name, "POST", "/v2/models/iris/infer", status, None, body=body, **kw)


def tensor(**changes: Any) -> bytes:
    spec = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]} | changes
    return orjson.dumps({"inputs": [spec]})


def zipped(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tarred(kind: bytes, name: str = "model.onnx", link: str = "/etc/passwd") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        if kind == tarfile.CHRTYPE:
            info.devmajor, info.devminor = 1, 3
        tf.addfile(info)
    return buf.getvalue()


def push(name: str, body: bytes | Callable[[dict[str, Any]], bytes], status: int, code: str | set[str] | None,
         model: str = "upload", **kw: Any) -> Case:  # fmt: skip
    return Case(
        "artifact upload", name, "POST", f"/api/v1/models/{model}/versions", status, code, body=body, **kw
    )


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, ("open('/tmp/modelport-pwned', 'w').write('pwned')",))


def nested(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"


def onnx_outside(ctx: dict[str, Any]) -> bytes:
    return ctx["onnx_outside"]  # type: ignore[no-any-return]


def key(name: str) -> Callable[[dict[str, Any]], dict[str, str]]:
    return lambda ctx: {"Authorization": f"Bearer {ctx['keys'][name]}"}


CASES: list[Case] = [
    # ---- API input ---------------------------------------------------------------------------
    v2("malformed json", b"{not json"),
    v2("json array", b"[]"),
    v2("empty inputs", b'{"inputs": []}'),
    v2(
        "missing datatype",
        orjson.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "data": [1, 2, 3, 4]}]}),
    ),
    v2("unknown datatype", tensor(datatype="FP99")),
    v2("too few elements", tensor(data=[1, 2, 3])),
    v2("wrong width", tensor(shape=[1, 5], data=[1, 2, 3, 4, 5])),
    v2("wrong rank", tensor(shape=[4])),
    v2("strings for numbers", tensor(data=["a", "b", "c", "d"])),
    v2("bytes for a numeric input", tensor(datatype="BYTES", data=["a", "b", "c", "d"])),
    v2("unknown input", tensor(name="other")),
    v2("duplicate input", orjson.dumps({"inputs": [orjson.loads(tensor())["inputs"][0]] * 2})),
    v2("negative dimension", tensor(shape=[1, -4])),
    v2(
        "NaN literal",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [NaN, 1, 2, 3]}]}',
    ),
    v2(
        "Infinity literal",
        b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [Infinity,1,2,3]}]}',
    ),
    v2("zero rows", tensor(shape=[0, 4], data=[])),
    v2("nine dimensions", tensor(shape=[1] * 9, data=[1])),
    v2("fractional dimension", tensor(shape=[1.5, 4])),
    v2("boolean dimension", tensor(shape=[True, 4])),
    v2("id not a string", orjson.dumps({**orjson.loads(tensor()), "id": 7})),
    v2("parameters not an object", orjson.dumps({**orjson.loads(tensor()), "parameters": []})),
    v2("outputs not a list", orjson.dumps({**orjson.loads(tensor()), "outputs": {"name": "predict"}})),
    v2("unknown output", orjson.dumps({**orjson.loads(tensor()), "outputs": [{"name": "nope"}]})),
    v2("header length past the body", b"{}", headers={"Inference-Header-Content-Length": "999"}),
    v2("header length not a number", tensor(), headers={"Inference-Header-Content-Length": "12a"}),
    v2(
        "binary size past the body",
        orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "parameters": {"binary_data_size": 32},
                    }
                ]
            }
        )
        + b"\0" * 8,
        headers={"Inference-Header-Content-Length": "105"},
    ),
    v2(
        "unclaimed binary data",
        tensor() + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(tensor()))},
    ),
    v2("unknown content encoding", tensor(), headers={"Content-Encoding": "br"}),
    v2("broken gzip", b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"}),
    v2(
        "gzip bomb", gzip.compress(b" " * (3 * 1024 * 1024)), status=413, headers={"Content-Encoding": "gzip"}
    ),
    v2("nesting 5000 deep", nested(5000)),
    v2("a billion squared elements", tensor(shape=[10**9, 10**9], data=[])),
    v2("body over the limit", b" " * (2 * 1024 * 1024 + 1), status=413),
    v2("headers over the limit", tensor(), status=431, headers={"X-Pad": "a" * 20_000}),
    Case(
        "api input",
        "alias version not a number",
        "PUT",
        "/api/v1/models/iris/aliases/staging",
        400,
        "invalid_input",
        json={"version": "x"},
    ),
    Case(
        "api input",
        "alias body not json",
        "PUT",
        "/api/v1/models/iris/aliases/staging",
        400,
        "invalid_input",
        body=b"{oops",
    ),
    Case(
        "api input",
        "alias version zero",
        "PUT",
        "/api/v1/models/iris/aliases/staging",
        400,
        "invalid_input",
        json={"version": 0},
    ),
    Case(
        "api input", "version not a number", "GET", "/api/v1/models/iris/versions/abc", 400, "invalid_input"
    ),
    Case(
        "api input", "audit limit zero", "GET", "/api/v1/audit", 400, "invalid_input", params={"limit": "0"}
    ),
    Case(
        "api input",
        "key without scopes",
        "POST",
        "/api/v1/keys",
        400,
        "invalid_input",
        json={"name": "k", "scopes": []},
    ),
    Case(
        "api input",
        "key with unknown scope",
        "POST",
        "/api/v1/keys",
        400,
        "invalid_input",
        json={"name": "k", "scopes": ["root"]},
    ),
    Case(
        "api input",
        "batch size zero",
        "PUT",
        "/api/v1/models/iris/versions/1/config",
        400,
        "invalid_input",
        json={"batching": {"max_batch_size": 0}},
    ),
    # ---- artifact upload ---------------------------------------------------------------------
    push("pickle", pickle.dumps(Evil()), 400, "unsafe_format"),
    push("joblib (gzip pickle)", gzip.compress(pickle.dumps(Evil())), 400, "unsafe_format"),
    push("torch-style zip", zipped({"archive/data.pkl": pickle.dumps(Evil())}), 400, "unsafe_format"),
    push(
        "pickle inside an archive",
        zipped({"m.onnx": b"\x08\x07\x12\x00", "x/state.pkl": pickle.dumps(1)}),
        400,
        "unsafe_format",
    ),
    push("zip with ../", zipped({"../../tmp/modelport-escape": b"x"}), 400, "unsafe_archive"),
    push("zip with absolute name", zipped({"/tmp/modelport-abs": b"x"}), 400, "unsafe_archive"),
    push("tar symlink", tarred(tarfile.SYMTYPE), 400, "unsafe_archive"),
    push("tar hard link", tarred(tarfile.LNKTYPE), 400, "unsafe_archive"),
    push("tar device", tarred(tarfile.CHRTYPE), 400, "unsafe_archive"),
    push("tar fifo", tarred(tarfile.FIFOTYPE), 400, "unsafe_archive"),
    push("too many entries", zipped({f"f{i}": b"x" for i in range(60)}), 400, "unsafe_archive"),
    push("zip bomb", zipped({"a": b"\0" * (6 * 1024 * 1024)}, zipfile.ZIP_DEFLATED), 400, "unsafe_archive"),
    push("truncated zip", zipped({"a.txt": b"x" * 100})[:40], 400, {"unsafe_archive", "unsupported_format"}),
    push("empty body", b"", 400, "unsupported_format"),
    push("random bytes", bytes(range(256)) * 4, 400, "unsupported_format"),
    push("unknown framework", b"x", 400, "invalid_input", params={"framework": "cobol"}),
    push(
        "framework mismatch",
        lambda ctx: ctx["skops"],
        400,
        "unsupported_format",
        params={"framework": "onnx"},
    ),
    push("upload over the limit", b"\0" * (4 * 1024 * 1024 + 1), 413, "payload_too_large"),
    push("onnx external data outside", onnx_outside, 201, None),
    push(
        "file name with ../",
        lambda ctx: ctx["skops"],
        201,
        None,
        params={"filename": "../../../tmp/modelport-fn"},
    ),
    # ---- names and paths ---------------------------------------------------------------------
    Case("names and paths", "dot dot model", "GET", "/api/v1/models/%2e%2e", 400, "invalid_name"),
    Case(
        "names and paths",
        "upper case model",
        "POST",
        "/api/v1/models/Iris/versions",
        400,
        "invalid_name",
        body=b"x",
    ),
    Case("names and paths", "64-character model", "GET", f"/api/v1/models/{'a' * 64}", 400, "invalid_name"),
    Case("names and paths", "encoded slash", "GET", "/api/v1/models/a%2Fb", 404, "not_found"),
    Case("names and paths", "slash in model", "GET", "/api/v1/models/a/b", 404, "not_found"),
    Case("names and paths", "null byte", "GET", "/api/v1/models/a%00b", 400, "invalid_name"),
    Case(
        "names and paths",
        "alias with dots",
        "PUT",
        "/api/v1/models/iris/aliases/%2e%2e",
        400,
        "invalid_name",
        json={"version": 1},
    ),
    Case(
        "names and paths",
        "key name with slash",
        "DELETE",
        "/api/v1/keys/a%2F..",
        404,
        {"not_found", "invalid_name"},
    ),
    Case(
        "names and paths",
        "traversal in v2 path",
        "POST",
        "/v2/models/..%2f..%2fetc/infer",
        404,
        None,
        json=ROW,
    ),
    Case(
        "names and paths",
        "model body name",
        "POST",
        "/api/v1/models",
        400,
        "invalid_name",
        json={"name": "../etc"},
    ),
    # ---- auth --------------------------------------------------------------------------------
    Case("auth", "no key", "GET", "/api/v1/models", 401, "unauthenticated", headers={"Authorization": ""}),
    Case(
        "auth",
        "wrong key",
        "GET",
        "/api/v1/models",
        401,
        "unauthenticated",
        headers={"Authorization": "Bearer mp_x"},
    ),
    Case(
        "auth",
        "basic scheme",
        "GET",
        "/api/v1/models",
        401,
        "unauthenticated",
        headers={"Authorization": "Basic YTpi"},
    ),
    Case("auth", "revoked key", "GET", "/api/v1/models", 401, "unauthenticated", headers=key("revoked")),
    Case(
        "auth",
        "no key for inference",
        "POST",
        "/v2/models/iris/infer",
        401,
        None,
        json=ROW,
        headers={"Authorization": ""},
    ),
    Case("auth", "infer key on management", "GET", "/api/v1/models", 403, "forbidden", headers=key("infer")),
    Case(
        "auth",
        "read key pushes",
        "POST",
        "/api/v1/models/iris/versions",
        403,
        "forbidden",
        body=b"x",
        headers=key("read"),
    ),
    Case(
        "auth", "read key infers", "POST", "/v2/models/iris/infer", 403, None, json=ROW, headers=key("read")
    ),
    Case(
        "auth",
        "infer key moves an alias",
        "PUT",
        "/api/v1/models/iris/aliases/production",
        403,
        "forbidden",
        json={"version": 1},
        headers=key("infer"),
    ),
    Case(
        "auth", "read key reads the audit log", "GET", "/api/v1/audit", 403, "forbidden", headers=key("read")
    ),
    Case(
        "auth",
        "read key creates a key",
        "POST",
        "/api/v1/keys",
        403,
        "forbidden",
        json={"name": "mine", "scopes": ["admin"]},
        headers=key("read"),
    ),
    Case(
        "auth",
        "key for other models",
        "POST",
        "/v2/models/iris/infer",
        404,
        None,
        json=ROW,
        headers=key("other"),
    ),
    Case(
        "auth", "rebinding host", "GET", "/api/v1/models", 403, "forbidden", headers={"Host": "evil.example"}
    ),
    Case(
        "auth",
        "foreign origin",
        "DELETE",
        "/api/v1/models/iris",
        403,
        "forbidden",
        headers={"Origin": "http://evil.example"},
    ),
    Case("auth", "delete the audit log", "DELETE", "/api/v1/audit", 405, "method_not_allowed"),
    Case("auth", "rewrite the audit log", "PUT", "/api/v1/audit", 405, "method_not_allowed", json=[]),
    # ---- resource exhaustion -----------------------------------------------------------------
    Case(
        "resource exhaustion",
        "key over its rate",
        "GET",
        "/api/v1/models",
        429,
        "rate_limited",
        headers=key("limited"),
        repeat=4,
    ),
    Case(
        "resource exhaustion",
        "inference over the rate",
        "POST",
        "/v2/models/iris/infer",
        429,
        None,
        json=ROW,
        headers=key("limited"),
        repeat=4,
    ),
]
