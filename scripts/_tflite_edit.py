"""Flatbuffer clean-up shared by the model-editing scripts (prune_models, quantize_models).

After ops are removed from a TFLite model, tensors and buffers they alone used are
left behind; this renumbers what is still referenced so the file carries no dead weight.
"""
from __future__ import annotations


def compact_model(model) -> None:
    """Keep only tensors an op, a graph edge or a signature uses, and the buffers they use.

    Works on a mutable ``ModelT`` of the TFLite schema (single subgraph). Buffer 0, the
    schema's mandatory empty sentinel, keeps its place.
    """
    sg = model.subgraphs[0]
    used = set(sg.inputs) | set(sg.outputs)
    for op in sg.operators:
        used.update(t for t in op.inputs if t >= 0)
        used.update(t for t in op.outputs if t >= 0)
        used.update(t for t in (op.intermediates or []) if t >= 0)
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    sg.tensors = [sg.tensors[i] for i in order]
    sg.inputs = [remap[t] for t in sg.inputs]
    sg.outputs = [remap[t] for t in sg.outputs]
    for op in sg.operators:
        op.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [remap[t] if t >= 0 else t for t in op.outputs]
        if op.intermediates:
            op.intermediates = [remap[t] if t >= 0 else t for t in op.intermediates]
    for sig in model.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            if tm.tensorIndex in remap:
                tm.tensorIndex = remap[tm.tensorIndex]
    keep = sorted({0} | {t.buffer for t in sg.tensors} | {m.buffer for m in (model.metadata or [])})
    bremap = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for t in sg.tensors:
        t.buffer = bremap[t.buffer]
    for m in model.metadata or []:
        m.buffer = bremap[m.buffer]
