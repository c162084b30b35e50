"""Models that arrive as graphs of ATen operators: ``torch.export`` programs and TorchScript archives.

Such a graph has no ``nn.Conv1d`` left, only ``aten.conv1d`` calls on weight attributes, while the
converter's rules speak ``torch.nn``/``torch``. :func:`lift_aten_graph` rewrites every ATen call into
the module or function it stands for (a conv call on weight attributes becomes an ``nn.Conv1d`` sharing
those weights, ``aten.transpose`` becomes ``torch.transpose``, ...), so one set of rules serves every
way a model can reach us. Element-wise ATen operators (tagged ``pointwise``) need no rewriting: the
converter runs them frame by frame as they are. Anything else stays as it is: fine in a window head,
and named in the converter's error if it touches the time axis of the trunk.

A TorchScript archive is first turned into an ``ExportedProgram`` by PyTorch's own converter
(``torch._export.converter.TS2EPConverter``). A ``.pt2`` archive is read by ``torch.export.load`` with
every unpickling restricted to tensors (:func:`load_exported_archive`): by itself it would unpickle
arbitrary objects, and PyTorch warns never to load untrusted archives with it.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any, Callable, Iterator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.operator_schemas import normalize_function

from ..errors import ThinkonceError, UnsupportedNodeError

ATEN = torch.ops.aten

#: ATen packets whose torch-level function takes the same positional arguments
_SAME_SIGNATURE: dict[Any, Callable[..., Any]] = {
    ATEN.cat: torch.cat, ATEN.stack: torch.stack, ATEN.mean: torch.mean, ATEN.sum: torch.sum,
    ATEN.amax: torch.amax, ATEN.amin: torch.amin, ATEN.softmax: torch.softmax,
    ATEN.log_softmax: torch.log_softmax, ATEN.transpose: torch.transpose, ATEN.permute: torch.permute,
    ATEN.unsqueeze: torch.unsqueeze, ATEN.squeeze: torch.squeeze, ATEN.flatten: torch.flatten,
    ATEN.matmul: torch.matmul, ATEN.bmm: torch.bmm, ATEN.mm: torch.matmul,
    ATEN.adaptive_avg_pool1d: F.adaptive_avg_pool1d,
    ATEN.scaled_dot_product_attention: F.scaled_dot_product_attention,
    ATEN.unflatten: torch.unflatten, ATEN.select: torch.select, ATEN.narrow: torch.narrow,
    ATEN.std: torch.std, ATEN.var: torch.var, ATEN.logsumexp: torch.logsumexp,
}
#: ATen packets that are Tensor methods of the same name and arguments
_METHODS: dict[Any, str] = {
    ATEN.view: "reshape", ATEN.reshape: "reshape", ATEN._unsafe_view: "reshape", ATEN.expand: "expand",
    ATEN.repeat: "repeat", ATEN.contiguous: "contiguous", ATEN.clone: "clone", ATEN.detach: "detach",
    ATEN.alias: "detach", ATEN.lift_fresh_copy: "clone",
}


def is_aten_graph(model: Any) -> bool:
    """Whether ``model`` is an fx graph of ATen operators (as ``ExportedProgram.module()`` returns)."""
    return isinstance(model, fx.GraphModule) and any(
        isinstance(n.target, torch._ops.OpOverload) for n in model.graph.nodes
    )


def from_torchscript(module: torch.jit.ScriptModule, example: torch.Tensor) -> torch.export.ExportedProgram:
    """A TorchScript module as an ``ExportedProgram`` (PyTorch's own converter, run on ``example``)."""
    try:
        from torch._export.converter import TS2EPConverter
    except ImportError as e:  # pragma: no cover - present in the pinned torch
        raise ThinkonceError(
            "this PyTorch has no TorchScript-to-export converter; export the model with torch.export "
            "or pass the nn.Module itself"
        ) from e
    try:
        return TS2EPConverter(module, (example,)).convert()
    except Exception as e:
        raise UnsupportedNodeError(
            f"PyTorch could not convert the TorchScript module to an exported program: {e}. "
            "Pass the nn.Module, or a torch.export.ExportedProgram of it."
        ) from e


def example_from_program(ep: torch.export.ExportedProgram) -> torch.Tensor | None:
    """A zero input shaped like the program's single user input (from the export's recorded shapes)."""
    user = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(ep.graph_signature.user_inputs)]
    if len(user) != 1:
        return None
    val = user[0].meta.get("val")
    if val is None:
        return None
    return torch.zeros(tuple(int(d) for d in val.shape), dtype=val.dtype)


def lift_aten_graph(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """Rewrite an ATen graph into torch/nn calls the converter knows; checked equal on ``example``."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    counter = [0]

    def attr(node: Any) -> torch.Tensor | None:
        if node is None:
            return None
        if not (isinstance(node, fx.Node) and node.op == "get_attr"):
            raise UnsupportedNodeError(
                f"node '{node}' feeds a layer weight computed inside the graph; thinkonce needs weights "
                "that are parameters or buffers of the exported model"
            )
        obj: Any = gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj

    def add_module(kind: str, mod: nn.Module) -> str:
        counter[0] += 1
        name = f"lifted_{kind}_{counter[0]}"
        gm.add_submodule(name, mod.eval())
        return name

    def load(a: Any) -> Any:
        return fx.map_arg(a, lambda x: env[x])

    for n in gm.graph.nodes:
        if n.op == "call_module" and not n.users:  # export's guard function, nothing reads it
            continue
        if n.op == "output":
            outs = load(n.args[0])
            if isinstance(outs, (tuple, list)) and len(outs) == 1:
                outs = outs[0]
            graph.output(outs)
            continue
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            env[n] = graph.node_copy(n, lambda x: env[x])
            continue
        env[n] = _lift_call(n, graph, load, attr, add_module)
    lifted = fx.GraphModule(gm, graph, class_name=type(gm).__name__.replace("Impl", "") or "Lifted")
    lifted.eval()
    _check_same(gm, lifted, example)
    return lifted


def _lift_call(n: fx.Node, graph: fx.Graph, load, attr, add_module) -> fx.Node:
    target = n.target
    packet = target.overloadpacket
    norm = normalize_function(target, n.args, n.kwargs, normalize_to_only_use_kwargs=True)
    kw = dict(norm.kwargs) if norm is not None else {}
    first = n.args[0] if n.args else None

    def module_call(kind: str, mod: nn.Module, x: fx.Node) -> fx.Node:
        return graph.call_module(add_module(kind, mod), (load(x),))

    def param(t: torch.Tensor) -> nn.Parameter:
        return nn.Parameter(t.detach(), requires_grad=False)

    if packet in (ATEN.conv1d, ATEN.convolution, ATEN._convolution, ATEN._convolution_mode, ATEN.conv_transpose1d):
        w = attr(kw["weight"])
        if w is not None and w.dim() == 3:
            b = attr(kw.get("bias"))
            transposed = packet is ATEN.conv_transpose1d or bool(kw.get("transposed", False))
            stride, dilation = _one(kw.get("stride", 1)), _one(kw.get("dilation", 1))
            groups = int(kw.get("groups", 1))
            pad = kw.get("padding", 0)
            pad = pad if isinstance(pad, str) else _one(pad)
            if transposed:
                mod: nn.Module = nn.ConvTranspose1d(
                    w.shape[0], w.shape[1] * groups, w.shape[2], stride=stride, padding=pad,
                    output_padding=_one(kw.get("output_padding", 0)), groups=groups, bias=b is not None,
                    dilation=dilation, dtype=w.dtype, device=w.device)
            else:
                mod = nn.Conv1d(w.shape[1] * groups, w.shape[0], w.shape[2], stride=stride, padding=pad,
                                dilation=dilation, groups=groups, bias=b is not None, dtype=w.dtype, device=w.device)
            mod.weight = param(w)
            if b is not None:
                mod.bias = param(b)
            return module_call("conv", mod, kw["input"])
    if packet is ATEN.max_pool1d:
        k = _one(kw["kernel_size"])
        s = kw.get("stride") or [k]
        mod = nn.MaxPool1d(k, _one(s), _one(kw.get("padding", 0)), _one(kw.get("dilation", 1)),
                           ceil_mode=bool(kw.get("ceil_mode", False)))
        return module_call("maxpool", mod, kw["input"])
    if packet is ATEN.avg_pool1d:
        k = _one(kw["kernel_size"])
        s = kw.get("stride") or [k]
        mod = nn.AvgPool1d(k, _one(s), _one(kw.get("padding", 0)), ceil_mode=bool(kw.get("ceil_mode", False)),
                           count_include_pad=bool(kw.get("count_include_pad", True)))
        return module_call("avgpool", mod, kw["input"])
    if packet is ATEN.batch_norm:
        if kw.get("training"):
            raise ThinkonceError(
                f"node '{n.name}' runs batch_norm in training mode: export the model after model.eval()"
            )
        mean, var = attr(kw["running_mean"]), attr(kw["running_var"])
        w, b = attr(kw.get("weight")), attr(kw.get("bias"))
        bn = {4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(_meta_ndim(kw["input"]) or 3, nn.BatchNorm1d)
        mod = bn(mean.shape[0], eps=float(kw.get("eps", 1e-5)), affine=w is not None,
                 dtype=mean.dtype, device=mean.device)
        if w is not None:
            mod.weight = param(w)
            mod.bias = param(b if b is not None else torch.zeros_like(w))
        mod.running_mean = mean.detach()
        mod.running_var = var.detach()
        return module_call("batchnorm", mod, kw["input"])
    if packet is ATEN.linear and isinstance(kw.get("weight"), fx.Node) and kw["weight"].op == "get_attr":
        w, b = attr(kw["weight"]), attr(kw.get("bias"))
        mod = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype, device=w.device)
        mod.weight = param(w)
        if b is not None:
            mod.bias = param(b)
        return module_call("linear", mod, kw["input"])
    if packet is ATEN.linear:
        return graph.call_function(F.linear, load((kw["input"], kw["weight"], kw.get("bias"))))
    if packet is ATEN.layer_norm and isinstance(kw.get("weight"), fx.Node):
        w, b = attr(kw["weight"]), attr(kw.get("bias"))
        mod = nn.LayerNorm(list(kw["normalized_shape"]), eps=float(kw.get("eps", 1e-5)), bias=b is not None,
                           dtype=w.dtype, device=w.device)
        mod.weight = param(w)
        if b is not None:
            mod.bias = param(b)
        return module_call("layernorm", mod, kw["input"])
    if packet in (ATEN.dropout, ATEN.feature_dropout, ATEN.alpha_dropout) and not kw.get("train", False):
        return load(kw["input"])
    if packet is ATEN.pad:
        return graph.call_function(F.pad, (load(kw["input"]), list(load(kw["pad"]))),
                                   {"mode": kw.get("mode", "constant"), "value": kw.get("value")})
    if packet is ATEN.constant_pad_nd:
        return graph.call_function(F.pad, (load(kw["input"]), list(load(kw["pad"]))),
                                   {"mode": "constant", "value": float(kw.get("value", 0.0))})
    if packet is ATEN.upsample_nearest1d:
        scale = _nearest_scale(n, kw)
        if scale is not None:
            return graph.call_function(F.interpolate, (load(kw["input"]),),
                                       {"scale_factor": float(scale), "mode": "nearest"})
    if packet in (ATEN._softmax, ATEN._log_softmax):
        fn = torch.softmax if packet is ATEN._softmax else torch.log_softmax
        return graph.call_function(fn, (load(kw["input"]), kw["dim"]))
    if packet is ATEN.sym_size and len(n.args) == 2:
        return graph.call_method("size", load(n.args))
    if packet in _SAME_SIGNATURE:
        return graph.call_function(_SAME_SIGNATURE[packet], load(n.args), load(n.kwargs))
    if packet in _METHODS and first is not None:
        return graph.call_method(_METHODS[packet], load(n.args), load(n.kwargs))
    if packet is ATEN.slice and first is not None:
        dim = int(kw.get("dim", 0))
        sl = slice(load(kw.get("start")), load(kw.get("end")), load(kw.get("step", 1)))
        ndim = _meta_ndim(first)
        if ndim is not None:
            index = tuple([slice(None)] * (dim % ndim) + [sl])
            return graph.call_function(operator.getitem, (load(first), index))
    # element-wise operators (tagged pointwise) and anything unknown stay ATen calls
    return graph.call_function(target, load(n.args), load(n.kwargs))


def _one(v: Any) -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise UnsupportedNodeError(f"a 1-D layer parameter has {len(v)} values ({v}); only 1-D layers stream")
        return int(v[0])
    return int(v)


def _meta_ndim(node: Any) -> int | None:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return val.dim() if hasattr(val, "dim") else None


def _nearest_scale(n: fx.Node, kw: dict[str, Any]) -> float | None:
    sf = kw.get("scale_factors") or kw.get("scales")
    if sf:
        return float(sf[-1]) if isinstance(sf, (tuple, list)) else float(sf)
    src = kw["input"]
    vin, vout = (src.meta.get("val") if isinstance(src, fx.Node) else None), n.meta.get("val")
    if vin is not None and vout is not None and int(vin.shape[-1]) > 0:
        return int(vout.shape[-1]) / int(vin.shape[-1])
    return None


def _check_same(original: fx.GraphModule, lifted: fx.GraphModule, example: torch.Tensor) -> None:
    """The rewrite must not change the model: compare both on the example (and a random input)."""
    x = torch.randn_like(example) if example.is_floating_point() else example
    with torch.no_grad():
        want = original(x)
        try:
            got = lifted(x)
        except Exception as e:  # a lifting rule left the graph inconsistent: refuse, never crash later
            raise UnsupportedNodeError(
                f"torch.export traced the model, but its ATen graph could not be rewritten into torch calls "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                "please report it with the model, or make forward() traceable by torch.fx"
            ) from e
    want = want[0] if isinstance(want, (tuple, list)) and len(want) == 1 else want
    if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor)):
        return  # tuple outputs: the converter refuses them with its own message
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    if want.shape != got.shape or not torch.allclose(want, got, rtol=0, atol=1e-5 * scale):
        raise ThinkonceError(
            "internal error: rewriting the exported ATen graph into modules changed its output; "
            "please report it with the model, or pass the nn.Module itself"
        )


def as_module(model: Any, example: torch.Tensor | None, window: int | None) -> tuple[Any, torch.Tensor | None]:
    """``(module, example)`` for the converter: exported programs, TorchScript modules and ATen graphs
    are lifted to torch/nn calls; anything else passes through unchanged."""
    if isinstance(model, torch.jit.ScriptModule):
        if example is None:
            example = _script_example(model, window)
        model = from_torchscript(model, example)
    if isinstance(model, torch.export.ExportedProgram):
        if example is None:
            example = example_from_program(model)
            if example is None:
                raise ThinkonceError("pass example_input=: the exported program does not record one input shape")
            if window is not None and example.shape[-1] != window:
                raise ThinkonceError(
                    f"the program was exported for {example.shape[-1]} samples but window={window}; exported "
                    "shapes are static: export with an input of the window's length (or pass example_input=)"
                )
        model = model.module()
    if is_aten_graph(model):
        if example is None:
            raise ThinkonceError("pass example_input= (batch, channels, time) with an ATen graph")
        model = lift_aten_graph(model, example)
    return model, example


def _script_example(module: torch.jit.ScriptModule, window: int | None) -> torch.Tensor:
    """A zero input for a TorchScript module: channels of its first 3-D weight, ``window`` samples."""
    for name, p in module.named_parameters():
        if p.dim() == 3 and name.endswith("weight"):
            return torch.zeros(1, p.shape[1], window or 64, dtype=p.dtype)
    raise ThinkonceError("pass example_input= (batch, channels, time): no 1-D conv weight to infer channels from")


@contextlib.contextmanager
def _tensors_only_unpickling() -> Iterator[None]:
    """Within: ``torch.load`` runs with ``weights_only=True`` (tensors and plain containers only) and
    the two raw unpicklers ``torch.export.load`` may call for custom objects are refused."""
    import pickle

    saved = torch.load, pickle.loads, torch._C._pickle_load_obj

    def tensors_only(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return saved[0](f, *args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ThinkonceError("the archive holds a pickled Python object; thinkonce loads tensors only")

    torch.load, pickle.loads, torch._C._pickle_load_obj = tensors_only, refuse, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = saved


def load_exported_archive(path: Any) -> torch.export.ExportedProgram:
    """A ``torch.export`` ``.pt2`` archive, read without unpickling anything but tensors.

    ``torch.export.load`` alone unpickles weights and custom objects (PyTorch warns never to load an
    untrusted archive with it); here every unpickling goes through ``weights_only=True`` or is refused.
    """
    with _tensors_only_unpickling():
        try:
            return torch.export.load(path)
        except ThinkonceError:
            raise
        except Exception as e:
            raise ThinkonceError(
                f"could not read {path} as a torch.export archive holding tensors only "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
            ) from e
