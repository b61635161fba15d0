"""A network as a sequence of blocks, named by an architecture spec; its theory composes its blocks'.

Architectures (``--arch``). Layer 1 is always the dense input layer z¹ = W¹x + b¹; layers 2..L are
one block type, named by ``-``-joined tokens:

- the kind: ``mlp`` (:class:`~hevar.blocks.dense.Dense`, zˡ = Wˡφ(zˡ⁻¹) + bˡ) or ``resmlp``
  (:class:`~hevar.blocks.residual.Residual`, zˡ = zˡ⁻¹ + α(Wˡφ(zˡ⁻¹) + bˡ), α = ``--branch-scale``);
- optionally a normalisation (:mod:`~hevar.blocks.norm`): ``preln`` / ``prerms`` (of the block's
  input, before φ) or ``postln`` / ``postrms`` (of its output);
- optionally dropout with keep probability P on the weight's input: ``dropP`` (``drop0.9``).

So ``mlp`` is today's network, ``resmlp`` the pre-activation residual MLP, ``preln-resmlp`` the
MLP block of a pre-LN Transformer, ``postln-resmlp`` the original Transformer's placement and
``drop0.8-mlp`` a dropout MLP. The canonical order is [norm-][dropP-]kind.

The branch scale is a number ≥ 0 or an expression in the depth L: ``1/sqrt(L)``, ``1/sqrt(2L)``,
``L^(-1/2)`` (+ − * / ^ or **, parentheses, sqrt, exp, log; ``2L`` means 2·L).

Theory. The trajectories iterate over *runs* of equal consecutive blocks and call each block's
vectorised maps (:mod:`hevar.blocks.base`): forward, ln qˡ block after block; backward,
ln q̃ˡ = ln q̃ᴸ + Σ_{m>l} ln(q̃ᵐ⁻¹/q̃ᵐ), a cumulative sum of the blocks' factors; Theorem 1.1's
gradient norm N_l·E[(∂J/∂uˡ)²]·N_{l-1}·E[(hˡ)²]. There are no per-architecture branches here: a
new block type is a new class with those hooks.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from dataclasses import dataclass

import numpy as np

from hevar.blocks.base import Block
from hevar.blocks.dense import Dense
from hevar.blocks.residual import Residual
from hevar.errors import UsageError
from hevar.meanfield import theory
from hevar.meanfield.activations import Activation

Array = np.ndarray

DEFAULT_ARCH = "mlp"
DEFAULT_BRANCH_SCALE = "1"
KINDS = ("mlp", "resmlp")
NORM_TOKENS = {"preln": ("ln", "pre"), "postln": ("ln", "post"), "prerms": ("rms", "pre"), "postrms": ("rms", "post")}
ARCH_HELP = ("mlp, resmlp, or '-'-joined tokens: a kind (mlp, resmlp), optionally a normalisation (preln, postln, "
             "prerms, postrms) and dropout dropP with keep probability P in (0, 1] (e.g. preln-resmlp, drop0.9-mlp)")
BRANCH_HELP = "a number >= 0 or an expression in the depth L such as 1/sqrt(L), 1/sqrt(2L) or L^(-1/2)"


@dataclass(frozen=True)
class ArchSpec:
    """A parsed architecture: the block type of layers 2..L."""

    kind: str = "mlp"  # "mlp" or "resmlp"
    norm: str = ""  # "", "ln", "rms"
    norm_at: str = "pre"  # "pre" or "post"
    keep_prob: float = 1.0  # dropout keep probability on each hidden weight's input

    @property
    def text(self) -> str:
        """The canonical spec."""
        parts = [f"{self.norm_at}{self.norm}"] if self.norm else []
        if self.keep_prob < 1:
            parts.append("drop" + _num(self.keep_prob))
        parts.append(self.kind)
        return "-".join(parts)

    @property
    def residual(self) -> bool:
        return self.kind == "resmlp"


def _num(x: float) -> str:
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def parse_arch(raw) -> ArchSpec:
    """The :class:`ArchSpec` of an architecture spec; raises :class:`UsageError` otherwise."""
    def bad() -> UsageError:
        return UsageError(f"The 'arch' parameter must be {ARCH_HELP}. Got '{raw}' instead.", param="arch")

    if not isinstance(raw, str) or not raw.strip():
        raise bad()
    kind, norm, keep = None, None, None
    for token in raw.strip().lower().split("-"):
        if token in KINDS and kind is None:
            kind = token
        elif token in NORM_TOKENS and norm is None:
            norm = NORM_TOKENS[token]
        elif token.startswith("drop") and keep is None:
            try:
                keep = float(token[4:])
            except ValueError:
                raise bad() from None
            if not (0 < keep <= 1):
                raise bad()
        else:
            raise bad()
    if kind is None:
        raise bad()
    n, at = norm or ("", "pre")
    return ArchSpec(kind, n, at, 1.0 if keep is None else keep)


# --- branch scale expressions -----------------------------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow}
_FUNCS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log}


def _evaluate(text: str, depth: int) -> float:
    expr = re.sub(r"(\d|\))\s*(L\b|sqrt|exp|log|\()", r"\1*\2", text.replace("^", "**"))

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "L":
            return float(depth)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and len(node.args) == 1 and not node.keywords):
            return _FUNCS[node.func.id](ev(node.args[0]))
        raise ValueError(text)

    if len(expr) > 200:
        raise ValueError(text)
    return float(ev(ast.parse(expr, mode="eval")))


def branch_scale(text: str, depth: int) -> float:
    """α of a canonical branch-scale text at depth L; raises :class:`UsageError` if not a finite number ≥ 0."""
    why = ""  # why a well-formed expression has no value at this depth: 1/(L-1) at L = 1, L**1000
    try:
        value = _evaluate(text, depth)
    except ZeroDivisionError:
        value, why = math.nan, "undefined"
    except OverflowError:
        value, why = math.nan, "beyond float64"
    except (ValueError, SyntaxError, TypeError, ArithmeticError, RecursionError) as exc:
        value, why = math.nan, "undefined" if "domain" in str(exc) else ""  # sqrt or log of a negative number
    if not (math.isfinite(value) and value >= 0):
        try:
            float(text)
            plain = True
        except ValueError:
            plain = False
        shown = (f"{text} ({why} at L = {depth})" if why and not plain else
                 text if plain or math.isnan(value) else f"{text} (= {value:g} at L = {depth})")
        raise UsageError(f"The 'branch-scale' parameter must be {BRANCH_HELP}. Got '{shown}' instead.",
                         param="branch-scale")
    return value


def parse_branch_scale(raw, depths=(1,)) -> str:
    """The canonical text of a branch scale (whitespace removed), checked at every depth of ``depths``."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise UsageError(f"The 'branch-scale' parameter must be {BRANCH_HELP}. Got {raw!r} instead.",
                         param="branch-scale")
    text = _num(raw) if isinstance(raw, (int, float)) else re.sub(r"\s+", "", raw)
    if not text:
        raise UsageError(f"The 'branch-scale' parameter must be {BRANCH_HELP}. Got '{raw}' instead.",
                         param="branch-scale")
    for d in depths:
        branch_scale(text, d)
    try:  # a plain number is written canonically ("1.0" → "1")
        return _num(float(text))
    except ValueError:
        return text


# --- the network ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """Blocks l = 1..L (block l owns Wˡ) and the composed theory."""

    blocks: tuple[Block, ...]
    arch: str = DEFAULT_ARCH  # the canonical architecture spec it was built from
    q_in: float = 1.0  # E[x²] of the unactivated input the theory starts from (a pre-activation input: V(q_in))

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def scaled(self) -> bool:
        """The forward stream may carry a log scale: every block is equivariant."""
        return all(b.equivariant for b in self.blocks)

    @property
    def n_buffers(self) -> int:
        return max(b.n_buffers for b in self.blocks)

    @property
    def plain(self) -> bool:
        """Today's MLP: dense blocks without normalisation or dropout."""
        return all(isinstance(b, Dense) and b.plain for b in self.blocks)

    @property
    def zero_gradient_layers(self) -> np.ndarray:
        """(L,) bool: layers whose ∂J/∂Wˡ is exactly 0 at initialisation (a residual branch at α = 0,
        SkipInit), where ln ‖∂J/∂Wˡ‖² = −inf is the answer, not an underflow."""
        return np.array([getattr(b, "alpha", 1.0) == 0 for b in self.blocks])

    def runs(self) -> list[tuple[int, int]]:
        """[start, stop) of each maximal run of equal consecutive blocks (0-based)."""
        out, start = [], 0
        for i in range(1, len(self.blocks) + 1):
            if i == len(self.blocks) or self.blocks[i] != self.blocks[start]:
                out.append((start, i))
                start = i
        return out

    # --- theory -----------------------------------------------------------------------------------

    def log_q_trajectory(self, s_in: Array, sigma_b2: float, widths: Array, q_in: float | None = None) -> Array:
        """ln qˡ, l = 1..L, from the input variance (s_in: σ_{w,l}²·N_{l-1}, shape (L,); widths (L+1,);
        ``q_in`` default: the network's)."""
        q_in = self.q_in if q_in is None else q_in
        s_in = np.asarray(s_in, dtype=float)
        widths = np.asarray(widths)
        out = np.empty(self.depth)
        prev = None
        for a, b in self.runs():
            out[a:b] = self.blocks[a].log_q_run(prev, s_in[a:b], sigma_b2, widths[a:b + 1], q_in)
            prev = out[b - 1]
        return out

    def log_q_tilde_trajectory(self, s_in: Array, s_out: Array, sigma_b2: float, widths: Array, log_q: Array,
                               log_q_tilde_top: float) -> Array:
        """ln q̃ˡ, l = 1..L, started at ln q̃ᴸ (s_out as :func:`hevar.engine.init.scaled_variances`:
        entry l-1 is block l+1's σ_{w,l+1}²·N_{l+1})."""
        L = self.depth
        out = np.empty(L)
        out[L - 1] = log_q_tilde_top
        if L > 1:
            steps = self._per_block("log_chi_run", log_q, s_in, sigma_b2, widths, s_out=s_out)[1:]
            out[:-1] = log_q_tilde_top + np.cumsum(steps[::-1])[::-1]
        return out

    def log_grad_norm2(self, widths: Array, log_q: Array, log_q_tilde: Array, s_in: Array, sigma_b2: float,
                       q_in: float | None = None) -> Array:
        """ln of Theorem 1.1's E‖∂J/∂Wˡ‖² ≈ N_l·E[(∂J/∂uˡ)²]·N_{l-1}·E[(hˡ)²], l = 1..L."""
        widths = np.asarray(widths, dtype=float)
        out = np.log(widths[1:]) + log_q_tilde + np.log(widths[:-1]) + self.log_h_trajectory(log_q, q_in)
        du = self.log_du_trajectory(log_q, s_in, sigma_b2, widths)
        return out if du is None else out + du

    def log_h_trajectory(self, log_q: Array, q_in: float | None = None) -> Array:
        """ln E[(hˡ)²] of each weight's input, l = 1..L, from the forward trajectory."""
        q_in = self.q_in if q_in is None else q_in
        log_h = np.empty(self.depth)
        prev = self._inputs(log_q)
        for a, b in self.runs():
            log_h[a:b] = self.blocks[a].log_h(prev[a:b], q_in)
        return log_h

    def log_du_trajectory(self, log_q: Array, s_in: Array, sigma_b2: float, widths: Array) -> Array | None:
        """ln(E[(∂J/∂uˡ)²]/q̃ˡ), l = 1..L; None when ∂J/∂uˡ = δˡ at every layer (dense blocks)."""
        prev = self._inputs(log_q)
        s_in = np.asarray(s_in, dtype=float)
        widths = np.asarray(widths)
        du = [self.blocks[a].log_du_run(prev[a:b], s_in[a:b], sigma_b2, widths[a:b + 1]) for a, b in self.runs()]
        if all(d is None for d in du):
            return None
        return np.concatenate([np.zeros(b - a) if d is None else d for (a, b), d in zip(self.runs(), du)])

    @staticmethod
    def _inputs(log_q: Array) -> Array:
        """ln q of each block's input (block 1's entry, the input layer's, is unused)."""
        return np.concatenate([[0.0], np.asarray(log_q, dtype=float)[:-1]])

    def _per_block(self, hook: str, log_q, s_in, sigma_b2, widths, s_out) -> Array:
        """A backward hook per block l = 1..L at its input variance qˡ⁻¹ (block 1's entry is unused)."""
        log_q = np.asarray(log_q, dtype=float)
        s_in = np.asarray(s_in, dtype=float)
        s_out = np.asarray(s_out, dtype=float)
        widths = np.asarray(widths)
        out = np.zeros(self.depth)
        for a, b in self.runs():
            if a == 0:
                if b == 1:
                    continue
                a = 1  # block 1's factor is never needed (q̃⁰ is not reported)
            # block l's factor uses s_out[l-2] (σ_{w,l}²·N_l) and its input ln q^{l-1} = log_q[l-2]
            out[a:b] = getattr(self.blocks[a], hook)(log_q[a - 1:b - 1], s_in[a:b], s_out[a - 1:b - 1], sigma_b2,
                                                     widths[a:b + 1])
        return out

    # --- fixed points where the stack has them ----------------------------------------------------

    def _act(self) -> Activation | None:
        return self.blocks[-1].act if self.depth > 1 else None

    def _dropout_mlp(self) -> float | None:
        """p when the hidden blocks are dense with dropout only (the MLP's map with σ_w²N/p), else None."""
        hidden = self.blocks[1:]
        if hidden and all(isinstance(b, Dense) and not b.norm for b in hidden) and len({b.keep_prob for b in hidden}) == 1:
            return hidden[0].keep_prob
        return None

    def chi1(self, act: Activation, s: float, sigma_b2: float) -> float:
        """χ₁ at the forward fixed point for a constant-width stack that has one (plain or dropout
        MLP: the MLP's χ₁ at σ_w²N/p, the input layer's q¹ = σ_w²N·q_in + σ_b² unchanged); nan otherwise."""
        p = self._dropout_mlp()
        if p is None:
            return math.nan
        q = self.q_in
        return theory.chi1(act, s, sigma_b2, q_in=q) if p == 1 else theory.chi1(act, s / p, sigma_b2, q_in=p * q)

    def critical(self, act: Activation, sigma_b2: float) -> theory.Critical:
        """The critical σ_w²·N of the stack: the MLP's, times p behind dropout (2p for ReLU,
        Pretorius et al. 2018); for other stacks none is defined (nan, kind "")."""
        p = self._dropout_mlp()
        if p is None:
            return theory.Critical(math.nan, "", math.nan)
        q = self.q_in
        crit = theory.critical_sigma_w2_n(act, sigma_b2, q) if p == 1 else theory.critical_sigma_w2_n(act, sigma_b2, p * q)
        if p == 1:
            return crit
        return theory.Critical(crit.sigma_w2_n * p, crit.kind, crit.q_star, crit.label, crit.chi1_below,
                               crit.chi1_above, crit.jump_at * p)


@functools.lru_cache(maxsize=256)
def build(arch: str, act: Activation, depth: int, branch_scale_text: str = DEFAULT_BRANCH_SCALE,
          q_in: float = 1.0) -> Network:
    """The network of ``arch`` (a spec, see the module docstring) with activation ``act`` at depth L,
    its theory started from an unactivated input of second moment ``q_in``."""
    spec = parse_arch(arch)
    common = dict(act=act, norm=spec.norm, norm_at=spec.norm_at, keep_prob=spec.keep_prob)
    if spec.residual:
        hidden: Block = Residual(**common, alpha=branch_scale(branch_scale_text, depth))
    else:
        hidden = Dense(**common)
    return Network((Dense(None),) + (hidden,) * (depth - 1), spec.text, float(q_in))


def mlp(act: Activation, depth: int) -> Network:
    """Today's network: the input layer and L − 1 plain dense blocks."""
    return build(DEFAULT_ARCH, act, depth)


# --- theory of a stack: per-block factors and the branch scale for a target gradient ratio --------


def stack_report(arch: str, act: Activation, depth: int, sigma_w2_n: float, sigma_b2: float = 0.0,
                 branch_scale_text: str = DEFAULT_BRANCH_SCALE, factor: float = 2.0) -> dict:
    """The composed mean-field prediction for a constant-width stack, as one dict.

    Keys: ``arch``, ``activation``, ``depth``, ``sigma_w2_n``, ``sigma_b2``, ``branch_scale`` (α at
    this depth, or None without residual blocks), ``log10_q_ratio`` (log₁₀ qᴸ/q¹),
    ``log10_q_tilde_ratio`` (log₁₀ q̃¹/q̃ᴸ), ``factor``, ``branch_scale_for_factor`` (the α at which
    q̃¹/q̃ᴸ = ``factor``, the largest keeping the gradient ratio within it; None without residual
    blocks, inf when no α reaches it) and ``layers``: per block l = 1..L its ``q``, ``q_tilde``
    (q̃ᴸ = 1), ``forward_factor`` qˡ/qˡ⁻¹ and ``backward_factor`` q̃ˡ⁻¹/q̃ˡ (None for l = 1).
    """
    net = build(arch, act, depth, branch_scale_text)
    log_q, log_qt = _trajectories(net, depth, sigma_w2_n, sigma_b2)
    residual = parse_arch(arch).residual
    with np.errstate(over="ignore"):  # qˡ, q̃ˡ beyond float64 are reported as inf
        layers = [dict(layer=l + 1, q=float(np.exp(log_q[l])), q_tilde=float(np.exp(log_qt[l])),
                       forward_factor=None if l == 0 else float(np.exp(log_q[l] - log_q[l - 1])),
                       backward_factor=None if l == 0 else float(np.exp(log_qt[l - 1] - log_qt[l])))
                  for l in range(depth)]
    return dict(arch=net.arch, activation=act.name, depth=depth, sigma_w2_n=float(sigma_w2_n), sigma_b2=float(sigma_b2),
                branch_scale=branch_scale(branch_scale_text, depth) if residual else None,
                log10_q_ratio=float((log_q[-1] - log_q[0]) / math.log(10)),
                log10_q_tilde_ratio=float((log_qt[0] - log_qt[-1]) / math.log(10)), factor=float(factor),
                branch_scale_for_factor=branch_scale_for(arch, act, depth, sigma_w2_n, sigma_b2, factor)
                if residual else None, layers=layers)


def _trajectories(net: Network, depth: int, s: float, sigma_b2: float) -> tuple[Array, Array]:
    sv, widths = np.full(depth, float(s)), np.ones(depth + 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_q = net.log_q_trajectory(sv, sigma_b2, widths)
        return log_q, net.log_q_tilde_trajectory(sv, sv, sigma_b2, widths, log_q, 0.0)


def branch_scale_for(arch: str, act: Activation, depth: int, sigma_w2_n: float, sigma_b2: float = 0.0,
                     factor: float = 2.0) -> float:
    """The branch scale α at which the predicted q̃¹/q̃ᴸ of a residual stack equals ``factor`` (> 1).

    α = 0 gives q̃¹/q̃ᴸ = 1 (every block the identity) and the ratio grows with α, so this is the
    largest α that keeps the gradient ratio within ``factor``: bisection on α to 1e-12 relative;
    inf if no α up to 1e6 reaches it (e.g. behind a pre-norm when the stream outgrows the branch).
    For ReLU without bias or normalisation it is √(factor^(1/(L−1)) − 1)/√(σ_w²N/2).
    """
    if not parse_arch(arch).residual:
        raise ValueError(f"{arch} has no residual branch")
    target = math.log(factor)

    def excess(alpha: float) -> float:
        _, log_qt = _trajectories(build(arch, act, depth, _num(alpha)), depth, sigma_w2_n, sigma_b2)
        return float(log_qt[0] - log_qt[-1]) - target

    lo, hi = 0.0, 1.0
    while excess(hi) < 0:
        lo, hi = hi, hi * 4
        if hi > 1e6:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)
