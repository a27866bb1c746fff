"""TV-L1 optical flow in PyTorch, batched over frame pairs: the numerical scheme of OpenCV's CPU
`cv::optflow::DualTVL1OpticalFlow` (opencv_contrib modules/optflow/src/tvl1flow.cpp; each step checked against the
opencv-contrib-python 5.1 wheel), which follows Sánchez, Meinhardt-Llopis, Facciolo, "TV-L1 Optical Flow
Estimation", IPOL 2013.

What is reproduced, step by step (N pairs, all tensors float32 on `device`):
- images: uint8 -> float32 in 0..255 (no rescaling);
- pyramid: every level is cv::resize(previous level, fx = fy = scale_step, INTER_LINEAR): the size is rounded
  (cvRound), the sampling uses the factor itself, not the ratio of the rounded sizes; levels stop before one
  would be narrower or lower than 16 px;
- flow between levels: INTER_LINEAR resize to the finer level's size, then multiplied by 1 / scale_step;
- per level: centered gradient of I1 (one-sided halves at the border = replicate padding), then `warps` times:
  remap of I1 and its gradient at x + u with INTER_CUBIC (Keys a = -0.75 at the exact position, taps outside
  the image read 0 = BORDER_CONSTANT), the linearised residual
  rho_c = I1w - I1wx u1 - I1wy u2 - I0, and up to outer x inner iterations of: 5x5 median of u (before every
  inner run), thresholding (lambda * theta), primal update u = v + theta div p (div: backward differences, zero
  before the first row/column), dual update p = (p + tau/theta grad u) / (1 + tau/theta |grad u|) (grad: forward
  differences, zero on the last row/column);
- stopping: a pair stops at the end of the iteration where sum((u - u_prev)^2) <= epsilon^2 * H * W of its level
  and is frozen for the rest of that warp (OpenCV leaves both loops then). Batched pairs run the same fixed loop
  under a per-pair "active" mask, so a pair's result does not depend on the others in its batch.
Known, unavoidable differences: OpenCV sums that error in float32 in row order, we sum in float64, so a pair
right at the threshold may stop one iteration apart; float rounding of fused vs separate multiply-adds.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's DualTVL1OpticalFlow_create() defaults (gamma = 0, use_initial_flow = false are implied)."""
    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5

    def record(self) -> dict:
        """The same keys as OpenCV's getters give in flow_meta.json (gamma 0: the model without illumination)."""
        return {"tau": self.tau, "lambda": self.lambda_, "theta": self.theta, "nscales": self.nscales,
                "warps": self.warps, "epsilon": self.epsilon, "inner_iterations": self.inner_iterations,
                "outer_iterations": self.outer_iterations, "scale_step": self.scale_step, "gamma": 0.0,
                "median_filtering": self.median_filtering}


# ---------------------------------------------------------------- resize (cv::resize, INTER_LINEAR, float)

def _linear_taps(n_src: int, n_dst: int, scale: float, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices i0, i1 (n_dst,) and weight of i1 for OpenCV's linear resize along one axis.

    `scale` is source px per destination px; the centre of destination px d maps to (d + 0.5) * scale - 0.5
    (its fraction taken in double precision: OpenCV 5's weights are exact there, measured), and positions
    outside [0, n_src - 1] clamp to the edge (replicate)."""
    d = torch.arange(n_dst, dtype=torch.float64)
    pos = (d + 0.5) * scale - 0.5
    i0 = torch.floor(pos)
    frac = (pos - i0).to(torch.float32)
    i0 = i0.to(torch.int64)
    low, high = i0 < 0, i0 >= n_src - 1
    frac = torch.where(low | high, torch.zeros_like(frac), frac)
    i0 = torch.where(low, torch.zeros_like(i0), torch.where(high, torch.full_like(i0, n_src - 1), i0))
    i1 = torch.clamp(i0 + 1, max=n_src - 1)
    return i0.to(device), i1.to(device), frac.to(device)


def resize_linear(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> torch.Tensor:
    """(N, H, W) -> (N, h, w) = size, as cv::resize INTER_LINEAR on float32: horizontal pass, then vertical.

    scale = (sx, sy) source px per destination px; default: the ratio of the sizes (cv::resize given dsize)."""
    h_src, w_src = x.shape[1:]
    h, w = size
    sx, sy = scale if scale is not None else (w_src / w, h_src / h)
    x0, x1, fx = _linear_taps(w_src, w, sx, x.device)
    y0, y1, fy = _linear_taps(h_src, h, sy, x.device)
    rows = x.index_select(2, x0) * (1 - fx) + x.index_select(2, x1) * fx  # (N, H_src, w)
    fy = fy[:, None]
    return rows.index_select(1, y0) * (1 - fy) + rows.index_select(1, y1) * fy


def pyramid_sizes(h: int, w: int, params: TVL1Params) -> list[tuple[int, int]]:
    """(h, w) of every level, finest first; cvRound(size * scale_step) of the previous level, >= 16 px."""
    sizes = [(h, w)]
    for _ in range(1, params.nscales):
        ph, pw = sizes[-1]
        nh, nw = round(ph * params.scale_step), round(pw * params.scale_step)  # round half to even = cvRound
        if nh < 16 or nw < 16:
            break
        sizes.append((nh, nw))
    return sizes


# ---------------------------------------------------------------- remap (cv::remap, INTER_CUBIC, constant 0)

def cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys cubic weights (a = -0.75, OpenCV's) of the taps -1, 0, 1, 2 for fractions t: (...) -> (..., 4)."""
    a = -0.75
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return torch.stack([w0, w1, w2, 1 - w0 - w1 - w2], -1)


def remap_cubic(images: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """images (N, C, H, W) sampled at (x + u1, y + u2) (u: (N, H, W)) -> (N, C, H, W); taps outside read 0.

    OpenCV 5's remap weights follow the exact fractional position (no 1/32 px table; measured against
    cv2.remap), so the weights are computed per pixel."""
    n, c, h, w = images.shape
    ys = torch.arange(h, device=u1.device, dtype=torch.float32)[:, None]
    xs = torch.arange(w, device=u1.device, dtype=torch.float32)
    x, y = xs + u1, ys + u2
    fx, fy = torch.floor(x), torch.floor(y)
    wx, wy = cubic_weights(x - fx), cubic_weights(y - fy)  # (N, H, W, 4)
    # Tap indices clamped to [-1, size] land on one ring of zeros when outside the image (BORDER_CONSTANT 0);
    # clamping in float first keeps huge flows from overflowing the integer conversion.
    left = torch.clamp(fx - 1, -4.0, float(w)).to(torch.int64)
    top = torch.clamp(fy - 1, -4.0, float(h)).to(torch.int64)
    padded = F.pad(images, (1, 1, 1, 1)).reshape(n, c, (h + 2) * (w + 2))
    out = torch.zeros_like(images)
    for i in range(4):
        row = (torch.clamp(top + i, -1, h) + 1) * (w + 2)
        acc = torch.zeros_like(images)
        for j in range(4):
            index = (row + torch.clamp(left + j, -1, w) + 1).reshape(n, 1, h * w).expand(n, c, h * w)
            acc += torch.gather(padded, 2, index).reshape(n, c, h, w) * wx[None, ..., j].transpose(0, 1)
        out += acc * wy[None, ..., i].transpose(0, 1)
    return out


# ---------------------------------------------------------------- finite differences, median

def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) -> d/dx, d/dy: 0.5 * (next - previous), the outside neighbour replicating the edge."""
    p = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., H, W) -> next - current along x and y; 0 on the last column (x) and the last row (y)."""
    dx = F.pad(u[..., 1:] - u[..., :-1], (0, 1))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """(..., H, W) backward differences, with a 0 before the first column/row: minus the adjoint of
    forward_gradient."""
    return px - F.pad(px[..., :-1], (1, 0)) + py - F.pad(py[..., :-1, :], (0, 0, 1, 0))


def median_blur(u: torch.Tensor, k: int) -> torch.Tensor:
    """(N, H, W) k x k median (k odd), the border replicated, as cv::medianBlur on float32."""
    r = k // 2
    p = F.pad(u[:, None], (r, r, r, r), mode="replicate")[:, 0]
    h, w = u.shape[1:]
    windows = torch.stack([p[:, i:i + h, j:j + w] for i in range(k) for j in range(k)], 0)
    return windows.median(0).values


# ---------------------------------------------------------------- the solver

def _iteration(u: torch.Tensor, p: torch.Tensor, keep: torch.Tensor | None, gw: torch.Tensor, rho_c: torch.Tensor,
               grad: torch.Tensor, flat: torch.Tensor, l_t: float, taut: float,
               theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One inner iteration: (u (N, 2, h, w), p (N, 2, 2, h, w)) -> (u, p, per-pair error (N,) float64).

    keep (N,) bool: pairs still iterating (the others keep u and p); None = all of them."""
    # Thresholding (OpenCV's estimateV): d = clamp(-rho / |grad|^2, -l_t, l_t) * grad I1w, which is its three
    # cases (rho < -l_t |grad|^2, rho > l_t |grad|^2, between); where |grad|^2 ~ 0 the first two cases still
    # apply to the sign of rho.
    rho = rho_c + (gw * u).sum(1)
    step = torch.where(flat, -l_t * torch.sign(rho), (-rho / grad).clamp(-l_t, l_t))
    new = u + step[:, None] * gw + theta * divergence(p[:, :, 0], p[:, :, 1])  # u = v + theta div p
    change = new - u
    error = (change * change).sum((1, 2, 3), dtype=torch.float64)
    u = new if keep is None else torch.where(keep[:, None, None, None], new, u)
    # Dual step with the forward gradient of u (0 on the last column / row).
    grad_u = torch.stack(forward_gradient(u), 2)  # (N, 2, 2, h, w)
    norm = 1 + taut * torch.hypot(grad_u[:, :, 0], grad_u[:, :, 1])
    new_p = (p + taut * grad_u) / norm[:, :, None]
    p = new_p if keep is None else torch.where(keep[:, None, None, None, None], new_p, p)
    return u, p, error


@functools.lru_cache(maxsize=1)
def _compiled_iteration():
    """_iteration fused by torch.compile (its ~30 element-wise ops into a few kernels); built on first use."""
    return torch.compile(_iteration, dynamic=True)


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, params: TVL1Params,
               compile: bool = False) -> torch.Tensor:
    """Flow u (N, 2, h, w) refined on one pyramid level; i0, i1 (N, h, w).

    Both flow components and both dual fields live in one tensor each (u: (N, 2, h, w), p: (N, 2, 2, h, w) =
    [component][x, y]), so one op updates all of them: the inner iteration is about 30 tensor ops."""
    n, h, w = i0.shape
    eps = params.epsilon ** 2 * h * w
    l_t = params.lambda_ * params.theta
    taut = params.tau / params.theta
    theta = params.theta
    iteration = _compiled_iteration() if compile else _iteration
    i1x, i1y = centered_gradient(i1)
    stack = torch.stack([i1, i1x, i1y], 1)
    p = torch.zeros(n, 2, 2, h, w, dtype=u.dtype, device=u.device)
    for _ in range(params.warps):
        warped = remap_cubic(stack, u[:, 0], u[:, 1])
        i1w, gw = warped[:, 0], warped[:, 1:]  # I1(x + u0), its gradient (N, 2, h, w)
        grad = (gw * gw).sum(1)
        rho_c = i1w - (gw * u).sum(1) - i0
        flat = grad <= torch.finfo(torch.float32).eps  # |grad I1w|^2 ~ 0: OpenCV's third case gives d = 0
        active = torch.ones(n, dtype=torch.bool, device=i0.device)
        every = True  # all pairs active: commit without masking (the common case, and all of a single pair)
        for _ in range(params.outer_iterations):
            if params.median_filtering > 1:
                med = median_blur(u.reshape(n * 2, h, w), params.median_filtering).reshape(n, 2, h, w)
                u = med if every else torch.where(active[:, None, None, None], med, u)
            for _ in range(params.inner_iterations):
                keep = None if every else active
                u, p, error = iteration(u, p, keep, gw, rho_c, grad, flat, l_t, taut, theta)
                active = active & (error > eps)
                every = bool(active.all())
                if not every and not bool(active.any()):
                    break
            if not bool(active.any()):
                break
    return u


@torch.no_grad()
def tvl1_flow(i0: torch.Tensor, i1: torch.Tensor, params: TVL1Params = TVL1Params(),
              compile: bool = False) -> torch.Tensor:
    """Flow from i0 to i1: (N, H, W) grayscale (uint8 or float in 0..255) -> (N, 2, H, W) float32, channel 0
    = x (right), 1 = y (down), such that i1(x + u) ~ i0(x). Same device as the inputs.

    compile=True runs the inner iteration through torch.compile (a GPU speed lever; the first call compiles)."""
    if i0.shape != i1.shape or i0.dim() != 3:
        raise ValueError(f"need two (N, H, W) stacks of the same shape, got {tuple(i0.shape)}, {tuple(i1.shape)}")
    if min(i0.shape[1:]) < 3:
        raise ValueError("TV-L1 needs frames of at least 3x3 px")
    sizes = pyramid_sizes(i0.shape[1], i0.shape[2], params)
    levels0, levels1 = [i0.to(torch.float32)], [i1.to(torch.float32)]
    for size in sizes[1:]:
        factor = (1 / params.scale_step, 1 / params.scale_step)  # cv::resize(fx, fy): sample by the factor
        levels0.append(resize_linear(levels0[-1], size, factor))
        levels1.append(resize_linear(levels1[-1], size, factor))
    n, (h, w) = i0.shape[0], sizes[-1]
    u = torch.zeros(n, 2, h, w, dtype=torch.float32, device=i0.device)
    for s in range(len(sizes) - 1, -1, -1):
        u = _one_scale(levels0[s], levels1[s], u, params, compile)
        if s:  # to the next finer level: resize each component, scale by 1 / scale_step
            u = resize_linear(u.reshape(n * 2, *sizes[s]), sizes[s - 1]).reshape(n, 2, *sizes[s - 1])
            u = u * (1 / params.scale_step)
    return u


def bytes_per_pair(h: int, w: int) -> int:
    """A generous estimate of the peak device memory of one pair at full size, used to size a batch: the median's
    25 shifted copies of both flow components and its sort (~400 B/px), remap's weights and gathers, and ~30 float
    planes of state and temporaries; a batch that still does not fit is split by the caller."""
    return h * w * 600


def auto_batch_size(h: int, w: int, device: torch.device, cap: int = 256) -> int:
    """Pairs per call: what fits in half of the free CUDA memory (the other half left to the rest of the
    process and to fragmentation), at most `cap`; on a CPU 8 pairs (no gain from more, bounded RAM)."""
    if device.type != "cuda":
        return 8
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, math.floor(free * 0.5 / bytes_per_pair(h, w))))
