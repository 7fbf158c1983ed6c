"""search: the evolutionary loop and everything that proposes, records and resumes a run.

Owns the loop and its population rules (`loop`, `population`; the record-only rules, `steps`;
tuned params, `tune`), the proposers (`mutate`,
`mutate_ops`; `llm` with its prompts `prompting` and grammar constraints `constrain`; the local
model server `local`, with `local_proxy` in front of several), the learnings log (`learnings`), the run folder (`runs`), null runs
(`nullrun`), the pass bar's syntax (`bar`), and starting or resuming a run with its config.json
(`session`), callable from a notebook as well as from `autostrat evolve`.

Imports: sim, tape, data, lang and the core modules; never honest, report or cli.
"""
