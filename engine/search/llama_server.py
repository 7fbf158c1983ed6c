"""`python -m autostrat.search.llama_server ...`: llama-cpp-python's OpenAI-compatible server
(same arguments), with the CPU backend's extra weight layouts (AMX tiles, repacked blocks) off.

On a CPU that reports AMX where the kernel or a sandbox does not grant it, those layouts crash
the first decode (a segmentation fault, which the client sees as a connection closed without an
answer). The plain layout works on every CPU.
"""

from __future__ import annotations

import runpy

import llama_cpp.llama_cpp as bindings

_defaults = bindings.llama_model_default_params


def _model_params():
    params = _defaults()
    params.use_extra_bufts = False
    return params


if __name__ == "__main__":
    bindings.llama_model_default_params = _model_params
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
