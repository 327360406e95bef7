"""``llmrec serve``: the HTTP service; ``llmrec serve keys add``: a new API key."""

from __future__ import annotations

import argparse
import sys

from llmrec.errors import LlmrecError
from llmrec.options import add_arguments, from_args
from llmrec.serve.keys import SCOPES
from llmrec.serve.options import ServeOptions


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand (and ``serve keys add``)."""
    p = sub.add_parser(
        "serve",
        help="an HTTP service: recommend, predict, rank, explain, feedback, items, metrics",
        description="Serve the model over HTTP (JSON under /v1, OpenAPI at /docs). Requests need an API key "
        "(`llmrec serve keys add`); concurrent requests are micro-batched into one model call.",
    )
    add_arguments(p, ServeOptions)
    p.set_defaults(run=run)
    keys = p.add_subparsers(dest="serve_command", metavar="keys")
    k = keys.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True, metavar="add")
    add = k.add_parser("add", help="make a new key: printed once, only its salted hash is stored")
    add.add_argument("--keys", dest="keys_file", required=True, help="the keys file (created if missing)")
    add.add_argument("--scope", action="append", required=True, choices=SCOPES,
                     help="read (recommend/predict/rank/explain), feedback, admin (everything); repeatable")  # fmt: skip
    add.add_argument("--name", help="a label for the key (default: key-N)")
    add.set_defaults(run=run_keys_add)


def run_keys_add(args: argparse.Namespace) -> int:
    """Run ``llmrec serve keys add``."""
    from llmrec.serve.keys import add_key

    key = add_key(args.keys_file, args.scope, args.name)
    print(key)
    print(f"llmrec: the key above ({', '.join(sorted(set(args.scope)))}) is shown once; {args.keys_file} keeps "
          "only its salted hash", file=sys.stderr)  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``llmrec serve``."""
    import logging
    import os

    try:
        import uvicorn

        from llmrec.serve.app import create_app
    except ImportError as exc:
        raise LlmrecError(f"llmrec serve needs the serve extra: pip install 'llmrec[serve]' ({exc.name} is missing)") from None
    options = from_args(ServeOptions, args)
    if options.keys is not None:
        from llmrec.serve.keys import KeyStore

        KeyStore.read(options.keys)  # a bad keys file fails here, in one line
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = {"host": options.host, "port": options.port, "access_log": False, "log_level": "info",
                "timeout_graceful_shutdown": options.timeout_s}  # fmt: skip
    if options.workers > 1:
        os.environ["LLMREC_SERVE_OPTIONS"] = options.to_json()
        uvicorn.run("llmrec.serve.app:app_from_environment", factory=True, workers=options.workers, **settings)
        return 0
    app = create_app(options)
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    service = app.state.service
    service.on_load_failure = lambda: setattr(server, "should_exit", True)
    server.run()
    if service.load_error:
        raise LlmrecError(f"the model did not load: {service.load_error}")
    return 0
