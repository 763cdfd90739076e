"""`batchkling upload`: put a manifest's local images in the object store and print their URLs.

Nothing is created and the API is never called: this is the step ``run`` takes
before its first create, for a user who wants to look at the URLs first. The
local files are checked first, by the rules pre-flight applies to every image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cli._options import add_run_dir_option, run_dir_from
from batchkling.cli._upload_args import uploader_from
from batchkling.errors import PreflightError, Problem

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.model import Manifest
    from batchkling.storage.prepare import Uploader
    from batchkling.storage.upload import UploadSummary

__all__ = ["cmd_upload", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `upload`."""
    p = sub.add_parser(
        "upload",
        help="upload a manifest's local images and print the URL of each (creates nothing)",
        description="Check every local image of MANIFEST, upload those not yet in the store "
        "(upload_to or --upload-to), and print the URL the API would get for each. Never "
        "calls the API. Exit 0 when every image has a URL, 2 otherwise.",
    )
    add_manifest_options(p)
    add_run_dir_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"images": [{"path", "url", "key", ...}]}',
    )
    p.set_defaults(handler=cmd_upload)


def cmd_upload(args: argparse.Namespace, io: IO) -> int:
    """Upload, then print ``PATH URL`` per image (or the JSON object)."""
    import anyio

    manifest = load_manifest_from_args(args, io)
    if not manifest.has_local_images:
        print(f"{manifest.path}: no local images: nothing to upload.", file=io.out)
        return 0
    run_dir = run_dir_from(args, manifest.path)

    def say(line: str) -> None:
        print(line, file=io.err)

    terminal = hasattr(io.err, "isatty") and io.err.isatty() and not args.json
    uploader = uploader_from(
        args, manifest, say=say, each=not args.json, bar=io.err if terminal else None
    )
    summary = anyio.run(_upload, manifest, run_dir, uploader)
    if args.json:
        io.out.write(json.dumps(_as_json(summary), ensure_ascii=False) + "\n")
    else:
        for record in summary.records.values():
            print(f"{record.path}\t{record.url}", file=io.out)
    return 0


async def _upload(manifest: Manifest, run_dir: Path, uploader: Uploader | None) -> UploadSummary:
    from batchkling.api.client import make_http_client
    from batchkling.preflight.image_fetch import check_images
    from batchkling.preflight.image_rules import problems_for
    from batchkling.storage.prepare import prepare_images

    shots = [s for s in manifest.shots if s.image_sha256 or s.tail_sha256]
    async with make_http_client() as http:
        infos = await check_images(shots, client=http, cache_dir=run_dir, keep_copies=True)
        found: list[Problem] = problems_for(shots, infos, file=manifest.path)
        errors = [p for p in found if not p.warning]
        if errors:
            raise PreflightError(errors)
        _, summary = await prepare_images(manifest, uploader, run_dir=run_dir, http=http)
    assert summary is not None  # the manifest has local images
    return summary


def _as_json(summary: UploadSummary) -> dict[str, Any]:
    return {
        "images": [
            {
                "path": r.path,
                "url": r.url,
                "store": r.store,
                "key": r.key,
                "sha256": r.sha256,
                "expires_at": r.expires_at,
                "event": summary.kinds[source],
            }
            for source, r in summary.records.items()
        ],
        "uploaded": len(summary.uploaded),
        "bytes_uploaded": summary.bytes_uploaded,
        "changed": summary.changed,
    }
