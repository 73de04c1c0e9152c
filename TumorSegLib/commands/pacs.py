"""``tumorseg pacs``: pull a study from a DICOMweb server, segment it, store the SEG, SR, uncertainty map and
report back to the same server (and keep them in the output folder)."""

from __future__ import annotations

import argparse
import json
import shutil

from .common import CommandError, check_model_and_device, log, read_secret

__all__ = ["add_command"]

PASSWORD_VARIABLE = "TUMORSEG_PACS_PASSWORD"


def _password(args: argparse.Namespace) -> str | None:
    return read_secret(args.password_file, "--password-file", args.password_env if args.username else None)


def _run(args: argparse.Namespace) -> int:
    from ..dicom.web import connect, download_study, find_study, private_folder, store
    from ..export import Outputs
    from ..options import SegmentOptions
    from .study import plan_study, segment_study

    options = SegmentOptions.from_args(args)
    check_model_and_device(options)
    if args.username and _password(args) is None:
        raise CommandError(f"--username {args.username}: give the password in the {args.password_env} environment "
                           "variable or with --password-file")
    client = connect(args.url, args.username, _password(args), timeout_s=args.timeout)
    record = find_study(client, args.study_uid)
    outputs = Outputs(overwrite=args.overwrite)
    staged = outputs.claim(args.output, folder=True)
    download = private_folder()
    try:
        log(f"[progress   0%] retrieving study {args.study_uid} from {args.url}")
        count = download_study(client, args.study_uid, download)
        log(f"retrieved {count} instances")
        assignment = plan_study(download, args.study_uid, args.assign)
        with outputs:
            summary = segment_study(assignment, options, staged)
    finally:
        shutil.rmtree(download, ignore_errors=True)  # patient data: never left behind
    datasets = summary.pop("datasets")
    stored = [] if args.no_store else store(client, list(datasets.values()))
    log(json.dumps({"study": args.study_uid, "patient": _value(record, "00100020"), "output": str(args.output),
                    "volumes_ml": summary["volumes_ml"], "stored": stored}))
    return 0


def _value(record: dict, tag: str) -> str:
    values = (record.get(tag) or {}).get("Value") or [""]
    return str(values[0])


def add_command(commands) -> None:
    from ..options import add_arguments

    p = commands.add_parser("pacs", help="pull a study from a DICOMweb PACS, segment it, store SEG, SR, uncertainty "
                            "map and report back")
    p.add_argument("--url", required=True, help="DICOMweb root of the server, e.g. https://pacs.example.org/dicom-web")
    p.add_argument("--study-uid", required=True, help="StudyInstanceUID of the study to segment")
    p.add_argument("-o", "--output", required=True, help="folder for a local copy of every result")
    p.add_argument("--username", help="user name for HTTP basic authentication")
    p.add_argument("--password-env", default=PASSWORD_VARIABLE, metavar="VARIABLE",
                   help=f"environment variable holding the password (default {PASSWORD_VARIABLE})")
    p.add_argument("--password-file", help="file holding the password (instead of the environment variable)")
    p.add_argument("--assign", nargs="+", metavar="SEQUENCE=SERIES_UID", default=[],
                   help="override the automatic series assignment, e.g. t1c=1.2.840...")
    p.add_argument("--no-store", action="store_true", help="keep the results here; send nothing to the server")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server per request")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output folder")
    add_arguments(p)
    p.set_defaults(func=_run, uncertainty=None)
