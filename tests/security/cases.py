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
    expect: str | None = None  # text the error message must contain (e.g. the row or column at fault)


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


def dataset(name: str, body: bytes, code: str, expect: str) -> Case:
    return Case("dataset upload", name, "POST", "/api/v1/datasets/upload/versions", 400, code, body=body,
                expect=expect)  # fmt: skip


JOB = {"model": "trained", "dataset": "sklearn:iris", "target": "target", "estimator": "random_forest"}


def job(name: str, changes: dict[str, Any], status: int, code: str) -> Case:
    return Case("job requests", name, "POST", "/api/v1/jobs", status, code, json=JOB | changes)


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
    # datasets for training: refused with the row or column named, nothing stored
    *(
        dataset(name, body, code, expect)
        for name, body, code, expect in (
            ("ragged CSV", b"a,b,y\n1,2,x\n3,4\n", "invalid_input", "row 2"),
            ("CSV not UTF-8", b"a,b,y\n1,2,caf\xe9\n", "invalid_input", "line 2"),
            ("empty CSV", b"", "invalid_input", "empty"),
            ("header only", b"a,b,y\n", "invalid_input", "no data rows"),
            ("duplicate column", b"a,a,y\n1,2,x\n", "invalid_input", "'a'"),
            ("formula injection", b'a,b,y\n1,2,x\n3,4,=HYPERLINK("http://evil")\n', "invalid_input", "'y'"),
            ("Parquet that is not one", b"PAR1" + b"\x00" * 64 + b"PAR1", "invalid_input", "Parquet"),
        )
    ),
    Case(
        "dataset upload",
        "dataset over the size limit",
        "POST",
        "/api/v1/datasets/big/versions",
        413,
        "payload_too_large",
        body=b"a,b\n" + b"1,2\n" * 400_000,
    ),
    Case(
        "dataset upload",
        "bad dataset name",
        "POST",
        "/api/v1/datasets/Bad.Name/versions",
        400,
        "invalid_name",
        body=b"a\n1\n",
    ),
    Case(
        "dataset upload",
        "read key uploads",
        "POST",
        "/api/v1/datasets/d/versions",
        403,
        "forbidden",
        body=b"a\n1\n",
        headers=key("read"),
    ),
    Case(
        "dataset upload",
        "delete a bundled dataset",
        "DELETE",
        "/api/v1/datasets/sklearn:iris",
        409,
        "conflict",
    ),
    Case(
        "dataset upload", "unknown bundled dataset", "GET", "/api/v1/datasets/sklearn:nope", 404, "not_found"
    ),
    # training requests: every refusal names the field; nothing is queued
    *(
        job(name, spec, status, code)
        for name, spec, status, code in (
            ("unknown estimator", {"estimator": "eval"}, 422, "invalid_spec"),
            ("estimator for another task", {"estimator": "linear_regression"}, 422, "invalid_spec"),
            ("param out of range", {"params": {"n_estimators": -5}}, 422, "invalid_spec"),
            ("unknown param", {"params": {"__class__": "os.system"}}, 422, "invalid_spec"),
            ("param of the wrong type", {"params": {"max_depth": "__import__('os')"}}, 422, "invalid_spec"),
            ("unknown dataset", {"dataset": "nothing"}, 422, "invalid_spec"),
            ("missing target column", {"target": "nope"}, 422, "invalid_spec"),
            ("unknown field", {"code": "import os"}, 422, "invalid_spec"),
            ("holdout of 1", {"validation": {"holdout": 1.0}}, 422, "invalid_spec"),
            (
                "search over an unknown param",
                {"search": {"kind": "grid", "space": {"x": [1]}}},
                422,
                "invalid_spec",
            ),
            ("bad model name", {"model": "../x"}, 422, "invalid_spec"),
        )
    ),
    Case("job requests", "job body not JSON", "POST", "/api/v1/jobs", 400, "invalid_input", body=b"{nope"),
    Case("job requests", "job body a list", "POST", "/api/v1/jobs", 422, "invalid_spec", json=[1, 2]),
    Case(
        "job requests",
        "read key trains",
        "POST",
        "/api/v1/jobs",
        403,
        "forbidden",
        json=JOB,
        headers=key("read"),
    ),
    Case(
        "job requests",
        "key limited to other models trains",
        "POST",
        "/api/v1/jobs",
        404,
        "not_found",
        json=JOB,
        headers=key("fenced"),
    ),
    Case("job requests", "unknown job", "GET", "/api/v1/jobs/999999", 404, "not_found"),
    Case("job requests", "job id not a number", "GET", "/api/v1/jobs/x", 400, "invalid_input"),
    Case("job requests", "cancel unknown job", "POST", "/api/v1/jobs/999999/cancel", 404, "not_found"),
    # monitoring: scopes and model fences apply; bad filters, bodies and rules are refused with the field
    *(
        Case("monitoring", name, method, path, status, code, json=body, headers=headers, params=params)
        for name, method, path, status, code, body, headers, params in (
            (
                "read key sets the sample rate",
                "PUT",
                "/api/v1/models/iris/monitoring/config",
                403,
                "forbidden",
                {"sample_rate": 1},
                key("read"),
                {},
            ),
            (
                "read key creates an alert",
                "POST",
                "/api/v1/models/iris/alerts",
                403,
                "forbidden",
                {"kind": "p99", "threshold": 1},
                key("read"),
                {},
            ),
            (
                "fenced key reads predictions",
                "GET",
                "/api/v1/models/iris/predictions",
                404,
                "not_found",
                None,
                key("fenced"),
                {},
            ),
            (
                "fenced key reads the report",
                "GET",
                "/api/v1/models/iris/monitoring",
                404,
                "not_found",
                None,
                key("fenced"),
                {},
            ),
            (
                "fenced key sends feedback",
                "POST",
                "/api/v1/models/iris/feedback",
                404,
                "not_found",
                [{"request_id": "a", "label": 1}],
                key("fenced"),
                {},
            ),
            (
                "report of an unknown model",
                "GET",
                "/api/v1/models/nope/monitoring",
                404,
                "not_found",
                None,
                {},
                {},
            ),
            (
                "report window not a duration",
                "GET",
                "/api/v1/models/iris/monitoring",
                400,
                "invalid_input",
                None,
                {},
                {"window": "1y; DROP TABLE"},
            ),
            (
                "prediction cursor forged",
                "GET",
                "/api/v1/models/iris/predictions",
                400,
                "invalid_input",
                None,
                {},
                {"cursor": "../../etc/passwd"},
            ),
            (
                "prediction page of 0",
                "GET",
                "/api/v1/models/iris/predictions",
                400,
                "invalid_input",
                None,
                {},
                {"limit": "0"},
            ),
            (
                "prediction since not a time",
                "GET",
                "/api/v1/models/iris/predictions",
                400,
                "invalid_input",
                None,
                {},
                {"since": "yesterday"},
            ),
            (
                "export in an unknown format",
                "GET",
                "/api/v1/models/iris/predictions/export",
                400,
                "invalid_input",
                None,
                {},
                {"format": "pickle"},
            ),
            (
                "feedback not a list",
                "POST",
                "/api/v1/models/iris/feedback",
                400,
                "invalid_input",
                {"request_id": "a", "label": 1},
                {},
                {},
            ),
            (
                "feedback with label and value",
                "POST",
                "/api/v1/models/iris/feedback",
                400,
                "invalid_input",
                [{"request_id": "a", "label": 1, "value": 1.0}],
                {},
                {},
            ),
            (
                "feedback request id with a newline",
                "POST",
                "/api/v1/models/iris/feedback",
                400,
                "invalid_input",
                [{"request_id": "a\nb", "label": 1}],
                {},
                {},
            ),
            (
                "alert webhook to a file",
                "POST",
                "/api/v1/models/iris/alerts",
                400,
                "invalid_input",
                {"kind": "p99", "threshold": 1, "webhook_url": "file:///etc/passwd"},
                {},
                {},
            ),
            (
                "alert of an unknown kind",
                "POST",
                "/api/v1/models/iris/alerts",
                400,
                "invalid_input",
                {"kind": "exec", "threshold": 1},
                {},
                {},
            ),
            (
                "delete an unknown alert",
                "DELETE",
                "/api/v1/models/iris/alerts/999999",
                404,
                "not_found",
                None,
                {},
                {},
            ),
            (
                "reference from an unknown dataset",
                "PUT",
                "/api/v1/models/iris/versions/1/reference",
                404,
                "not_found",
                {"dataset": "nothing"},
                {},
                {},
            ),
        )
    ),
]
