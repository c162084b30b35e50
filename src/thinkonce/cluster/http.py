"""HTTP ingestion for a :class:`RayStreamPool`: a Ray Serve deployment (FastAPI routes).

    PUT  /streams/{id}                     start a stream                       201 | 409 exists
    POST /streams/{id}/chunks?seq=N        body: the chunk's raw little-endian samples, C order, shaped
         [&dtype=float32][&frame=1]        (*frame, n) (frame: the model's input frame, e.g. channels)
                                           200 {"applied": true|false (a retry)} | 4xx {"error": reason}
    GET  /streams/{id}/results[?after=Q]   outputs with quantum index > Q (acknowledging those <= Q:
                                           idempotent, exactly-once); without ``after`` they are popped
    GET  /healthz

Refusals change nothing and name the problem: 400 malformed request (no/invalid ``seq``, unknown
``dtype``, body not a whole number of frames), 404 unknown stream, 409 sequence gap (the reason says
which seq to resend from), 413 body over the size limit, 422 a chunk ``Stream.step`` would refuse (frame
shape, dtype, NaN/Inf; the shard's StreamPool runs the same validation). A binary body rather than JSON
numbers: float32 samples travel exactly, 4 bytes each, and decode without parsing.

>>> url = serve_pool(pool, port=8000)   # doctest: +SKIP
"""

# no "from __future__ import annotations": FastAPI reads the route annotations (Request) at runtime

import math
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from ..errors import StreamInputError
from .errors import SequenceGapError, UnknownStreamError
from .pool import RayStreamPool

__all__ = ["Ingress", "Handlers", "serve_pool", "build_app", "DTYPES"]

DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int16": np.int16,
          "int32": np.int32, "int64": np.int64, "uint8": np.uint8}

app = FastAPI(title="thinkonce stream ingestion")


def _err(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status)


class Handlers:
    """The request logic, independent of the web framework (``(status, body)`` results)."""

    def __init__(self, pool: RayStreamPool, max_chunk_samples: int = 65536) -> None:
        self.pool = pool
        self.max_chunk_samples = max_chunk_samples
        d = pool.describe()
        self.frame = tuple(int(v) for v in d["frame"])
        self.frame_size = math.prod(self.frame)

    def max_body_bytes(self) -> int:
        return self.max_chunk_samples * self.frame_size * 8  # the widest dtype accepted for decoding

    def add(self, stream_id: str) -> tuple[int, dict]:
        try:
            self.pool.add(stream_id)
        except StreamInputError as e:
            return 409, {"error": str(e)}
        return 201, {"stream": stream_id}

    def chunk(self, stream_id: str, body: bytes, seq: str | None, dtype: str, frame: str | None) -> tuple[int, dict]:
        if seq is None:
            return 400, {"error": "missing query parameter seq: the chunk's per-stream sequence number (0, 1, 2, ...)"}
        try:
            s = int(seq)
        except ValueError:
            return 400, {"error": f"seq must be a non-negative integer, got {seq!r}"}
        if s < 0:
            return 400, {"error": f"seq must be a non-negative integer, got {s}"}
        if dtype not in DTYPES:
            return 400, {"error": f"unknown dtype {dtype!r}; send float32 samples (known: {', '.join(DTYPES)})"}
        if frame is None:
            shape = self.frame
        else:
            try:
                shape = tuple(int(v) for v in frame.split(","))
            except ValueError:
                return 400, {"error": f"frame must be comma-separated ints like {','.join(map(str, self.frame))}, got {frame!r}"}
            if not shape or any(v < 1 for v in shape):
                return 400, {"error": f"frame sizes must be positive ints, got {frame!r}"}
        item = np.dtype(DTYPES[dtype]).itemsize
        per = math.prod(shape) * item
        if len(body) % per:
            return 400, {"error": f"body of {len(body)} bytes is not a whole number of frames of {per} bytes "
                                  f"({dtype}, frame {list(shape)})"}
        n = len(body) // per
        if n > self.max_chunk_samples:
            return 413, {"error": f"chunk of {n} samples exceeds the limit of {self.max_chunk_samples}; split it into several chunks"}
        x = np.frombuffer(body, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).astype(DTYPES[dtype], copy=True)
        chunk = torch.from_numpy(x.reshape(*shape, n))
        try:
            applied = self.pool.submit(stream_id, chunk, s)
        except UnknownStreamError as e:
            return 404, {"error": str(e)}
        except SequenceGapError as e:
            return 409, {"error": str(e)}
        except StreamInputError as e:
            return 422, {"error": str(e)}
        return 200, {"stream": stream_id, "seq": s, "applied": applied}

    def results(self, stream_id: str, after: str | None) -> tuple[int, dict]:
        a = None
        if after is not None:
            try:
                a = int(after)
            except ValueError:
                return 400, {"error": f"after must be an integer quantum index, got {after!r}"}
            if a < -1:
                return 400, {"error": f"after must be >= -1, got {a}"}
        try:
            items = self.pool.results_after(stream_id, a) if a is not None else self.pool.take(stream_id)
        except UnknownStreamError as e:
            return 404, {"error": str(e)}
        except StreamInputError as e:
            return 400, {"error": str(e)}
        return 200, {
            "stream": stream_id,
            "results": [{"seq": int(q), "shape": list(y.shape), "data": y.reshape(-1).tolist()} for q, y in items],
            "last": int(items[-1][0]) if items else a,
        }


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    """One ingress replica: routes requests to the shards of the cluster rooted at ``checkpoint_dir``."""

    def __init__(self, checkpoint_dir: str, max_chunk_samples: int = 65536) -> None:
        self.h = Handlers(RayStreamPool.connect(checkpoint_dir), max_chunk_samples)

    @app.get("/healthz")
    def healthz(self) -> dict:
        return {"ok": True, "frame": list(self.h.frame)}

    @app.put("/streams/{stream_id}")
    def add(self, stream_id: str) -> JSONResponse:
        return JSONResponse(*reversed(self.h.add(stream_id)))

    @app.post("/streams/{stream_id}/chunks")
    async def chunk(self, stream_id: str, request: Request, seq: str | None = None, dtype: str = "float32",
                    frame: str | None = None) -> JSONResponse:
        cl = request.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.h.max_body_bytes():
            return _err(413, f"body of {cl} bytes exceeds the limit of {self.h.max_body_bytes()} bytes; split the chunk")
        body = await request.body()
        if len(body) > self.h.max_body_bytes():
            return _err(413, f"body of {len(body)} bytes exceeds the limit of {self.h.max_body_bytes()} bytes; split the chunk")
        import asyncio

        status, out = await asyncio.get_running_loop().run_in_executor(
            None, self.h.chunk, stream_id, body, seq, dtype, frame)
        return JSONResponse(out, status_code=status)

    @app.get("/streams/{stream_id}/results")
    def results(self, stream_id: str, after: str | None = None) -> JSONResponse:
        status, out = self.h.results(stream_id, after)
        return JSONResponse(out, status_code=status)


def build_app(pool: RayStreamPool, *, max_chunk_samples: int = 65536) -> Any:
    """The Serve application (bind it yourself, e.g. with more replicas: ``Ingress.options(num_replicas=4)``)."""
    return Ingress.bind(str(pool.root), max_chunk_samples)


def serve_pool(pool: RayStreamPool, *, host: str = "127.0.0.1", port: int = 8000, route_prefix: str = "/",
               max_chunk_samples: int = 65536, num_replicas: int = 1, name: str = "thinkonce") -> str:
    """Start Ray Serve on ``host:port`` with the ingress for ``pool``; returns the base URL. Loopback by
    default: pass ``host="0.0.0.0"`` to accept devices from the network."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(Ingress.options(num_replicas=num_replicas).bind(str(pool.root), max_chunk_samples),
              name=name, route_prefix=route_prefix)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"
