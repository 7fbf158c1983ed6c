"""lang: the strategy language, from text to a typed program.

Owns the AST (`nodes`), the one table of built-in functions (`registry`), the parser (`parse`, on
grammar/strategy.lark; its limits and error explanations in `parse_errors`), the checker
(`check`), the canonical formatter (`fmt`), the language reference generated from the registry
(`reference`) and the grammar's exports for constrained decoding (`grammar_export`,
`grammar_tree`, and `grammar_typed`, whose every text checks).

Imports: only the flat core modules (autostrat.errors, autostrat.config, autostrat.resources).
Every other layer may import it; it imports no other layer.
"""
