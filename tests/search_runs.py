"""Two reference searches whose records the parallel loop must reproduce at --parallel 1 --tune 0.

`python tests/search_runs.py` rewrites tests/golden/search_*.json. The files hold the records of
the serial loop (one candidate per iteration, text duplicates only), times left out; rewrite them
only from a loop known to be serial.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from autostrat.data.load import load_market  # noqa: E402
from autostrat.resources import example_path  # noqa: E402
from autostrat.search.llm import ChatModel, LlmProposer, ModelConfig  # noqa: E402
from autostrat.search.loop import MutateProposer, Search  # noqa: E402
from autostrat.search.runs import RunFolder, clean_json  # noqa: E402
from autostrat.sim.evaluator import Evaluator  # noqa: E402
from autostrat.sim.objective import Objective  # noqa: E402

from fake_llm_server import Answer, FakeLLM, last_user_message, strategy_from  # noqa: E402
from test_loop import DATA, small_settings as settings  # noqa: E402,F401 - the loop tests' market and split

GOLDEN = Path(__file__).parent / "golden"
TIMES = ("seconds", "model_seconds")


def strip(records: list[dict]) -> list[dict]:
    """Records without their times (the one part of a record that depends on the machine), NaN as None."""
    return clean_json([{k: v for k, v in r.items() if k not in TIMES} for r in records])


def mutate_records(folder: Path, **search) -> list[dict]:
    """A 30-iteration mutate search on synthetic data (seed 3), its records."""
    s = settings(**{"iterations": 30, "max_fails": 30, "seed": 3, **search})
    market = load_market(DATA)
    run = RunFolder.open(folder) if RunFolder.exists(folder) else RunFolder.create(folder, {})
    out = Search(run, s, Objective.parse(s.search.objective), Evaluator(market, s), MutateProposer(),
                 example_path("sma_cross").read_text(), out=lambda line: None).run()
    return strip(out.records)


def scripted_model_records(folder: Path, **search) -> list[dict]:
    """A 12-iteration llm search against a scripted model on 127.0.0.1 (answers chosen by the prompt)."""
    # fixed token counts: the prompt's length changes whenever program.md is edited
    def answer(body, i):
        return Answer(strategy_from(last_user_message(body)), prompt_tokens=1000, completion_tokens=50)

    return strip(model_search(folder, FakeLLM(answer), **search).records)


def model_search(folder: Path, llm: FakeLLM, timeout: float = 30.0, **search):
    """A llm search (12 iterations, seed 1) against `llm`, started and stopped here; its outcome."""
    s = settings(**{"iterations": 12, "max_fails": 12, "seed": 1, "proposer": "llm", **search})
    market = load_market(DATA)
    objective = Objective.parse(s.search.objective)
    evaluator = Evaluator(market, s)
    with llm:
        cfg = ModelConfig(base_url=llm.base_url, api_key="k", model="m", temperature=0.0, max_tokens=512,
                          timeout=timeout, max_retries=2, backoff=0.01, backoff_max=0.1)
        proposer = LlmProposer(ChatModel(cfg, log=lambda line: None), s, objective, evaluator.period_dates(),
                               "synthetic")
        run = RunFolder.open(folder) if RunFolder.exists(folder) else RunFolder.create(folder, {})
        return Search(run, s, objective, evaluator, proposer, example_path("sma_cross").read_text(),
                      out=lambda line: None).run()


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("mutate", mutate_records), ("scripted_model", scripted_model_records)):
            records = make(Path(tmp) / name)
            (GOLDEN / f"search_{name}.json").write_text(json.dumps(records, indent=1) + "\n")
            print(name, len(records), [r["status"] for r in records])
