"""``/api/v1/datasets``: upload CSV or Parquet versions, list, show, delete; bundled scikit-learn datasets.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Annotated`` aliases.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport.api.headers import declared_over
from modelport.api.management.context import Context, require_dataset
from modelport.api.management.routing import management_router
from modelport.api.management.training_schemas import DatasetOut, DatasetSummaryOut, DatasetVersionOut
from modelport.api.management.versions import receive_artifact
from modelport.api.openapi import errors
from modelport.datasets.bundled import is_bundled
from modelport.errors import PayloadTooLarge
from modelport.limits import MAX_VERSION
from modelport.names import check_name
from modelport.security.keys import Principal, Scope

DATASET_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                },
            },
        },
    }
}
DatasetName = Annotated[str, Path(max_length=140, description="a name, or sklearn:<name> for a bundled one")]


DatasetVersion = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def build_router(ctx: Context) -> APIRouter:
    router = management_router(tags=["datasets"])
    service = ctx.datasets
    Reader = Annotated[Principal, Depends(ctx.auth.dependency(Scope.READ))]
    Writer = Annotated[Principal, Depends(ctx.auth.dependency(Scope.WRITE))]

    @router.post(
        "/datasets/{dataset}/versions",
        status_code=201,
        openapi_extra=DATASET_BODY,
        responses=errors(413, 507),
    )
    async def push_dataset(request: Request, who: Writer, dataset: DatasetName) -> DatasetVersionOut:
        """Body: a CSV (UTF-8, a header row) or Parquet file, raw (``--data-binary @data.csv``) or as the
        one file part of a multipart body. It is checked before anything is stored: a bad file is a 400
        naming the row or column at fault."""
        check_name(dataset, field="dataset")
        require_dataset(who, dataset)
        if declared_over(request.headers.get("content-length"), service.max_bytes):
            raise PayloadTooLarge(f"dataset exceeds the upload limit of {service.max_bytes} bytes")
        upload = service.begin_upload()
        try:
            await receive_artifact(request, upload)
        except BaseException:
            upload.discard()
            raise
        record = await run_in_threadpool(lambda: service.push(dataset, upload, by=who.name))
        return DatasetVersionOut.of(record)

    @router.get("/datasets")
    def list_datasets(who: Reader) -> list[DatasetSummaryOut]:
        """Uploaded datasets, then the ones bundled with scikit-learn (``sklearn:iris``, ...)."""
        stored = [
            DatasetSummaryOut(
                name=d.name,
                latest_version=d.versions[-1].version if d.versions else None,
                rows=d.versions[-1].rows if d.versions else None,
                created_at=d.created_at,
            )
            for d in ctx.registry.datasets.all()
            if who.can_access(d.name)
        ]
        bundled = [
            DatasetSummaryOut(
                name=name, bundled=True, description=description, rows=service.resolve(name).info["rows"]
            )
            for name, description in service.bundled().items()
        ]
        return stored + bundled

    @router.get("/datasets/{dataset}")
    async def get_dataset(who: Reader, dataset: DatasetName) -> DatasetOut:
        if is_bundled(dataset):
            resolved = await run_in_threadpool(service.resolve, dataset)
            description = service.bundled().get(dataset)
            return DatasetOut(
                name=dataset,
                bundled=True,
                description=description,
                latest=DatasetVersionOut.bundled(resolved),
            )
        check_name(dataset, field="dataset")
        require_dataset(who, dataset)
        return DatasetOut.of(ctx.registry.datasets.get(dataset))

    @router.get("/datasets/{dataset}/versions/{version}")
    def get_dataset_version(who: Reader, dataset: DatasetName, version: DatasetVersion) -> DatasetVersionOut:
        check_name(dataset, field="dataset")
        require_dataset(who, dataset)
        return DatasetVersionOut.of(ctx.registry.datasets.get_version(dataset, version))

    @router.delete("/datasets/{dataset}", status_code=204, responses=errors(409))
    def delete_dataset(who: Writer, dataset: DatasetName) -> Response:
        """Every version; refused (409) while a job, or the lineage of a model version, uses one."""
        require_dataset(who, dataset)
        service.delete(dataset, None, by=who.name)
        return Response(status_code=204)

    @router.delete("/datasets/{dataset}/versions/{version}", status_code=204, responses=errors(409))
    def delete_dataset_version(who: Writer, dataset: DatasetName, version: DatasetVersion) -> Response:
        require_dataset(who, dataset)
        service.delete(dataset, version, by=who.name)
        return Response(status_code=204)

    return router
