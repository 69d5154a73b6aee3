"""Parity assertions between our modules and reference implementations, and between op backends."""

from __future__ import annotations

import torch
import torch.nn as nn


def assert_grads_close(ours: nn.Module, ref: nn.Module, *, name_map=lambda n: n, atol: float, rtol: float,
                       skip: tuple[str, ...] = ()) -> int:
    """Every parameter of `ref` with a gradient must match ours (by mapped name). Returns the count."""
    our_params = dict(ours.named_parameters())
    checked = 0
    for name, p in ref.named_parameters():
        if name in skip:
            continue
        mine = our_params.get(name_map(name))
        assert mine is not None, f"parameter {name} has no counterpart {name_map(name)!r} in {type(ours).__name__}"
        assert (p.grad is None) == (mine.grad is None), f"{name}: gradient present on one side only"
        if p.grad is not None:
            torch.testing.assert_close(mine.grad, p.grad, atol=atol, rtol=rtol,
                                       msg=lambda m, name=name: f"grad of {name}: {m}")
            checked += 1
    return checked


def _is_float_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def run_with_grads(fn, *inputs, **kwargs):
    """`fn`'s output and the gradients of its floating-point tensor inputs under a fixed random probe; other
    inputs (an op's eps, integer ids) pass through as they are."""
    inputs = [x.detach().clone().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x
              for x in inputs]
    out = fn(*inputs, **kwargs)
    # randn(shape), not randn_like: the latter follows the output's strides, so a transposed
    # output would get its probe values in another logical order.
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
    (out.float() * probe).sum().backward()
    return out, [x.grad for x in inputs if _is_float_tensor(x)]


def assert_parity(ref, backend, inputs, tol, **kwargs):
    """Outputs and input gradients of an op backend equal the reference's within `tol`."""
    out_r, grads_r = run_with_grads(ref, *inputs, **kwargs)
    out_b, grads_b = run_with_grads(backend, *inputs, **kwargs)
    torch.testing.assert_close(out_b, out_r, **tol)
    for g_b, g_r in zip(grads_b, grads_r):
        torch.testing.assert_close(g_b, g_r, **tol)


def assert_as_precise(ref, backend, inputs, factor: float = 2.0, **kwargs):
    """Half precision: the backend's outputs and input gradients are at most `factor` times as far from the
    reference run in fp32 as the half-precision reference is. Both round, at places of their own, and a
    gradient summed from rounded products can cancel to near zero, so one rounding element by element is no
    bound there; the distance to the fp32 result is."""
    exact_out, exact_grads = run_with_grads(ref, *[x.float() if _is_float_tensor(x) else x for x in inputs], **kwargs)
    out_r, grads_r = run_with_grads(ref, *inputs, **kwargs)
    out_b, grads_b = run_with_grads(backend, *inputs, **kwargs)
    for what, exact, r, b in zip(["output"] + [f"gradient of input {i}" for i in range(len(grads_r))],
                                 [exact_out, *exact_grads], [out_r, *grads_r], [out_b, *grads_b], strict=True):
        error_r = (r.float() - exact).abs().max().item()
        error_b = (b.float() - exact).abs().max().item()
        floor = 1e-6 * exact.abs().max().item()  # both exact: fp32's own rounding
        assert error_b <= factor * error_r + floor, (
            f"{what}: the backend is {error_b:.3g} from fp32, the reference {error_r:.3g} (at most {factor}x allowed)")
