"""Child process: runs requests through an orchestrator forever, printing `ACK <request id>` after each returns.

Used by the SIGTERM/SIGKILL test: acknowledged requests must survive a restart.
"""
import asyncio
import sys
from pathlib import Path

from computepulse_ai.adapters import SimulatedAdapter
from computepulse_ai.config import Config
from computepulse_ai.core import Request
from computepulse_ai.orchestrator import AIOrchestrator

folder = Path(sys.argv[1])
cfg = Config.from_dict({"storage": {"durability": "each"}, "cache": {"enabled": False},
                        "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in ("a", "b", "c")]})


async def main():
    adapters = {s.name: SimulatedAdapter(s, accuracy=0.9, latency_s=0, seed=i) for i, s in enumerate(cfg.models)}
    async with AIOrchestrator(cfg, adapters=adapters, folder=folder, seed=1) as orch:
        task = asyncio.current_task()
        import signal
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        n = 0
        while True:
            n += 1
            res = await orch.process(Request(f"GPU 租赁价格 {n}", data_type="gpu", task_type="price_extraction"))
            print("ACK", res.request.id, flush=True)


try:
    asyncio.run(main())
except asyncio.CancelledError:
    print("STOPPED", flush=True)
    sys.exit(143)
