"""A timing reference: the released CMG quantizer step for two modalities, re-implemented from the description in
shared/specs/cmg.md §1, §3 (`Cross_VQEmbeddingEMA`). Used only by bench_cmg.py; it is not part of the library.

What it does per forward, as described there: squared distances for the assignment (detached), the same distances
again with gradient for L_cmcm (sqrt, softmax over codes, time mean, the code's asymmetric S, row-wise InfoNCE with a
global max shift, weight 0.5), one-hot encodings, a sequential EMA pass per modality with Laplace smoothing and the
paired mediator (dw by one-hot matrix products), commitment 2β self + β cross, straight-through, perplexities, and
the dead-code counter: +1 for every code, 0 for every assigned index (a Python loop with `.item()`), then a Python
loop over the codes that resets those idle for more than 300 forwards to a random recently active code plus noise.
"""
import random

import torch
import torch.nn.functional as F
from torch import nn


class OfficialCrossVQ(nn.Module):
    def __init__(self, n_codes: int = 400, dim: int = 256, beta: float = 0.25, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.beta, self.decay, self.eps = beta, decay, eps
        emb = torch.empty(n_codes, dim).uniform_(-1 / n_codes, 1 / n_codes)
        self.register_buffer("embedding", emb)
        self.register_buffer("ema_count", torch.zeros(n_codes))
        self.register_buffer("ema_weight", emb.clone())
        self.register_buffer("unactivated_count", -torch.ones(n_codes))

    def _dist(self, x):
        return torch.addmm(torch.sum(self.embedding ** 2, dim=1) + torch.sum(x ** 2, dim=1, keepdim=True),
                           x, self.embedding.t(), alpha=-2.0, beta=1.0)

    def _ema_pass(self, enc, own, other):
        M = self.embedding.shape[0]
        self.ema_count = self.decay * self.ema_count + (1 - self.decay) * torch.sum(enc, dim=0)
        n = torch.sum(self.ema_count)
        self.ema_count = (self.ema_count + self.eps) / (n + M * self.eps) * n
        dw, dw_other = torch.matmul(enc.t(), own), torch.matmul(enc.t(), other)
        self.ema_weight = self.decay * self.ema_weight + 0.5 * (1 - self.decay) * dw + 0.5 * (1 - self.decay) * dw_other
        self.embedding = self.ema_weight / self.ema_count.unsqueeze(-1)

    def forward(self, a, v):
        B, T, D = a.shape
        M = self.embedding.shape[0]
        a_flat, v_flat = a.detach().reshape(-1, D), v.detach().reshape(-1, D)
        a_dist, v_dist = self._dist(a_flat), self._dist(v_flat)
        # L_cmcm on the distances recomputed with gradient
        a_ph = F.softmax(-torch.sqrt(self._dist(a.reshape(-1, D))), dim=1).reshape(B, T, M).mean(1)
        v_ph = F.softmax(-torch.sqrt(self._dist(v.reshape(-1, D))), dim=1).reshape(B, T, M).mean(1)
        S = a_ph @ torch.log(v_ph.t() + 1e-10) + v_ph @ torch.log(a_ph.t() + 1e-10)
        ES = torch.exp(S + torch.max(-S))
        cmcm = 0.5 * -torch.log(ES.diagonal() / (ES.sum(1) + self.eps)).mean()
        a_idx, v_idx = torch.argmin(a_dist, dim=-1), torch.argmin(v_dist, dim=-1)
        a_enc, v_enc = F.one_hot(a_idx, M).float(), F.one_hot(v_idx, M).float()
        a_q, v_q = F.embedding(a_idx, self.embedding).view_as(a), F.embedding(v_idx, self.embedding).view_as(v)
        if self.training:
            self._ema_pass(a_enc, a_flat, v_flat)
            self._ema_pass(v_enc, v_flat, a_flat)
        a_loss = 2 * self.beta * F.mse_loss(a, a_q.detach()) + self.beta * F.mse_loss(a, v_q.detach())
        v_loss = 2 * self.beta * F.mse_loss(v, v_q.detach()) + self.beta * F.mse_loss(v, a_q.detach())
        a_q, v_q = a + (a_q - a).detach(), v + (v_q - v).detach()
        a_p, v_p = a_enc.mean(0), v_enc.mean(0)
        a_ppl, v_ppl = torch.exp(-torch.sum(a_p * torch.log(a_p + 1e-10))), torch.exp(-torch.sum(v_p * torch.log(v_p + 1e-10)))
        equal = (a_idx == v_idx).sum()
        # dead-code reset, counted per forward
        self.unactivated_count += 1
        for i in a_idx: self.unactivated_count[i.item()] = 0
        for i in v_idx: self.unactivated_count[i.item()] = 0
        active, dead = [], []
        for i, c in enumerate(self.unactivated_count):
            if c > 300: dead.append(i); self.unactivated_count[i] = 0
            elif 0 <= c < 100: active.append(i)
        if dead and active:
            src = F.embedding(torch.tensor(active), self.embedding)
            for i in dead:
                self.embedding[i] = src[random.randint(0, len(active) - 1)] + torch.empty(D).uniform_(-1 / 1024, 1 / 1024)
        return a_q, v_q, a_loss, v_loss, cmcm, a_ppl, v_ppl, equal
