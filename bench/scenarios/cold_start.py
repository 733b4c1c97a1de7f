from bench.context import Context
from bench.scenarios import Outcome
def run(ctx: Context) -> Outcome: raise NotImplementedError
ingest = many_flows = auth = run
